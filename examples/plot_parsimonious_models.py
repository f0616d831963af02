"""
Parsimonious covariance models: mclust's 14, chosen by BIC
==========================================================

Besides scikit-learn's four covariance types, :class:`fastgmm.GaussianMixture`
fits the 14 models of R's mclust, which write each covariance as volume ×
shape × orientation, ``Sigma_k = lambda_k D_k A_k D_k^T``, and keep each factor
Equal across components, Variable, or the Identity (see
:doc:`/guide/parsimonious`).  This example

1. fits all 14 models to the same three-cluster data and draws their
   ellipses side by side, so that each constraint shows;
2. chooses a model and a number of components by BIC over mclust's grid on a
   real data set: the wholesale-customers data that ships with fastgmm
   (log spending on Milk, Grocery and Detergents/Paper);
3. prints the BIC table as mclust lays it out, and draws the chosen model.

BIC here is fastgmm's, ``-2 log L + p log n`` (lower is better); mclust prints
``2 log L - p log n``, the same numbers with the opposite sign.
"""

import matplotlib.pyplot as plt
import numpy as np

import fastgmm
from fastgmm import plotting
from fastgmm.datasets import load_wholesale

SEED = 0
# sphinx_gallery_thumbnail_number = 1

# %%
# Step 1: what each model makes of the same data
# ----------------------------------------------
# Three clusters of different size, elongation and direction.  Each panel is
# one model fitted with three components; its name reads volume, shape,
# orientation (E: equal, V: variable, I: identity).

rng = np.random.default_rng(SEED)


def rotated(sx, sy, degrees):
    """A 2-D covariance with standard deviations ``sx``, ``sy`` turned by ``degrees``."""
    t = np.radians(degrees)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return rot @ np.diag([sx ** 2, sy ** 2]) @ rot.T


centres = np.array([[0.0, 0.0], [7.0, 1.0], [3.0, 7.0]])
shapes = [rotated(1.6, 0.5, 30), rotated(0.7, 0.6, 0), rotated(2.0, 0.4, -60)]
X2 = np.vstack([rng.multivariate_normal(m, c, size=250) for m, c in zip(centres, shapes,
                                                                       strict=True)])

fig, axes = plt.subplots(2, 7, figsize=(14, 4.6), layout="constrained", sharex=True,
                         sharey=True)
for ax, model in zip(axes.ravel(), fastgmm.MCLUST_MODELS, strict=True):
    gm = fastgmm.GaussianMixture(3, covariance_type=model, random_state=SEED).fit(X2)
    ax.scatter(X2[:, 0], X2[:, 1], s=2, color="0.75")
    plotting.plot_ellipses(gm, ax=ax, n_std=(2.0,), show_means=False)
    ax.set_title(f"{model}  (BIC {gm.bic(X2):.0f})", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal")
fig.suptitle("mclust's 14 models fitted to the same data (2-sigma ellipses)")

# %%
# Step 2: mclust's grid on real data
# ----------------------------------
# Spending is skewed, so its logarithm is modelled.  ``covariance_types=
# 'mclust'`` is the 14 models; with k = 1 to 6 that is 84 fits.

shop = load_wholesale()
cols = [shop.columns[2:].index(c) for c in ("Milk", "Grocery", "Detergents_Paper")]
X = np.log(shop.spending[:, cols])
result = fastgmm.select(X, range(1, 7), "mclust", random_state=SEED)
print(result)

# %%
# Step 3: the chosen model
# ------------------------
# The best cell, drawn on Milk against Grocery with its BIC curve per model.

best = result.best_model_
print("chosen:", result.best_params_, "with", best._n_parameters(), "parameters")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
plotting.plot_labels(X, best.predict(X), ax=ax1, s=8)
plotting.plot_ellipses(best, ax=ax1)
ax1.set(xlabel="log Milk", ylabel="log Grocery",
        title=f"{result.best_params_['covariance_type']}, "
              f"k = {result.best_params_['n_components']}")
result.plot(ax=ax2)
ax2.legend(ncol=2, fontsize=7)
