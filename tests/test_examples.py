"""The gallery examples run, leave no files behind, and compute what they claim.

Each example in ``examples/`` is run once, as sphinx-gallery runs it (a
script named ``__main__``, matplotlib without a display), from an empty
working folder.  The helpers they write out in NumPy (k-means, the adjusted
Rand index) are checked against scikit-learn, and each example's results
against an independent computation: the in-memory fit for the out-of-core
ones, batch EM for online EM, the true labels for the clusterings.
"""

import os
import runpy
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastgmm

pytest.importorskip("matplotlib")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _run(name: str, workdir: str) -> tuple[dict, str, int, tuple]:
    """Globals, stdout, number of figures and files left behind of one example run."""
    import contextlib
    import io

    before = sorted(p.name for p in EXAMPLES.iterdir())
    out = io.StringIO()
    old = os.getcwd()
    os.chdir(workdir)
    plt.close("all")
    try:
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("error")           # an example must not warn
            env = runpy.run_path(str(EXAMPLES / name), run_name="__main__")
        n_figures = len(plt.get_fignums())
        for num in plt.get_fignums():
            fig = plt.figure(num)
            assert any(ax.has_data() for ax in fig.axes), f"{name}: figure {num} is empty"
    finally:
        plt.close("all")
        os.chdir(old)
    left = tuple(sorted(os.listdir(workdir)))
    assert sorted(p.name for p in EXAMPLES.iterdir()) == before, f"{name} wrote into examples/"
    return env, out.getvalue(), n_figures, left


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``run(name)``: the example's results, from one run per test module."""
    done = {}

    def run_example(name):
        if name not in done:
            workdir = tmp_path_factory.mktemp(name.removesuffix(".py"))
            done[name] = _run(name, str(workdir))
        return done[name]
    return run_example


@pytest.fixture(scope="module")
def wholesale(run):
    return run("wholesale_segmentation.py")


def test_every_example_is_tested():
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == sorted(["plot_gaussians_to_em.py",
                              "wholesale_segmentation.py", "plot_model_selection.py",
                              "plot_out_of_core_and_dask.py", "plot_online_em.py",
                              "plot_soft_vs_hard.py", "plot_missing_data.py",
                              "plot_parsimonious_models.py"])
    assert (EXAMPLES / "GALLERY_HEADER.rst").is_file()


# ---------------------------------------------------------------------------
# Helpers written out in the examples, against scikit-learn
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_adjusted_rand_index_matches_sklearn(wholesale, seed):
    metrics = pytest.importorskip("sklearn.metrics")
    ari = wholesale[0]["adjusted_rand_index"]
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    a = rng.integers(0, int(rng.integers(1, 6)), n)
    # b: a noisy copy of a with other label names, so the index is far from 0
    b = np.where(rng.uniform(size=n) < 0.3, rng.integers(0, 4, n), a * 7 + 3)
    assert ari(a, b) == pytest.approx(metrics.adjusted_rand_score(a, b), abs=1e-12)
    shuffled = rng.permutation(a)      # unrelated to a: index near 0, maybe negative
    assert ari(a, shuffled) == pytest.approx(metrics.adjusted_rand_score(a, shuffled),
                                             abs=1e-12)


def test_adjusted_rand_index_edge_cases(wholesale):
    metrics = pytest.importorskip("sklearn.metrics")
    ari = wholesale[0]["adjusted_rand_index"]
    cases = [([0, 0, 1, 1], [1, 1, 0, 0]),       # same partition, renamed
             ([0, 0, 0, 0], [0, 0, 0, 0]),       # one cluster each
             ([0, 1, 2, 3], [0, 1, 2, 3]),       # all singletons
             ([0, 0, 0, 0], [0, 1, 2, 3]),
             ([0, 0, 1, 2], [0, 1, 1, 1]),
             (["a", "b", "a"], [2, 2, 2])]
    for a, b in cases:
        assert ari(a, b) == pytest.approx(metrics.adjusted_rand_score(a, b), abs=1e-12), (a, b)
    with pytest.raises(ValueError, match="equal length"):
        ari([0, 1], [0, 1, 1])


def test_short_adjusted_rand_index_agrees(wholesale, run):
    metrics = pytest.importorskip("sklearn.metrics")
    short = run("plot_soft_vs_hard.py")[0]["adjusted_rand_index"]
    rng = np.random.default_rng(7)
    for _ in range(5):
        a, b = rng.integers(0, 4, 200), rng.integers(0, 3, 200)
        assert short(a, b) == pytest.approx(metrics.adjusted_rand_score(a, b), abs=1e-12)


def _blobs(seed, k=3, n=600, d=2):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(k, d))
    z = rng.integers(0, k, n)
    return centres[z] + rng.normal(size=(n, d))


