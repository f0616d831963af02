"""
From one Gaussian to EM, in pictures
====================================

A walk from the normal distribution to the EM algorithm, on data drawn
here, one picture per idea:

1. one 1-D Gaussian and its two parameters, the mean and the standard
   deviation;
2. a mixture of three 1-D Gaussians and its density, the weighted sum of
   theirs;
3. a 2-D Gaussian, and what its covariance matrix does to the cloud;
4. EM on 2-D data, iteration by iteration, each point coloured by its
   responsibilities;
5. the hard assignment of k-means against the soft one of the mixture.

The E-step is written out in NumPy below, so the colours of step 4 are the
formula of the text, computed from the parameters that
:class:`fastgmm.GaussianMixture` reports after each iteration through its
``callback``.
"""

import matplotlib.pyplot as plt
import numpy as np

import fastgmm
from fastgmm import plotting

SEED = 3
# sphinx_gallery_thumbnail_number = 4
rng = np.random.default_rng(SEED)


def normal_pdf(x, mean, sd):
    """The density of N(mean, sd^2) at ``x``."""
    return np.exp(-0.5 * ((x - mean) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))


# %%
# 1. One Gaussian, two parameters
# -------------------------------
# A 1-D Gaussian :math:`\mathcal{N}(\mu, \sigma^2)` has the density
#
# .. math::
#
#    \mathcal{N}(x \mid \mu, \sigma^2) = \frac{1}{\sigma\sqrt{2\pi}}
#    \exp\Bigl(-\frac{(x - \mu)^2}{2\sigma^2}\Bigr).
#
# The mean :math:`\mu` says where the bell stands, the standard deviation
# :math:`\sigma` how wide it is: about 68 % of the draws fall within one
# :math:`\sigma` of :math:`\mu`, 95 % within two.  Given draws, the maximum
# likelihood estimates are the sample mean and the sample standard deviation
# (dividing by :math:`n`).

true_mean, true_sd = 2.0, 0.7
x1 = rng.normal(true_mean, true_sd, 400)
est_mean, est_sd = x1.mean(), x1.std()
within_one = np.mean(np.abs(x1 - est_mean) < est_sd)
print(f"400 draws of N({true_mean}, {true_sd}^2): mean {est_mean:.3f}, "
      f"standard deviation {est_sd:.3f};\n{within_one:.0%} of the draws within one "
      "standard deviation of the mean")

grid = np.linspace(-3, 6, 500)
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
left.hist(x1, bins=30, density=True, color="0.8", label="400 draws")
left.plot(grid, normal_pdf(grid, est_mean, est_sd), color="#2a3a9c", lw=2,
          label="fitted density")
left.axvline(est_mean, color="#9c0f1f", lw=1.5, label="mean")
left.axvspan(est_mean - est_sd, est_mean + est_sd, color="#9c0f1f", alpha=0.12,
             label="mean ± 1 sd")
left.set(xlim=(-1, 5), xlabel="x", ylabel="density", title="Draws and the fitted Gaussian")
left.legend(fontsize=8)
for mean, sd, style in ((0.0, 1.0, "-"), (2.0, 1.0, "--"), (0.0, 0.5, "-."), (0.0, 2.0, ":")):
    right.plot(grid, normal_pdf(grid, mean, sd), style, lw=2, label=f"μ = {mean:g}, σ = {sd:g}")
right.set(xlabel="x", ylabel="density", title="μ moves the bell, σ widens it")
right.legend(fontsize=8)

# %%
# 2. A mixture of three Gaussians
# -------------------------------
# A mixture draws a component :math:`k` with probability :math:`\pi_k` (the
# weights sum to 1), then a value from that component's Gaussian.  Its
# density is the weighted sum
#
# .. math::
#
#    p(x) = \sum_{k=1}^{3} \pi_k\, \mathcal{N}(x \mid \mu_k, \sigma_k^2),
#
# which can have several bumps, shoulders, or one lopsided hump: far more
# shapes than one Gaussian.  Fitting a 3-component
# :class:`fastgmm.GaussianMixture` to the draws recovers the nine
# parameters (up to the order of the components).

weights = np.array([0.5, 0.3, 0.2])
means = np.array([-2.0, 1.0, 3.5])
sds = np.array([0.6, 1.0, 0.5])
component = rng.choice(3, size=1500, p=weights)
x3 = rng.normal(means[component], sds[component])

mix = fastgmm.GaussianMixture(3, n_init=3, random_state=SEED).fit(x3[:, None])
order = np.argsort(mix.means_[:, 0])
print("component   weight (true)   mean (true)   sd (true)")
for j, k in enumerate(order):
    print(f"{j:9d}   {mix.weights_[k]:6.3f} ({weights[j]:.1f})   "
          f"{mix.means_[k, 0]:6.3f} ({means[j]:4.1f})   "
          f"{np.sqrt(mix.covariances_[k, 0, 0]):5.3f} ({sds[j]:.1f})")

