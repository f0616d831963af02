"""
Segmenting wholesale customers
==============================

The classic clustering lesson on the wholesale-customers data that ships
with fastgmm (440 clients of a Portuguese distributor and their annual
spending on six product categories), taken a few steps further:

1. drop Channel and Region and look at Grocery against Milk;
2. standardise, fit a two-component Gaussian mixture, and compare its hard
   labels with k-means on the same data through the adjusted Rand index;
3. colour every customer by its probability of the second segment, so the
   uncertain ones in between show, with each component's covariance
   ellipses;
4. choose the number of segments on the six log-spending columns with
   :func:`fastgmm.select` (BIC and AIC, k = 1 to 8, all four covariance
   types);
5. fit one variational Bayesian mixture with ten components instead, and
   count the components it leaves with non-negligible weight;
6. profile the segments in the original units: size, mean spending per
   category, and the sales channel (Horeca or Retail) that the model never
   saw.

It needs matplotlib (``pip install ".[plot]"`` in a checkout) and nothing else:
k-means and the adjusted Rand index are written out below, in NumPy, so that
what each computes is on the page.
"""

from math import comb

import matplotlib.pyplot as plt
import numpy as np

import fastgmm
from fastgmm import plotting
from fastgmm.datasets import channel_names, load_wholesale

SEED = 0
# sphinx_gallery_thumbnail_number = 3


def standardize(X):
    """Columns centred and divided by their population standard deviation (ddof=0)."""
    mean, std = X.mean(axis=0), X.std(axis=0, ddof=0)
    return (X - mean) / std, mean, std


def squared_distances(X, centers):
    """``(n, k)`` squared Euclidean distances from every row to every centre."""
    return ((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)


def kmeans(X, k, n_init=10, max_iter=300, seed=0):
    """k-means: k-means++ seeds, Lloyd iterations, the best of ``n_init`` runs.

    Returns the labels and centres of the run with the lowest inertia (the
    sum of squared distances from each row to its centre).
    """
    rng = np.random.default_rng(seed)
    n = len(X)
    best_inertia, best_labels, best_centers = np.inf, None, None
    for _ in range(n_init):
        # k-means++ (Arthur and Vassilvitskii 2007): the first centre is a
        # random row; each next one is a row drawn with probability
        # proportional to its squared distance to the nearest centre so far.
        centers = X[[rng.integers(n)]]
        for _ in range(1, k):
            d2 = squared_distances(X, centers).min(axis=1)
            centers = np.vstack([centers, X[rng.choice(n, p=d2 / d2.sum())]])
        # Lloyd (1982): give every row to its nearest centre, move every
        # centre to the mean of its rows, until no row changes centre.
        labels = np.full(n, -1)
        for _ in range(max_iter):
            nearest = squared_distances(X, centers).argmin(axis=1)
            if np.array_equal(nearest, labels):
                break
            labels = nearest
            centers = np.array([X[labels == j].mean(axis=0) if np.any(labels == j)
                                else centers[j] for j in range(k)])
        inertia = squared_distances(X, centers)[np.arange(n), labels].sum()
        if inertia < best_inertia:
            best_inertia, best_labels, best_centers = inertia, labels, centers
    return best_labels, best_centers


def adjusted_rand_index(labels_a, labels_b):
    """Adjusted Rand index of two labellings (Hubert and Arabie 1985).

    1 for the same partition (whatever the label names), about 0 for
    unrelated ones.  From the contingency table ``n_ij`` of the two
    labellings, with row sums ``a_i`` and column sums ``b_j``::

        index = sum_ij C(n_ij, 2)
        expected = sum_i C(a_i, 2) * sum_j C(b_j, 2) / C(n, 2)
        maximum = (sum_i C(a_i, 2) + sum_j C(b_j, 2)) / 2
        ARI = (index - expected) / (maximum - expected)
    """
    a = np.asarray(labels_a)
    b = np.asarray(labels_b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"labellings must be 1-D of equal length, got {a.shape} and {b.shape}")
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)
    index = sum(comb(int(v), 2) for v in table.ravel())
    rows = sum(comb(int(v), 2) for v in table.sum(axis=1))
    cols = sum(comb(int(v), 2) for v in table.sum(axis=0))
    total = comb(len(a), 2)
    expected = rows * cols / total if total else 0.0
    maximum = (rows + cols) / 2
    if maximum == expected:  # both labellings trivial: one cluster, or all singletons
        return 1.0
    return float((index - expected) / (maximum - expected))


