"""
Missing data: fitting and imputing with entries removed
=======================================================

Real tables have holes.  With ``missing="marginalize"`` a
:class:`fastgmm.GaussianMixture` treats NaN as a missing entry and runs the
exact EM of the observed entries: no row is dropped and nothing is filled in
before the fit.  Here the bundled wholesale-customers data (440 clients,
annual spending on six product categories) lose 20 % of their spending
entries, completely at random, and:

1. the mixture is fitted to what is left and compared with the fit on the
   complete data (the log-likelihood of the complete data under each);
2. the removed entries are imputed by their conditional expectation under the
   mixture, and compared with the truth and with imputing each column's mean;
3. five draws from the conditional distribution (multiple imputation) show
   how uncertain each imputed value is;
4. :meth:`~fastgmm.GaussianMixture.condition` predicts Grocery spending from
   Milk and Detergents_Paper alone, with its uncertainty.

The model works on log spending (spending is skewed and positive); a row
keeps at least one observed category.
"""

import matplotlib.pyplot as plt
import numpy as np

import fastgmm
from fastgmm.datasets import load_wholesale

SEED = 0

# %%
# Step 1: remove 20 % of the spending entries and fit
# ---------------------------------------------------

data = load_wholesale()
names = list(data.spending_columns)
X = np.log(data.spending)
rng = np.random.default_rng(SEED)
removed = rng.random(X.shape) < 0.2
removed[removed.all(axis=1), 0] = False          # every row keeps one entry
X_missing = np.where(removed, np.nan, X)
print(f"removed {removed.sum()} of {X.size} entries ({removed.mean():.1%}); "
      f"{(~removed.any(axis=1)).sum()} of {len(X)} rows are still complete")

settings = dict(n_components=2, covariance_type="full", n_init=5, random_state=SEED,
                tol=1e-6, max_iter=500)
complete_fit = fastgmm.fit(X, **settings)
missing_fit = fastgmm.fit(X_missing, missing="marginalize", **settings)
print(f"mean log-likelihood of the complete data: complete-data fit "
      f"{complete_fit.score(X):.4f}, fit with 20 % missing {missing_fit.score(X):.4f}")
order_c = np.argsort(complete_fit.weights_)
order_m = np.argsort(missing_fit.weights_)
print("component weights:", np.round(complete_fit.weights_[order_c], 3), "(complete) vs",
      np.round(missing_fit.weights_[order_m], 3), "(20 % missing)")
mean_gap = np.abs(complete_fit.means_[order_c] - missing_fit.means_[order_m]).max()
print(f"largest difference of a component mean: {mean_gap:.3f} (log units)")

# %%
# Step 2: impute the removed entries
# ----------------------------------
# The conditional expectation of each missing entry given the row's observed
# ones, averaged over the components by their posterior probabilities,
# against the column means of the observed entries.

imputed = missing_fit.impute(X_missing)
column_means = np.where(removed, np.nanmean(X_missing, axis=0), X_missing)
rmse_mixture = np.sqrt(np.mean((imputed[removed] - X[removed]) ** 2))
rmse_means = np.sqrt(np.mean((column_means[removed] - X[removed]) ** 2))
print(f"imputation error (RMSE, log units): mixture {rmse_mixture:.3f}, "
      f"column means {rmse_means:.3f}")

# %%
# Step 3: multiple imputation
# ---------------------------
# With a ``random_state``, :meth:`~fastgmm.GaussianMixture.impute` draws from
# the conditional distribution instead; the spread of the draws is the
# uncertainty an analysis of imputed data should carry along.

draws = np.stack([missing_fit.impute(X_missing, random_state=s) for s in range(5)])
spread = draws.std(axis=0)[removed]
print(f"multiple imputation: 5 draws, median spread of an imputed entry "
      f"{np.median(spread):.3f} (log units)")

# %%
# Step 4: predict Grocery from Milk and Detergents_Paper
# ------------------------------------------------------
# The conditional distribution of the other features given some is again a
# Gaussian mixture; its mean is a regression.

given = [names.index("Milk"), names.index("Detergents_Paper")]
cond = complete_fit.condition(X[:, given], given)
mean, cov = cond.predict(return_cov=True)
grocery = list(cond.target_features).index(names.index("Grocery"))
pred = mean[:, grocery]
sd = np.sqrt(cov[:, grocery, grocery])
inside = np.abs(X[:, names.index("Grocery")] - pred) < 2 * sd
print(f"Grocery from Milk and Detergents_Paper: RMSE "
      f"{np.sqrt(np.mean((pred - X[:, names.index('Grocery')]) ** 2)):.3f}, "
      f"{inside.mean():.0%} of customers within two predicted standard deviations")

fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
lim = [X[removed].min() - 0.5, X[removed].max() + 0.5]
axes[0].scatter(X[removed], column_means[removed], s=8, alpha=0.5, label="column mean")
axes[0].scatter(X[removed], imputed[removed], s=8, alpha=0.7, label="mixture")
axes[0].plot(lim, lim, color="black", lw=1)
axes[0].set(xlabel="true log spending", ylabel="imputed log spending",
            title="Removed entries: imputed against true")
axes[0].legend()
axes[1].errorbar(X[:, names.index("Grocery")], pred, yerr=2 * sd, fmt="o", ms=3,
                 alpha=0.4, elinewidth=0.5)
axes[1].plot(lim, lim, color="black", lw=1)
axes[1].set(xlabel="true log Grocery", ylabel="predicted (± 2 sd)",
            title="Grocery given Milk and Detergents_Paper")
fig.tight_layout()