grid = np.linspace(-4.5, 6, 600)
parts = weights[:, None] * normal_pdf(grid[None, :], means[:, None], sds[:, None])
fig, ax = plt.subplots(figsize=(8, 3.8), layout="constrained")
ax.hist(x3, bins=60, density=True, color="0.85", label="1500 draws")
colors = ("#2a3a9c", "#d08c00", "#9c0f1f")
for k in range(3):
    ax.plot(grid, parts[k], "--", color=colors[k],
            label=f"π = {weights[k]:g} × N({means[k]:g}, {sds[k]:g}²)")
ax.plot(grid, parts.sum(axis=0), color="black", lw=2, label="mixture density p(x)")
ax.plot(grid, np.exp(mix.score_samples(grid[:, None])), color="#2ca02c", lw=1.5, ls=":",
        label="fitted mixture")
ax.set(xlabel="x", ylabel="density", title="Three weighted Gaussians and their sum")
ax.legend(fontsize=8)

# %%
# 3. A 2-D Gaussian and its covariance
# ------------------------------------
# In two dimensions the mean is a point and the spread is a 2 × 2
# covariance matrix :math:`\Sigma`.  Its diagonal holds the variances of the
# two coordinates, its off-diagonal entry their covariance.  The points of
# equal density are ellipses: their axes point along the eigenvectors of
# :math:`\Sigma`, with half-lengths the square roots of its eigenvalues (one
# standard deviation along each axis).  The same 300 standard-normal draws
# :math:`z` become :math:`\mu + L z` with :math:`L L^\top = \Sigma`, so each
# panel shows the same points, stretched and turned.

z = rng.standard_normal((300, 2))
covariances = {
    "identity: round": np.eye(2),
    "unequal variances: axis-aligned": np.array([[3.0, 0.0], [0.0, 0.4]]),
    "positive covariance: tilted up": np.array([[2.0, 1.5], [1.5, 2.0]]),
    "negative covariance: tilted down": np.array([[2.0, -1.2], [-1.2, 1.0]]),
}
fig, axes = plt.subplots(1, 4, figsize=(13, 3.6), layout="constrained", sharex=True,
                         sharey=True)
for ax, (title, cov) in zip(axes, covariances.items(), strict=True):
    cloud = z @ np.linalg.cholesky(cov).T
    ax.scatter(cloud[:, 0], cloud[:, 1], s=6, color="0.5")
    params = fastgmm.GaussianParams.from_covariances("full", np.ones(1), np.zeros((1, 2)),
                                                     cov[None])
    plotting.plot_ellipses(params, ax=ax, colors=["#9c0f1f"])
    ax.set(title=title, xlim=(-5, 5), ylim=(-5, 5), aspect="equal")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(f"Σ = [[{cov[0, 0]:g}, {cov[0, 1]:g}], [{cov[1, 0]:g}, {cov[1, 1]:g}]]",
                  fontsize=8)
    values, vectors = np.linalg.eigh(cov)
    print(f"{title:34s} eigenvalues {values[1]:.2f}, {values[0]:.2f}; long axis along "
          f"({vectors[0, 1]:+.2f}, {vectors[1, 1]:+.2f})")
axes[0].set_ylabel("1σ and 2σ ellipses")

# %%
# 4. EM, one iteration at a time
# ------------------------------
# Given 2-D points from three Gaussians, but not which point came from
# which, EM alternates two steps from a starting guess:
#
# * **E-step**: each point's *responsibilities*, the probability that
#   component :math:`k` produced it under the current parameters,
#
#   .. math::
#
#      r_{ik} = \frac{\pi_k\, \mathcal{N}(x_i \mid \mu_k, \Sigma_k)}
#                    {\sum_j \pi_j\, \mathcal{N}(x_i \mid \mu_j, \Sigma_j)};
#
# * **M-step**: each component's weight, mean and covariance from all the
#   points, each point counted with its responsibility
#   (:math:`\pi_k = \frac1n \sum_i r_{ik}`, :math:`\mu_k` the
#   :math:`r_{\cdot k}`-weighted mean, :math:`\Sigma_k` the weighted
#   covariance about it).
#
# Every iteration raises the log-likelihood (or leaves it unchanged).  The
# ``callback`` of :class:`fastgmm.GaussianMixture` receives an
# :class:`fastgmm.IterationInfo` after every iteration; its ``params`` are
# the parameters after that M-step, kept here to draw.  The start is a poor
# one on purpose, so that there is something to watch: the three means
# bunched together between the clouds, equal weights, and round covariances
# of unit variance.