@pytest.mark.parametrize("seed", range(3))
def test_kmeans_matches_sklearn(wholesale, run, seed):
    cluster = pytest.importorskip("sklearn.cluster")
    metrics = pytest.importorskip("sklearn.metrics")
    env = wholesale[0]
    X = _blobs(seed)
    labels, centres = env["kmeans"](X, 3, seed=seed)
    ref = cluster.KMeans(3, n_init=10, random_state=seed).fit(X)
    assert metrics.adjusted_rand_score(labels, ref.labels_) == 1.0
    # Same partition; scikit-learn stops on a tolerance, so its inertia may
    # be a little above the exact fixed point's.
    inertia = ((X - centres[labels]) ** 2).sum()
    assert inertia <= ref.inertia_ * (1 + 1e-12)
    assert inertia == pytest.approx(ref.inertia_, rel=1e-3)
    # Lloyd's fixed point: every row is nearest to its own centre, every
    # centre is the mean of its rows.
    assert np.array_equal(env["squared_distances"](X, centres).argmin(axis=1), labels)
    for j in range(3):
        np.testing.assert_allclose(centres[j], X[labels == j].mean(axis=0), rtol=1e-12)
    # The copy in the soft-vs-hard example is the same algorithm.
    short = run("plot_soft_vs_hard.py")[0]["kmeans"]
    assert np.array_equal(short(X, 3, seed=seed), labels)


def test_kmeans_on_the_wholesale_data_matches_sklearn(wholesale):
    cluster = pytest.importorskip("sklearn.cluster")
    env = wholesale[0]
    Z = env["Z"]
    labels, centres = env["kmeans"](Z, 2, n_init=10, seed=0)
    ref = cluster.KMeans(2, n_init=10, random_state=0).fit(Z)
    assert ((Z - centres[labels]) ** 2).sum() <= ref.inertia_ * (1 + 1e-9)


def test_standardize_uses_population_std(wholesale):
    X = np.array([[1.0, 10.0], [2.0, 20.0], [4.0, 60.0]])
    Z, mean, std = wholesale[0]["standardize"](X)
    np.testing.assert_allclose(std, np.sqrt(((X - X.mean(0)) ** 2).mean(0)))
    np.testing.assert_allclose(Z.std(axis=0, ddof=0), 1.0)


# ---------------------------------------------------------------------------
# Each example's results
# ---------------------------------------------------------------------------


def test_wholesale_example(wholesale):
    metrics = pytest.importorskip("sklearn.metrics")
    env, printed, n_figures, left = wholesale
    assert left == () and n_figures == 5
    for pair, (a, b) in {"GMM vs k-means": ("gmm_labels", "km_labels"),
                         "GMM vs Channel": ("gmm_labels", "channel"),
                         "k-means vs Channel": ("km_labels", "channel")}.items():
        assert env["agreement"][pair] == pytest.approx(
            metrics.adjusted_rand_score(env[a], env[b]), abs=1e-12)
    # The grid covers k = 1..8 and the four covariance types, and its choice
    # is the lowest BIC, which equals the chosen model's own bic().
    result = env["result"]
    assert result.n_components == tuple(range(1, 9))
    assert result.covariance_types == ("full", "tied", "diag", "spherical")
    bic = result.values("bic")
    assert result.best_score_ == bic.min()
    assert result.best_model_.bic(env["log_spend"]) == pytest.approx(bic.min(), rel=1e-12)
    # The variational step: ten components on the same columns, the count
    # printed is that of the weights above 0.01, and the weights are a
    # distribution.
    vb = env["vb"]
    assert vb.n_components == 10 and vb.weight_concentration_prior_type == "dirichlet_process"
    assert vb.means_.shape == (10, 6)
    assert vb.weights_.sum() == pytest.approx(1.0, abs=1e-12)
    n_eff = int((vb.weights_ > 0.01).sum())
    assert f"Variational Bayes keeps {n_eff} of 10 components with weight above 0.01; " \
           f"BIC chose k = {result.best_params_['n_components']}" in printed
    # The segment with more grocery spending is the retail one.
    retail = env["channel"] == 2
    assert env["gmm_labels"][retail].mean() > env["gmm_labels"][~retail].mean()
    for heading in ("Agreement of the two-segment solutions", "BIC on log spending",
                    "AIC on log spending", "BIC chooses k = ", "% Horeca", "% Retail",
                    "Two segments from Grocery and Milk"):
        assert heading in printed
    lines = printed.splitlines()
    head = lines.index("BIC on log spending (lower is better)") + 1
    assert lines[head].split() == ["k", "full", "tied", "diag", "spherical"]
    assert [ln.split()[0] for ln in lines[head + 1:head + 9]] == [str(k) for k in range(1, 9)]
    # Profiles: one column per segment; the customers add up to all 440, and
    # the segment means of each category average back to its overall mean.
    start = lines.index("Two segments from Grocery and Milk (mean annual spending, m.u.)")
    assert lines[start + 1].split() == ["segment", "0", "segment", "1"]
    rows = {ln[:18].strip(): ln[18:].split() for ln in lines[start + 2:start + 12]}
    counts = np.array([int(v.replace(",", "")) for v in rows["customers"]])
    assert counts.sum() == 440
    spend = env["spend"]
    for j, name in enumerate(env["names"]):
        means = np.array([float(v.replace(",", "")) for v in rows[name]])
        assert counts @ means / 440 == pytest.approx(spend[:, j].mean(), abs=0.5)
    for name in ("% Horeca", "% Retail"):
        assert len(rows[name]) == 2 and all(v.endswith("%") for v in rows[name])