def relabel_by(values, labels, k):
    """Rename labels 0..k-1 so that the segments' mean of ``values`` increases."""
    means = [values[labels == j].mean() if np.any(labels == j) else np.inf for j in range(k)]
    rank = np.empty(k, dtype=np.int64)
    rank[np.argsort(means, kind="stable")] = np.arange(k)
    return rank[labels], rank


def print_profile(title, labels, k, spend, names, channel):
    """Size, share, mean spending and channel mix of each segment, one column per segment."""
    channels = channel_names()                 # {1: 'Horeca', 2: 'Retail'}
    members = [labels == s for s in range(k)]
    rows = [("customers", [f"{m.sum():,}" for m in members]),
            ("share", [f"{m.mean():.1%}" for m in members])]
    rows += [(name, [f"{spend[m, j].mean():,.0f}" for m in members])
             for j, name in enumerate(names)]
    rows += [(f"% {name}", [f"{np.mean(channel[m] == code):.0%}" for m in members])
             for code, name in channels.items()]
    print(title)
    print(f"{'':<18}" + "".join(f"{'segment ' + str(s):>11}" for s in range(k)))
    for label, cells in rows:
        print(f"{label:<18}" + "".join(f"{c:>11}" for c in cells))
    print()


# %%
# Step 1: the data, Grocery against Milk
# --------------------------------------
# Channel (Horeca or Retail) and Region are set aside: the segments must come
# from spending alone, and Channel is kept to judge them at the end.

data = load_wholesale()
names = list(data.spending_columns)
spend = data.spending                      # 440 x 6, in monetary units (m.u.)
channel = data.channel                     # 1 = Horeca, 2 = Retail
X = spend[:, [names.index("Grocery"), names.index("Milk")]]

fig, ax = plt.subplots(figsize=(5.5, 4.5), layout="constrained")
ax.scatter(X[:, 0], X[:, 1], s=10, color="0.3")
ax.set(xlabel="Grocery (m.u.)", ylabel="Milk (m.u.)",
       title=f"{len(X)} wholesale customers: Grocery vs Milk")

# %%
# Step 2: two segments, Gaussian mixture against k-means
# ------------------------------------------------------
# Both methods get the standardised columns (population standard deviation).
# Labels are renamed so that segment 1 is the one with more grocery spending.

Z, mean, std = standardize(X)
gmm = fastgmm.GaussianMixture(2, covariance_type="full", n_init=5, random_state=SEED).fit(Z)
gmm_labels, gmm_rank = relabel_by(Z[:, 0], gmm.predict(Z), 2)
km_raw, _ = kmeans(Z, 2, n_init=10, seed=SEED)
km_labels, _ = relabel_by(Z[:, 0], km_raw, 2)

agreement = {"GMM vs k-means": adjusted_rand_index(gmm_labels, km_labels),
             "GMM vs Channel": adjusted_rand_index(gmm_labels, channel),
             "k-means vs Channel": adjusted_rand_index(km_labels, channel)}
print("Agreement of the two-segment solutions (adjusted Rand index)")
for pair, value in agreement.items():
    print(f"  {pair:<20} {value:6.3f}")
print("Customers per segment: GMM", np.bincount(gmm_labels, minlength=2),
      " k-means", np.bincount(km_labels, minlength=2))

fig, panels = plt.subplots(1, 2, figsize=(10, 4.3), sharex=True, sharey=True,
                           layout="constrained")
for ax, labels, method in zip(panels, (gmm_labels, km_labels),
                              ("Gaussian mixture", "k-means"), strict=True):
    plotting.plot_labels(Z, labels, ax=ax)
    ax.set(xlabel="Grocery (standardised)", ylabel="Milk (standardised)",
           title=f"{method}, k = 2")
fig.suptitle("Hard labels; adjusted Rand index between them: "
             f"{agreement['GMM vs k-means']:.3f}")

# %%
# k-means draws a straight boundary halfway between two centres, as if both
# segments were round and equally spread.  The mixture gives each segment
# its own covariance: the small, spread-out high-grocery segment and the
# large, tight one are told apart along a curved boundary.
#
# Step 3: soft assignments and covariance ellipses
# ------------------------------------------------
# Every customer gets a probability of belonging to each segment.  Those in
# between show in the middle colour.

proba = np.empty((len(Z), 2))
proba[:, gmm_rank] = gmm.predict_proba(Z)      # columns in the renamed order
uncertain = (proba[:, 1] > 0.1) & (proba[:, 1] < 0.9)
print(f"{uncertain.sum()} customers ({uncertain.mean():.0%}) have a probability of "
      "segment 1 between 0.1 and 0.9")