true_means = np.array([[0.0, 0.0], [4.0, 0.5], [1.5, 4.5]])
true_covs = np.array([[[2.2, 0.9], [0.9, 1.3]], [[0.15, 0.0], [0.0, 0.3]],
                      [[0.8, -0.4], [-0.4, 0.6]]])
labels_true = rng.choice(3, size=450, p=[0.5, 0.2, 0.3])
X = np.array([rng.multivariate_normal(true_means[k], true_covs[k]) for k in labels_true])

history = []


def record(info):
    """Keep the iteration number, log-likelihood and parameters of each iteration."""
    history.append((info.iteration, info.lower_bound, info.params.copy()))
    return False                                  # do not stop


start = np.array([[3.0, 3.0], [3.5, 3.5], [2.5, 3.2]])
gmm = fastgmm.GaussianMixture(3, weights_init=np.full(3, 1 / 3), means_init=start,
                              precisions_init=np.tile(np.eye(2), (3, 1, 1)), max_iter=300,
                              tol=1e-6, callback=record)
gmm.fit(X)
print(f"EM converged after {gmm.n_iter_} iterations; mean log-likelihood\n"
      f"{history[0][1]:.3f} for the starting parameters, {gmm.score(X):.3f} for the fitted ones")


def log_weighted_densities(X, params):
    """``log(pi_k N(x_i | mu_k, Sigma_k))`` for every point and component (2-D, full)."""
    out = np.empty((X.shape[0], params.weights.shape[0]))
    for k, (w, mu, cov) in enumerate(zip(params.weights, params.means, params.covariances,
                                         strict=True)):
        diff = X - mu
        maha = np.einsum("ij,ij->i", diff @ np.linalg.inv(cov), diff)
        out[:, k] = np.log(w) - 0.5 * maha - 0.5 * np.log(np.linalg.det(cov)) - np.log(2 * np.pi)
    return out


def responsibilities(X, params):
    """The E-step written out: ``r[i, k]``, each row normalised to sum to 1."""
    terms = log_weighted_densities(X, params)
    terms -= terms.max(axis=1, keepdims=True)       # subtract the largest: no underflow
    r = np.exp(terms)
    return r / r.sum(axis=1, keepdims=True)


def log_likelihood(X, params):
    """The mean log-likelihood of the points, ``mean_i log sum_k pi_k N(x_i | ...)``."""
    terms = log_weighted_densities(X, params)
    top = terms.max(axis=1)
    return float(np.mean(top + np.log(np.exp(terms - top[:, None]).sum(axis=1))))


# Colour a point by mixing the three components' colours in the proportions
# of its responsibilities: a pure colour is a sure point, a blend an unsure one.
palette = np.array([[0.16, 0.23, 0.61], [0.82, 0.55, 0.0], [0.61, 0.06, 0.12]])
shown = [1, 2, 3, 5, 10, len(history)]
fig, axes = plt.subplots(2, 3, figsize=(12, 7.6), layout="constrained", sharex=True,
                         sharey=True)
for ax, t in zip(axes.flat, shown, strict=True):
    iteration, _, params = history[t - 1]
    r = responsibilities(X, params)
    ax.scatter(X[:, 0], X[:, 1], s=9, c=r @ palette)
    plotting.plot_ellipses(params, ax=ax, colors=[tuple(c) for c in palette])
    ax.set_title(f"after iteration {iteration}: log-likelihood "
                 f"{log_likelihood(X, params):.3f}", fontsize=10)
    ax.set_aspect("equal")
fig.suptitle("EM from a poor start: responsibilities (colour) and 1σ, 2σ ellipses")

# %%
# The callback's ``lower_bound`` is the mean log-likelihood of the parameters
# an iteration started from (the one its E-step computes along the way); the
# panels above show that of the parameters after the iteration, one step
# further.

fig, ax = plt.subplots(figsize=(6.5, 3.4), layout="constrained")
ax.plot([h[0] for h in history], [h[1] for h in history], marker="o", ms=3)
ax.set(xlabel="iteration", ylabel="mean log-likelihood at its start",
       title="EM never lowers the log-likelihood")

