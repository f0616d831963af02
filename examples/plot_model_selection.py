"""
Choosing k and the covariance type: BIC, AIC and ICL
====================================================

:func:`fastgmm.select` fits a grid of mixtures (numbers of components ×
covariance types), scores every cell with three information criteria and
returns the best model with the whole table.  Here the data come from a
known mixture, so the choices can be checked:

1. draw 1,500 points from five elongated Gaussian components, two of which
   overlap heavily;
2. fit k = 1 to 8 for all four covariance types with one call;
3. compare the three criteria as curves and as a heat map;
4. look at the models BIC and ICL choose.

All criteria are on the deviance scale, lower is better (see
:doc:`/guide/model_selection`).
"""

import matplotlib.pyplot as plt
import numpy as np

import fastgmm
from fastgmm import plotting

SEED = 0
# sphinx_gallery_thumbnail_number = 4

# %%
# Step 1: data from a known mixture
# ---------------------------------
# Five tilted, elongated components.  The first two share most of their mass:
# as a density they are two components, as clusters they look like one.

rng = np.random.default_rng(SEED)


def rotated(sx, sy, degrees):
    """A 2-D covariance with standard deviations ``sx``, ``sy`` turned by ``degrees``."""
    t = np.radians(degrees)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return R @ np.diag([sx ** 2, sy ** 2]) @ R.T


true_means = np.array([[0.0, 0.0], [1.2, 0.4], [6.0, 5.0], [-5.0, 5.0], [2.0, -6.0]])
true_covs = np.array([rotated(1.5, 0.5, 30), rotated(1.5, 0.4, -40), rotated(2.0, 0.6, 70),
                      rotated(1.2, 0.5, -20), rotated(2.5, 0.7, 10)])
sizes = np.array([300, 300, 300, 300, 300])
X = np.vstack([rng.multivariate_normal(m, c, size=s)
               for m, c, s in zip(true_means, true_covs, sizes, strict=True)])
truth = np.repeat(np.arange(len(sizes)), sizes)

fig, ax = plt.subplots(figsize=(5.5, 5), layout="constrained")
plotting.plot_labels(X, truth, ax=ax, s=8, names=[f"component {j}" for j in range(5)])
ax.set(title="Data from five components (0 and 1 overlap)", xlabel="x1", ylabel="x2")

# %%
# Step 2: the whole grid in one call
# ----------------------------------
# ``random_state`` draws one seed per k before anything runs; the four
# covariance types with the same k start from the same k-means partition.
# Each cell keeps the best of five EM runs: with a single run, a cell's
# criterion may come from a poor local maximum and make its k look worse
# than it is.

result = fastgmm.select(X, n_components=range(1, 9),
                        covariance_types=("full", "tied", "diag", "spherical"),
                        criterion="bic", n_init=5, random_state=SEED)
print(result)
for criterion in ("bic", "aic", "icl"):
    values = result.values(criterion)
    j, i = np.unravel_index(np.argmin(values), values.shape)
    print(f"{criterion.upper()} prefers k = {result.n_components[j]}, "
          f"{result.covariance_types[i]} covariances")

# %%
# Step 3: curves and a heat map
# -----------------------------
# One curve per covariance type for each criterion; the star marks the
# lowest value.

fig, panels = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
for ax, criterion in zip(panels, ("bic", "aic", "icl"), strict=True):
    result.plot(ax=ax, criterion=criterion)
    ax.set_title(criterion.upper())

# %%
# The heat map shows BIC relative to the best cell, so that the differences
# stay readable (the spherical and tied models are far behind).

bic = result.values("bic")
gap = bic - bic.min()
fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
image = ax.imshow(np.log10(1 + gap), cmap="viridis_r", aspect="auto")
ax.set(xticks=range(len(result.covariance_types)), xticklabels=result.covariance_types,
       yticks=range(len(result.n_components)), yticklabels=result.n_components,
       xlabel="covariance type", ylabel="number of components k",
       title="BIC above the best cell")
for (r, c), value in np.ndenumerate(gap):
    ax.text(c, r, f"{value:.0f}", ha="center", va="center", fontsize=8,
            color="white" if value > 30 else "black")
fig.colorbar(image, ax=ax, label="log10(1 + BIC - lowest BIC)")

# %%
# Step 4: what BIC and ICL choose
# -------------------------------
# BIC models the density, so it keeps the two overlapping components apart.
# ICL adds the entropy of the responsibilities: it charges for points that
# the model cannot assign with confidence, and so it prefers to merge
# components that overlap this much.

icl = result.values("icl")
j, i = np.unravel_index(np.argmin(icl), icl.shape)
icl_model = result.models_[result.covariance_types[i], result.n_components[j]]
fig, panels = plt.subplots(1, 2, figsize=(11, 4.8), sharex=True, sharey=True,
                           layout="constrained")
for ax, model, name in zip(panels, (result.best_model_, icl_model), ("BIC", "ICL"),
                           strict=True):
    plotting.plot_labels(X, model.predict(X), ax=ax, s=6)
    plotting.plot_ellipses(model, ax=ax)
    ax.set(title=f"{name}: k = {model.n_components}, {model.covariance_type}",
           xlabel="x1", ylabel="x2")

full = result.covariance_types.index("full")
print("full covariances:   k      BIC      ICL   ICL - BIC = 2 x entropy")
for k, b, c in zip(result.n_components, bic[:, full], icl[:, full], strict=True):
    print(f"{k:>20} {b:>8.1f} {c:>8.1f} {c - b:>10.1f}")
