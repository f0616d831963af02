"""fastgmm.plotting: ellipse geometry, criterion curves, soft-assignment scatter.

Bad arguments to the plots are tested in test_bad_input.py.
"""

import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
from conftest import COVARIANCE_TYPES, PNG_SIGNATURE  # noqa: E402
from conftest import new_axes as _axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import imread  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402
from matplotlib.path import Path  # noqa: E402
from naive import full_covariances  # noqa: E402

from fastgmm import plotting  # noqa: E402


def _ellipse_points(patch):
    """Points on the drawn outline: the end points of its Bezier segments."""
    ends = [verts[-2:] for verts, code in patch.get_path().iter_segments()
            if code != Path.CLOSEPOLY]
    assert len(ends) >= 8
    return patch.get_patch_transform().transform(np.array(ends))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dims", [(0, 1), (2, 0)])
def test_ellipses_lie_at_the_stated_mahalanobis_distance(plot_models, covariance_type, dims):
    """Every drawn ellipse lies at the stated Mahalanobis distance of its component's marginal
    covariance (numpy), for any pair of dimensions, with the means marked.
    """
    _, fitted = plot_models
    model = fitted[covariance_type]
    ax = plotting.plot_ellipses(model, ax=_axes(), dims=dims, n_std=(1, 2))
    ellipses = [p for p in ax.patches if isinstance(p, Ellipse)]
    assert len(ellipses) == 4
    cov = full_covariances(covariance_type, model.covariances_, *model.means_.shape)
    idx = np.array(dims)
    for n, patch in enumerate(ellipses):
        comp, radius = divmod(n, 2)
        mean = model.means_[comp, idx]
        sub = cov[comp][np.ix_(idx, idx)]
        pts = _ellipse_points(patch) - mean
        maha = np.einsum("ni,ij,nj->n", pts, np.linalg.inv(sub), pts)
        np.testing.assert_allclose(maha, (radius + 1) ** 2, rtol=1e-9)
        assert patch.get_linestyle() == ("-" if radius == 0 else "--")
    # The means are marked.
    marks = np.array([line.get_xydata()[0] for line in ax.lines])
    np.testing.assert_allclose(marks, model.means_[:, idx])


def test_ellipses_in_transformed_units(plot_models):
    """With scale and offset the ellipses lie at the stated distance in the transformed units."""
    _, fitted = plot_models
    model = fitted["full"]
    scale, offset = np.array([3.0, 0.5]), np.array([10.0, -1.0])
    ax = plotting.plot_ellipses(model, ax=_axes(), n_std=(1.5,), scale=scale, offset=offset,
                                show_means=False)
    assert len(ax.patches) == 2 and not ax.lines
    for comp, patch in enumerate(ax.patches):
        mean = offset + scale * model.means_[comp, :2]
        sub = model.covariances_[comp][:2, :2] * np.outer(scale, scale)
        pts = _ellipse_points(patch) - mean
        maha = np.einsum("ni,ij,nj->n", pts, np.linalg.inv(sub), pts)
        np.testing.assert_allclose(maha, 1.5 ** 2, rtol=1e-9)


def test_marginal_covariances_of_params_object(plot_models):
    """Marginal means and covariances of a diag model are the selected entries of its parameters."""
    _, fitted = plot_models
    model = fitted["diag"]
    params = model._params()
    means, cov = plotting.marginal_covariances(params, dims=(1, 2))
    np.testing.assert_array_equal(means, model.means_[:, [1, 2]])
    for comp in range(2):
        np.testing.assert_array_equal(cov[comp], np.diag(model.covariances_[comp, [1, 2]]))


def test_criterion_curves_plot_the_given_values():
    """Criterion curves plot the given values, leave out NaN, and mark and label the lowest."""
    ks = np.arange(1, 6)
    curves = {"full": (ks, [50.0, 40.0, 35.0, 37.0, 45.0]),
              "diag": (ks, [60.0, np.nan, 38.0, 36.0, 34.5])}
    ax = plotting.plot_criterion(curves, ax=_axes(), criterion="AIC")
    full, diag, star = ax.lines
    np.testing.assert_array_equal(full.get_xdata(), ks)
    np.testing.assert_array_equal(full.get_ydata(), curves["full"][1])
    # the failed fit (NaN) is left out of its curve
    np.testing.assert_array_equal(diag.get_xdata(), [1, 3, 4, 5])
    np.testing.assert_array_equal(diag.get_ydata(), [60.0, 38.0, 36.0, 34.5])
    assert tuple(star.get_xydata()[0]) == (5.0, 34.5)
    assert star.get_label() == "lowest: k=5, diag"
    assert ax.get_ylabel() == "AIC (lower is better)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == \
        ["full", "diag", "lowest: k=5, diag"]