# %%
# Early on, the three components overlap and share the points (blended
# colours).  The log-likelihood jumps in the first iterations and then
# creeps up while the components sort out which cloud is whose; once each
# has taken one cloud, the colours are pure, the ellipses match the clouds'
# shapes, and the log-likelihood levels off.  From another start EM can
# settle on a worse arrangement (a local maximum), which is why fits are
# usually restarted several times (``n_init``) and the best kept.
#
# 5. Hard against soft assignments
# --------------------------------
# k-means gives every point to its nearest centre: a *hard* label, and a
# straight boundary halfway between two centres, whatever the clouds' sizes
# and shapes.  The mixture's responsibilities are *soft*: near the border
# between two clouds a point gets a share of each, and the border follows
# the covariances and weights.  Below, a plain k-means (Lloyd's algorithm,
# started from the same poor centres) against the fitted mixture, and the
# two along the line from one mean to another.


def kmeans(X, centres, n_iter=100):
    """Lloyd's algorithm: labels and centres from the given starting centres."""
    centres = np.array(centres, dtype=float)
    for _ in range(n_iter):
        labels = ((X[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
        new = np.array([X[labels == k].mean(axis=0) for k in range(len(centres))])
        if np.allclose(new, centres):
            break
        centres = new
    return labels, centres


km_labels, km_centres = kmeans(X, start)
proba = gmm.predict_proba(X)
gmm_labels = proba.argmax(axis=1)
# k-means numbers its clusters its own way: name each after the mixture
# component most of its points have.
rename = np.array([np.bincount(gmm_labels[km_labels == k], minlength=3).argmax()
                   for k in range(3)])
km_labels, km_centres = rename[km_labels], km_centres[np.argsort(rename)]
agree = np.mean(km_labels == gmm_labels)
unsure = proba.max(axis=1) < 0.9
print(f"k-means and the mixture give {agree:.1%} of the points the same component;\n"
      f"the mixture is less than 90 % sure of {unsure.sum()} points")

fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), layout="constrained")
axes[0].scatter(X[:, 0], X[:, 1], s=9, c=palette[km_labels])
axes[0].scatter(km_centres[:, 0], km_centres[:, 1], marker="x", s=80, color="black")
axes[0].set(title="k-means: one label per point", aspect="equal")
axes[1].scatter(X[:, 0], X[:, 1], s=9, c=proba @ palette)
axes[1].scatter(X[unsure, 0], X[unsure, 1], s=40, facecolors="none", edgecolors="black",
                linewidths=0.6, label="less than 90 % sure")
plotting.plot_ellipses(gmm, ax=axes[1], colors=[tuple(c) for c in palette])
axes[1].set(title="mixture: responsibilities", aspect="equal")
axes[1].legend(fontsize=8, loc="lower right")

# Along the segment from the mean of component i to that of component j,
# the two nearest each other
pairs = [(i, j) for i in range(3) for j in range(i + 1, 3)]
i, j = min(pairs, key=lambda p: np.sum((gmm.means_[p[0]] - gmm.means_[p[1]]) ** 2))
a, b = gmm.means_[i], gmm.means_[j]
s = np.linspace(-0.3, 1.3, 321)
line = a + s[:, None] * (b - a)
line_proba = gmm.predict_proba(line)
nearest = ((line[:, None, :] - km_centres[None]) ** 2).sum(axis=2).argmin(axis=1)
soft_cross = s[np.argmax(line_proba[:, j] > line_proba[:, i])]
hard_cross = s[np.argmax(nearest == j)]
spread = [np.sqrt(np.linalg.det(gmm.covariances_[c])) for c in (i, j)]
print(f"on the line from mean {i} (at 0) to mean {j} (at 1):\n"
      f"  k-means switches at {hard_cross:.2f}, the responsibilities cross at "
      f"{soft_cross:.2f}\n"
      f"  spread (sqrt det covariance): component {i} {spread[0]:.2f}, "
      f"component {j} {spread[1]:.2f}")
axes[2].plot(s, line_proba[:, i], color=palette[i], lw=2, label=f"mixture: r(component {i})")
axes[2].plot(s, line_proba[:, j], color=palette[j], lw=2, label=f"mixture: r(component {j})")
axes[2].step(s, (nearest == i).astype(float), where="mid", color="black", ls="--",
             label=f"k-means: 1 if labelled {i}")
axes[2].set(xlabel=f"position on the line from mean {i} (0) to mean {j} (1)",
            ylabel="responsibility / label", title="Across the border: a step or a slope")
axes[2].legend(fontsize=8)

# %%
# Where the clouds are well apart, both methods agree and the mixture is
# sure.  Between the tight cloud and the wide one, k-means jumps from one
# label to the other halfway between its two centres, while the
# responsibilities slide from one component to the other within a short
# stretch, and they cross nearer the tight cloud: the wide component claims
# more of the space between them, and the points k-means gives to the tight
# cluster from the wide cloud's edge go back to the wide one.  The circled
# points are those the mixture is unsure of: the soft assignment says how
# far each label can be trusted; the hard one cannot.