fig, ax = plt.subplots(figsize=(6.5, 5), layout="constrained")
plotting.plot_soft_assignments(Z, proba, ax=ax, component=1, colorbar_label="P(segment 1)")
plotting.plot_ellipses(gmm, ax=ax, colors=[("#2a3a9c", "#9c0f1f")[r] for r in gmm_rank])
ax.set(xlabel="Grocery (standardised)", ylabel="Milk (standardised)",
       title="Soft assignments with 1σ (solid) and 2σ (dashed) ellipses")

# %%
# Step 4: how many segments? BIC and AIC on all six columns
# ---------------------------------------------------------
# Spending is strongly right-skewed, so the six columns are log-transformed.
# :func:`fastgmm.select` fits one mixture per number of components and
# covariance type, and scores each with BIC, AIC and ICL (lower is better).
# EM finds a local maximum from each start, so every cell gets five
# restarts and keeps the best.

log_spend = np.log(spend)
result = fastgmm.select(log_spend, n_components=range(1, 9), criterion="bic", n_init=5,
                        max_iter=500, random_state=SEED)
for criterion in ("bic", "aic"):
    values = result.values(criterion)
    print(f"{criterion.upper()} on log spending (lower is better)")
    print(f"{'k':>3}" + "".join(f"{t:>11}" for t in result.covariance_types))
    for k, row in zip(result.n_components, values, strict=True):
        print(f"{k:>3}" + "".join(f"{v:>11.1f}" for v in row))
    print()
best_k = result.best_params_["n_components"]
best_type = result.best_params_["covariance_type"]
print(f"BIC chooses k = {best_k} with {best_type} covariances")

fig, panels = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
for ax, criterion in zip(panels, ("bic", "aic"), strict=True):
    result.plot(ax=ax, criterion=criterion)
    ax.set_title(f"{criterion.upper()}, six log-spending columns")

# %%
# AIC's penalty grows more slowly with the number of parameters than BIC's,
# so it keeps adding components; BIC settles on a few.
#
# Step 5: one variational fit instead of a grid
# ---------------------------------------------
# :class:`fastgmm.BayesianGaussianMixture` with a Dirichlet process prior on
# the weights fits ten components once; components the data do not need
# get weights near zero, and ``n_effective_components_`` counts those above
# 1%.  The priors are scikit-learn's defaults, not tuned to these data, so
# how far ten collapses is the data's answer under those priors; compare it
# with BIC's choice.

vb = fastgmm.BayesianGaussianMixture(10, covariance_type="full",
                                     weight_concentration_prior_type="dirichlet_process",
                                     n_init=5, max_iter=500, random_state=SEED).fit(log_spend)
print(f"Variational Bayes keeps {vb.n_effective_components_} of 10 components with weight "
      f"above 0.01; BIC chose k = {best_k}")

order = np.argsort(-vb.weights_, kind="stable")
fig, ax = plt.subplots(figsize=(6.5, 3.8), layout="constrained")
ax.bar(np.arange(1, 11), vb.weights_[order], color="#2a3a9c")
ax.axhline(0.01, color="#9c0f1f", linestyle="--", label="threshold 0.01")
ax.axvline(best_k + 0.5, color="0.4", linestyle=":", label=f"BIC's k = {best_k}")
ax.set(xlabel="component (heaviest first)", ylabel="weight", xticks=np.arange(1, 11),
       title="Variational fit, 10 components, Dirichlet process prior")
ax.legend()

# %%
# Bars above the dashed line are the components in use.  If many stay above
# it, the priors pull too weakly towards few components against 440
# customers in six dimensions: the weight prior alone
# (``weight_concentration_prior``) moves little, the covariance priors
# (``degrees_of_freedom_prior``, ``covariance_prior``) move the count much
# more, and choosing them is choosing k by other means.  BIC's grid needs no
# priors; the variational fit replaces its 32 cells with one.
#
# Step 6: segment profiles in the original units
# ----------------------------------------------
# The model never saw the sales channel, yet its segments split along it.

print_profile("Two segments from Grocery and Milk (mean annual spending, m.u.)",
              gmm_labels, 2, spend, names, channel)

# %%
# The segments BIC chose on all six log-spending columns split the
# customers further; the Horeca and Retail shares show where the channel
# split went.

best = result.best_model_
best_labels, _ = relabel_by(log_spend[:, names.index("Grocery")], best.predict(log_spend),
                            best_k)
print_profile(f"{best_k} segments chosen by BIC on log spending ({best_type}; "
              "mean annual spending, m.u.)", best_labels, best_k, spend, names, channel)