def test_criterion_curves_from_a_dataframe():
    """A DataFrame gives one curve per column over its index."""
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"tied": [3.0, 2.0, 2.5], "spherical": [4.0, 3.5, 1.0]},
                         index=[2, 4, 6])
    ax = plotting.plot_criterion(frame, ax=_axes(), mark_best=False)
    assert len(ax.lines) == 2
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), [2, 4, 6])
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [4.0, 3.5, 1.0])


def test_soft_assignment_scatter_colours_by_probability(plot_models):
    """The soft-assignment scatter plots the chosen dimensions coloured by the component's
    probability on a [0, 1] colour map, with a labelled colour bar.
    """
    X, fitted = plot_models
    model = fitted["full"]
    proba = model.predict_proba(X)
    ax = plotting.plot_soft_assignments(X, proba, ax=_axes(), component=1, dims=(0, 2))
    (points,) = ax.collections
    np.testing.assert_array_equal(points.get_offsets(), X[:, [0, 2]])
    np.testing.assert_array_equal(points.get_array(), proba[:, 1])
    assert points.get_clim() == (0.0, 1.0)
    # the mapped colours are the colour map at the probabilities
    cmap = matplotlib.colormaps["coolwarm"]
    np.testing.assert_allclose(points.to_rgba(points.get_array()), cmap(proba[:, 1]))
    assert points.colorbar is not None
    assert points.colorbar.ax.get_ylabel() == "P(component 1)"


def test_labels_scatter(plot_models):
    """The label scatter draws each label's rows as its own collection and refuses labels of
    another length.
    """
    X, fitted = plot_models
    labels = fitted["full"].predict(X)
    ax = plotting.plot_labels(X, labels, ax=_axes())
    assert len(ax.collections) == 2
    for value, coll in enumerate(ax.collections):
        np.testing.assert_array_equal(coll.get_offsets(), X[labels == value][:, :2])
    with pytest.raises(ValueError, match="integers"):
        plotting.plot_labels(X, labels[:-1], ax=_axes())


def test_default_axis_is_pyplots_current(plot_models):
    """Without an axis the plot draws on pyplot's current one."""
    import matplotlib.pyplot as plt

    X, fitted = plot_models
    fig = plt.figure()
    try:
        ax = plotting.plot_ellipses(fitted["spherical"])
        assert ax is fig.gca()
    finally:
        plt.close(fig)


def test_a_plot_saves_as_png(plot_models, tmp_path):
    """A figure with plots saves as a PNG of the stated size."""
    X, fitted = plot_models
    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    plotting.plot_soft_assignments(X, fitted["tied"].predict_proba(X), ax=ax)
    plotting.plot_ellipses(fitted["tied"], ax=ax)
    path = tmp_path / "plot.png"
    fig.savefig(path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert imread(path).shape == (300, 400, 4)


def test_missing_matplotlib_gives_a_clear_error(monkeypatch, plot_models):
    """Without matplotlib the plots raise ImportError saying how to install it."""
    X, fitted = plot_models
    for name in ("matplotlib", "matplotlib.patches", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"needs matplotlib.*pip install \"fastgmm\[plot\]\""):
        plotting.plot_ellipses(fitted["full"])
    with pytest.raises(ImportError, match="needs matplotlib"):
        plotting.plot_criterion({"full": ([1], [1.0])})


def test_import_fastgmm_does_not_import_matplotlib():
    """Importing fastgmm, its plotting module and its data sets imports neither matplotlib nor
    pandas.
    """
    code = ("import sys, fastgmm, fastgmm.plotting, fastgmm.datasets; "
            "print('matplotlib' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]
