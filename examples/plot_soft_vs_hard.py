"""
Soft against hard assignments: a Gaussian mixture and k-means
=============================================================

k-means gives every point to its nearest centre: a hard label, and
boundaries halfway between centres as if every cluster were round and the
same size.  A Gaussian mixture gives every point a probability for each
component, and each component its own size, shape and weight.  On clusters
that differ in spread and overlap, the two disagree, and the probabilities
say where the labels can be trusted.

1. draw three clusters of different sizes and shapes, two of them
   overlapping;
2. cluster them with k-means and with a mixture; score both against the
   truth with the adjusted Rand index;
3. look at the mixture's probabilities: how sure it is, and whether it is
   right as often as it says.

k-means is written out in NumPy below (k-means++ seeds, Lloyd iterations,
best of ten runs), and the adjusted Rand index is in the
:ref:`wholesale example <sphx_glr_auto_examples_wholesale_segmentation.py>`;
here its value comes from a short version of the same formula.
"""

from math import comb

import matplotlib.pyplot as plt
import numpy as np

import fastgmm
from fastgmm import plotting

SEED = 1


def squared_distances(X, centers):
    """``(n, k)`` squared Euclidean distances from every row to every centre."""
    return ((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)


def kmeans(X, k, n_init=10, max_iter=300, seed=0):
    """k-means: k-means++ seeds, Lloyd iterations, the best of ``n_init`` runs."""
    rng = np.random.default_rng(seed)
    n = len(X)
    best_inertia, best_labels = np.inf, None
    for _ in range(n_init):
        centers = X[[rng.integers(n)]]                       # k-means++ seeding
        for _ in range(1, k):
            d2 = squared_distances(X, centers).min(axis=1)
            centers = np.vstack([centers, X[rng.choice(n, p=d2 / d2.sum())]])
        labels = np.full(n, -1)
        for _ in range(max_iter):                            # Lloyd iterations
            nearest = squared_distances(X, centers).argmin(axis=1)
            if np.array_equal(nearest, labels):
                break
            labels = nearest
            centers = np.array([X[labels == j].mean(axis=0) if np.any(labels == j)
                                else centers[j] for j in range(k)])
        inertia = squared_distances(X, centers)[np.arange(n), labels].sum()
        if inertia < best_inertia:
            best_inertia, best_labels = inertia, labels
    return best_labels


def adjusted_rand_index(a, b):
    """Adjusted Rand index (Hubert and Arabie 1985) from the contingency table."""
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)
    index = sum(comb(int(v), 2) for v in table.ravel())
    rows = sum(comb(int(v), 2) for v in table.sum(axis=1))
    cols = sum(comb(int(v), 2) for v in table.sum(axis=0))
    expected = rows * cols / comb(len(a), 2)
    return (index - expected) / ((rows + cols) / 2 - expected)


# %%
# Step 1: three unlike clusters
# -----------------------------
# A large, wide cluster; a small, tight one close beside it; an elongated
# one further away.

rng = np.random.default_rng(SEED)
X = np.vstack([rng.multivariate_normal([0, 0], [[4.0, 0.0], [0.0, 4.0]], size=900),
               rng.multivariate_normal([3.2, 0.5], [[0.15, 0.0], [0.0, 0.15]], size=150),
               rng.multivariate_normal([-1, 7], [[6.0, 2.2], [2.2, 1.0]], size=450)])
truth = np.repeat([0, 1, 2], [900, 150, 450])

# %%
# Step 2: hard labels from both methods
# -------------------------------------

km_labels = kmeans(X, 3, seed=SEED)
gmm = fastgmm.GaussianMixture(3, covariance_type="full", n_init=5, random_state=SEED).fit(X)
gmm_labels = gmm.predict(X)
proba = gmm.predict_proba(X)
print(f"adjusted Rand index against the truth: k-means {adjusted_rand_index(truth, km_labels):.3f}"
      f", Gaussian mixture {adjusted_rand_index(truth, gmm_labels):.3f}")

fig, panels = plt.subplots(1, 3, figsize=(14, 4.4), sharex=True, sharey=True,
                           layout="constrained")
for ax, labels, title in zip(panels, (truth, km_labels, gmm_labels),
                             ("truth", "k-means", "Gaussian mixture"), strict=True):
    plotting.plot_labels(X, labels, ax=ax, s=6)
    ax.set(title=title, xlabel="x1", ylabel="x2")
plotting.plot_ellipses(gmm, ax=panels[2])

# %%
# k-means splits the wide cluster between its neighbours, because its
# boundaries sit halfway between centres; the mixture lets the wide
# component reach further and keeps the tight one small.
#
# Step 3: how sure is the mixture, and is it right as often as it says?
# ---------------------------------------------------------------------
# The largest probability of each point is the model's confidence in its
# label.  Grouping points by that confidence and counting how often the label
# matches the truth checks the probabilities: when the model is right about
# the data, a group with confidence 0.7 should be right about 70 % of the
# time.  (The mixture's components are matched to the true clusters by their
# largest overlap first.)

confidence = proba.max(axis=1)
match = np.array([np.bincount(truth[gmm_labels == j], minlength=3).argmax() for j in range(3)])
correct = match[gmm_labels] == truth
edges = np.array([1 / 3, 0.5, 0.7, 0.9, 0.99, 1.0 + 1e-9])
which = np.digitize(confidence, edges) - 1
print(f"{'confidence':>14} {'points':>7} {'mean confidence':>16} {'share correct':>14}")
for b in range(len(edges) - 1):
    members = which == b
    if members.any():
        print(f"{edges[b]:>6.2f} - {min(edges[b + 1], 1):<6.2f} {members.sum():>7} "
              f"{confidence[members].mean():>16.3f} {correct[members].mean():>14.3f}")

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
unsure = confidence < 0.99
left.scatter(X[~unsure, 0], X[~unsure, 1], color="0.8", s=6, label="at least 99 % sure")
points = left.scatter(X[unsure, 0], X[unsure, 1], c=confidence[unsure], cmap="plasma",
                      vmin=1 / 3, vmax=0.99, s=12, label="less sure")
fig.colorbar(points, ax=left, label="largest probability")
left.set(title="Where the mixture is unsure of the label", xlabel="x1", ylabel="x2")
left.legend(fontsize="small", loc="upper left")
mean_conf = [confidence[which == b].mean() for b in range(len(edges) - 1) if np.any(which == b)]
share = [correct[which == b].mean() for b in range(len(edges) - 1) if np.any(which == b)]
right.plot([1 / 3, 1], [1 / 3, 1], color="0.5", linestyle="--", label="as often as it says")
right.plot(mean_conf, share, marker="o", label="Gaussian mixture")
right.set(xlabel="mean confidence of the group", ylabel="share of correct labels",
          title="Probabilities that can be trusted")
right.legend()