def test_model_selection_example(run):
    env, printed, n_figures, left = run("plot_model_selection.py")
    assert left == () and n_figures == 4
    result = env["result"]
    bic, icl = result.values("bic"), result.values("icl")
    assert np.all(icl >= bic - 1e-9)                      # ICL = BIC + 2 x entropy
    # BIC recovers the five components of the data as full covariances; ICL
    # merges the two that overlap.
    assert result.best_params_ == {"n_components": 5, "covariance_type": "full"}
    assert env["icl_model"].n_components < 5
    assert "BIC prefers k = 5, full covariances" in printed


def test_parsimonious_models_example(run):
    env, printed, n_figures, left = run("plot_parsimonious_models.py")
    assert left == () and n_figures == 2
    result = env["result"]
    values = result.values()
    assert values.shape == (6, 14)
    i, j = np.unravel_index(np.argmin(values), values.shape)
    assert result.best_params_ == {"n_components": i + 1,
                                   "covariance_type": fastgmm.MCLUST_MODELS[j]}
    assert "Top 3 models based on the BIC criterion:" in printed
    X, best = env["X"], env["best"]
    n = X.shape[0]
    np.testing.assert_allclose(values[i, j], -2 * best.score(X) * n
                               + best._n_parameters() * np.log(n), rtol=1e-10)


def test_out_of_core_example(run):
    env, printed, n_figures, left = run("plot_out_of_core_and_dask.py")
    assert left == () and n_figures == 1
    assert not Path(env["path"]).exists()                  # the temporary folder is gone
    gap = env["largest_gap"]
    reference = env["in_memory"]
    for name in ("from_file", "streamed", "on_dask"):
        assert gap(reference, env[name]) < 1e-10, name
        assert env[name].n_iter_ == reference.n_iter_
    bounds = np.array(env["bounds"])
    assert np.all(np.diff(bounds) > -1e-9)                # EM never goes down
    assert bounds[-1] == pytest.approx(reference.lower_bound_, abs=2e-3)
    assert env["counts"].sum() == len(env["X"])


def test_online_example(run):
    env, printed, n_figures, left = run("plot_online_em.py")
    assert left == () and n_figures == 2
    held_out, batch_em = env["held_out"], env["batch_em"]
    assert env["online"].n_steps_ == 200
    assert env["scores"][-1] == pytest.approx(batch_em.score(held_out), abs=0.01)
    lag = {decay: np.sqrt(((track - env["path"]) ** 2).sum(axis=1))[-100:].mean()
           for decay, track in env["tracks"].items()}
    assert lag[0.3] < lag[0.9]                            # a faster decay follows the drift


def test_soft_vs_hard_example(run):
    metrics = pytest.importorskip("sklearn.metrics")
    env, printed, n_figures, left = run("plot_soft_vs_hard.py")
    assert left == () and n_figures == 2
    truth = env["truth"]
    gmm_score = metrics.adjusted_rand_score(truth, env["gmm_labels"])
    km_score = metrics.adjusted_rand_score(truth, env["km_labels"])
    assert gmm_score > km_score + 0.1
    np.testing.assert_allclose(env["proba"].sum(axis=1), 1.0, rtol=1e-12)
    # Calibration: in every well-filled confidence group, the share of
    # correct labels is close to the mean confidence.
    which, confidence, correct = env["which"], env["confidence"], env["correct"]
    for b in np.unique(which):
        members = which == b
        if members.sum() >= 100:
            assert abs(correct[members].mean() - confidence[members].mean()) < 0.1


def test_missing_data_example(run):
    env, printed, n_figures, left = run("plot_missing_data.py")
    assert left == () and n_figures == 1
    assert 0.15 < env["removed"].mean() < 0.25
    assert env["rmse_mixture"] < env["rmse_means"]
    obs = ~env["removed"]
    assert np.array_equal(env["imputed"][obs], env["X"][obs])
    # The fit with entries missing stays close to the complete-data fit.
    assert env["missing_fit"].score(env["X"]) > env["complete_fit"].score(env["X"]) - 0.5
    assert env["inside"].mean() > 0.85


