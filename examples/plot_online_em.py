r"""
Online EM on a stream: ``partial_fit``
======================================

When data arrive in batches and are seen once, or when the process that
produces them drifts, :meth:`fastgmm.GaussianMixture.partial_fit` updates
the model one batch at a time with stepwise EM (Cappé and Moulines 2009).
Each batch's statistics are blended into running ones with step size
:math:`\rho_t = (t + \tau)^{-\kappa}`, then an M-step follows (see
:ref:`online`).

1. a stationary stream: one pass of online EM against batch EM on all the
   data;
2. a drifting stream: a slow decay of the step size (``learning_decay``
   near 1) averages over the past, a fast one follows the drift.
"""

import matplotlib.pyplot as plt
import numpy as np

import fastgmm

SEED = 0
rng = np.random.default_rng(SEED)

# %%
# Step 1: a stationary stream
# ---------------------------
# Three components in two dimensions; 200 batches of 500 rows.  A held-out
# set of 20,000 rows measures each model.

means = np.array([[0.0, 0.0], [5.0, 1.0], [1.0, 6.0]])
scales = np.array([1.0, 0.6, 1.4])
weights = np.array([0.5, 0.3, 0.2])


def draw(n, centres=means):
    z = rng.choice(3, size=n, p=weights)
    return centres[z] + rng.standard_normal((n, 2)) * scales[z, None]


held_out = draw(20_000)
batches = [draw(500) for _ in range(200)]

online = fastgmm.GaussianMixture(3, random_state=SEED)     # learning_offset=10, decay=0.6
scores = []
for batch in batches:
    online.partial_fit(batch)
    scores.append(online.score(held_out))

batch_em = fastgmm.GaussianMixture(3, random_state=SEED).fit(np.vstack(batches))
print(f"online EM after {online.n_steps_} batches: held-out log-likelihood {scores[-1]:.5f}")
print(f"batch EM on all {sum(map(len, batches)):,} rows:  held-out log-likelihood "
      f"{batch_em.score(held_out):.5f}")

fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
ax.plot(np.arange(1, len(scores) + 1), scores, label="online EM (partial_fit)")
ax.axhline(batch_em.score(held_out), color="0.3", linestyle="--", label="batch EM, all rows")
ax.set(xlabel="batches seen", ylabel="mean log-likelihood, held-out rows",
       title="One pass of online EM reaches batch EM", ylim=(scores[-1] - 0.05, None))
ax.legend()

# %%
# Step 2: a drifting stream
# -------------------------
# Now the third component moves along a circle while the stream runs.  The
# step size :math:`\rho_t = (t + 10)^{-\kappa}` decides how fast old batches
# are forgotten: with :math:`\kappa = 0.9` the running statistics average
# over nearly the whole past; with :math:`\kappa = 0.3` recent batches keep a
# large weight.  Both models start from the same first batch.

n_batches = 300
angles = np.linspace(0, np.pi, n_batches)
path = np.column_stack([1 + 7 * np.sin(angles), 7 * np.cos(angles)])  # the moving centre


def drifting(t):
    centres = means.copy()
    centres[2] = path[t]
    return draw(500, centres)


first = drifting(0)
models = {decay: fastgmm.GaussianMixture(3, random_state=SEED, learning_decay=decay)
          for decay in (0.9, 0.3)}
tracks = {decay: [] for decay in models}
for t in range(n_batches):
    batch = first if t == 0 else drifting(t)
    for decay, model in models.items():
        model.partial_fit(batch)
        if t == 0:  # the component fitted to the moving cluster at the start
            moving = np.argmin(((model.means_ - path[0]) ** 2).sum(axis=1))
            tracks[decay] = (moving, [])
        tracks[decay][1].append(model.means_[tracks[decay][0]].copy())
tracks = {decay: np.array(track) for decay, (_, track) in tracks.items()}

for decay, track in tracks.items():
    lag = np.sqrt(((track - path) ** 2).sum(axis=1))
    print(f"learning_decay={decay}: mean distance to the moving centre over the last "
          f"100 batches {lag[-100:].mean():.2f}")

fig, ax = plt.subplots(figsize=(7, 6), layout="constrained")
ax.plot(path[:, 0], path[:, 1], color="black", linewidth=4, alpha=0.25,
        label="true centre of the moving component")
for decay, colour in zip(tracks, ("C0", "C3"), strict=True):
    ax.plot(tracks[decay][:, 0], tracks[decay][:, 1], color=colour,
            label=f"its estimate, learning_decay = {decay}")
ax.plot(*path[-1], marker="*", markersize=14, color="black", linestyle="none",
        label="where the centre ends")
ax.plot(*means[:2].T, marker="+", markersize=12, color="0.4", linestyle="none",
        label="the two fixed components")
ax.set(xlabel="x1", ylabel="x2", title="Following a drifting component", xlim=(-8, 9))
ax.legend(fontsize="small", loc="center left")