# ---------------------------------------------------------------------------
# The lesson from one Gaussian to EM
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lesson(run):
    return run("plot_gaussians_to_em.py")


def test_lesson_runs_quickly_and_draws_its_figures(tmp_path):
    import time

    start = time.perf_counter()
    _, printed, n_figures, left = _run("plot_gaussians_to_em.py", str(tmp_path))
    assert time.perf_counter() - start < 20        # a few seconds on a quiet machine
    assert n_figures == 6 and left == ()
    assert "EM converged after" in printed


def test_lesson_estimates_are_near_the_truth(lesson):
    env = lesson[0]
    # one Gaussian: the estimates within 4 standard errors of the truth
    assert abs(env["est_mean"] - 2.0) < 4 * 0.7 / np.sqrt(400)
    assert abs(env["est_sd"] - 0.7) < 4 * 0.7 / np.sqrt(2 * 400)
    # three Gaussians: the fitted mixture, sorted by mean, against the truth
    mix, order = env["mix"], env["order"]
    np.testing.assert_allclose(mix.means_[order, 0], [-2.0, 1.0, 3.5], atol=0.2)
    np.testing.assert_allclose(mix.weights_[order], [0.5, 0.3, 0.2], atol=0.05)
    np.testing.assert_allclose(np.sqrt(mix.covariances_[order, 0, 0]), [0.6, 1.0, 0.5],
                               atol=0.2)
    # its density integrates to 1 (trapezoid rule on a wide grid)
    grid = np.linspace(-12, 12, 4001)
    density = np.exp(mix.score_samples(grid[:, None]))
    assert abs(np.sum((density[1:] + density[:-1]) / 2 * np.diff(grid)) - 1) < 1e-6


def test_lesson_em_history(lesson):
    """The callback saw every iteration, the log-likelihood never fell, and the last
    parameters recorded are the fitted ones, near the true clusters.
    """
    env = lesson[0]
    gmm, history = env["gmm"], env["history"]
    assert [h[0] for h in history] == list(range(1, gmm.n_iter_ + 1))
    bounds = np.array([h[1] for h in history])
    assert np.all(np.diff(bounds) >= -1e-10)
    last = history[-1][2]
    np.testing.assert_allclose(last.means, gmm.means_, rtol=1e-12, atol=1e-12)
    for mean in env["true_means"]:
        assert np.min(np.linalg.norm(gmm.means_ - mean, axis=1)) < 0.4
    # the parameters drawn first are not yet the fitted ones (there is progress to see)
    assert np.max(np.abs(history[0][2].means - gmm.means_)) > 1.0


def test_lesson_responsibilities_are_the_e_step(lesson):
    """The E-step written out in the lesson against scipy densities."""
    from scipy.stats import multivariate_normal

    env = lesson[0]
    X, gmm = env["X"], env["gmm"]
    for _, _, params in env["history"][::10] + env["history"][-1:]:
        r = env["responsibilities"](X, params)
        terms = np.column_stack([w * multivariate_normal(m, c).pdf(X) for w, m, c in zip(
            params.weights, params.means, params.covariances, strict=True)])
        np.testing.assert_allclose(r, terms / terms.sum(axis=1, keepdims=True), atol=1e-10)
    np.testing.assert_allclose(env["responsibilities"](X, env["history"][-1][2]),
                               gmm.predict_proba(X), atol=1e-8)
    # the log-likelihood of the parameters after iteration t is the bound the
    # callback reports at iteration t + 1, and the model's own score at the end
    history = env["history"]
    for t in range(0, len(history) - 1, 7):
        assert env["log_likelihood"](X, history[t][2]) == pytest.approx(history[t + 1][1],
                                                                        abs=1e-9)
    assert env["log_likelihood"](X, history[-1][2]) == pytest.approx(gmm.score(X), abs=1e-9)


def test_lesson_kmeans_and_the_border(lesson):
    cluster = pytest.importorskip("sklearn.cluster")
    metrics = pytest.importorskip("sklearn.metrics")
    env, printed = lesson[0], lesson[1]
    X = env["X"]
    ref = cluster.KMeans(3, init=env["start"], n_init=1).fit(X)
    assert metrics.adjusted_rand_score(env["km_labels"], ref.labels_) == 1.0
    agree = np.mean(env["km_labels"] == env["gmm"].predict(X))
    assert f"give {agree:.1%} of the points the same component;" in printed
    assert 0.5 < agree < 1.0                         # they differ, and not everywhere
    # the responsibilities cross nearer the tighter of the two components
    i, j = env["i"], env["j"]
    dets = [np.linalg.det(env["gmm"].covariances_[c]) for c in (i, j)]
    assert (env["soft_cross"] < 0.5) == (dets[0] < dets[1])
    assert abs(env["soft_cross"] - env["hard_cross"]) > 0.1
