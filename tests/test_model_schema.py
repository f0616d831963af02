"""The estimator layer's seams.

One fit template, model-file schemas declared by the estimators, and a file
module that reaches no private member of an estimator.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastgmm
from fastgmm import _io, _registry
from fastgmm._bayesian import BayesianGaussianMixture
from fastgmm._estimator import GaussianMixture, _MixtureBase
from fastgmm._schema import FLOAT64, MODEL_DTYPE, Layout, ModelSchema

PACKAGE = Path(fastgmm.__file__).resolve().parent
OLD_FILES = Path(__file__).resolve().parent / "data" / "model_files_v1"
ESTIMATORS = (GaussianMixture, BayesianGaussianMixture)

rng = np.random.default_rng(0)
X = np.r_[rng.normal(size=(150, 3)), rng.normal(size=(150, 3)) + 5]


def _fitted(cls, covariance_type="full", **kw):
    return cls(2, covariance_type=covariance_type, random_state=0, max_iter=20,
               **kw).fit(X)


def _public_fitted(model) -> set[str]:
    return {n for n in vars(model) if n.endswith("_") and not n.startswith("_")}


# ----------------------------------------------------------------------------
# one fit template
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_estimators_only_implement_hooks(cls):
    own = set(vars(cls))
    assert not own & {"fit", "_fit", "fit_predict", "_store_result", "_warm"}, (
        f"{cls.__name__} has a fit skeleton of its own")
    assert "_fit_start" in own  # the one hook every mixture must supply
    assert "_fit" in vars(_MixtureBase)


def test_em_runs_from_the_template_alone():
    # The EM loop and its restarts are started in one place: _MixtureBase._fit.
    calls = []
    for name in ("_estimator.py", "_bayesian.py"):
        tree = ast.parse((PACKAGE / name).read_text(encoding="utf-8"))
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                            and node.func.attr in ("run_em", "fit_restarts"):
                        calls.append((name, cls.name, fn.name, node.func.attr))
    assert sorted(calls) == [("_estimator.py", "_MixtureBase", "_fit", "fit_restarts"),
                             ("_estimator.py", "_MixtureBase", "_fit", "run_em")]


def test_bayesian_imports_no_private_helper_of_the_estimator_module():
    tree = ast.parse((PACKAGE / "_bayesian.py").read_text(encoding="utf-8"))
    private = {alias.name for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) and node.module == "_estimator"
               for alias in node.names if alias.name.startswith("_")}
    assert private == {"_MixtureBase"}  # the base class only


# ----------------------------------------------------------------------------
# _io reaches no private member of an estimator
# ----------------------------------------------------------------------------


def test_io_source_accesses_no_private_attribute():
    tree = ast.parse((PACKAGE / "_io.py").read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not (node.attr.startswith("__") and node.attr.endswith("__")):
            found.append(ast.unparse(node))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("getattr", "setattr", "hasattr", "delattr") \
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) \
                and str(node.args[1].value).startswith("_"):
            found.append(ast.unparse(node))
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not any(n.split(".")[-1] in ("_estimator", "_bayesian") for n in names), (
                "_io imports an estimator module")
    assert not found, f"_io.py reaches private attributes: {found}"


class _Watched:
    """Mixin recording private attributes read or set from fastgmm._io's code."""

    def __getattribute__(self, name):
        _note(name)
        return super().__getattribute__(name)

    def __setattr__(self, name, value):
        _note(name)
        super().__setattr__(name, value)


_NOTED: list[str] = []


def _note(name: str) -> None:
    if name.startswith("_") and not name.endswith("__"):
        caller = sys._getframe(2).f_globals.get("__name__")
        if caller == "fastgmm._io":
            _NOTED.append(name)


class WatchedGM(_Watched, GaussianMixture):
    pass


class WatchedBGM(_Watched, BayesianGaussianMixture):
    pass


def test_the_watch_sees_private_access():
    # Code of fastgmm._io reading or setting a private member is recorded.
    model = WatchedGM()
    scope = {"__name__": "fastgmm._io"}
    exec("def peek(m):\n    m._probe = 1\n    return m._probe\n", scope)
    _NOTED.clear()
    scope["peek"](model)
    assert _NOTED == ["_probe", "_probe"]


@pytest.mark.parametrize("cls", [WatchedGM, WatchedBGM])
def test_io_reaches_no_private_member_at_run_time(cls, tmp_path, monkeypatch):
    model = _fitted(cls)
    _NOTED.clear()
    _io.save(model, tmp_path / "m.npz")
    # Loading builds the registered class; watch it too.
    base = _registry.registered_class(model)
    module, name = next(v for v in _registry.MODEL_FORMATS.values() if v[1] == base.__name__)
    monkeypatch.setattr(sys.modules[module], name, cls)
    loaded = _io.load(tmp_path / "m.npz")
    assert type(loaded) is cls
    assert _NOTED == []


# ----------------------------------------------------------------------------
# schemas
# ----------------------------------------------------------------------------


def test_reading_a_file_imports_only_the_estimator_it_names(tmp_path):
    # _io finds the class through the registry, which imports its module on
    # first use: a GaussianMixture file leaves fastgmm._bayesian unimported.
    path = tmp_path / "m.npz"
    _fitted(GaussianMixture).save(path)
    code = (f"import sys, fastgmm._io as io; m = io.read({str(path)!r}).model; "
            "assert type(m).__name__ == 'GaussianMixture'; "
            "assert 'fastgmm._bayesian' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registry_and_schemas_agree():
    assert set(_registry.MODEL_FORMATS) == set(_io.FORMAT_CLASSES)
    for fmt in _registry.MODEL_FORMATS:
        cls = _registry.model_class(fmt)
        schema = cls.model_schema()
        assert isinstance(schema, ModelSchema) and schema.format == fmt
        assert _io.FORMAT_NAMES[cls.__name__] == fmt
    assert {c.__name__ for c in _MixtureBase.__subclasses__()} == {
        c.__name__ for c in ESTIMATORS}
    for cls in ESTIMATORS:
        assert _registry.registered_class(cls()) is cls
    assert _registry.registered_class(WatchedGM()) is GaussianMixture
    assert _registry.registered_class(object()) is None


CASES = [(GaussianMixture, ct, {}) for ct in ("full", "tied", "diag", "spherical")] + [
    (BayesianGaussianMixture, ct, {"weight_concentration_prior_type": pt})
    for ct, pt in (("full", "dirichlet_process"), ("tied", "dirichlet_distribution"),
                   ("diag", "dirichlet_distribution"), ("spherical", "dirichlet_process"))]


@pytest.mark.parametrize("cls, ctype, kw", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_schema_lists_exactly_what_save_writes(cls, ctype, kw, dtype, tmp_path):
    model = cls(2, covariance_type=ctype, random_state=0, max_iter=20, **kw).fit(
        X.astype(dtype))
    schema = cls.model_schema()
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        members = {n: f[n] for n in f.files}
    meta = json.loads(members.pop("metadata").tobytes())
    arrays = {n for n in members if not n.startswith(("param.", "extra."))}
    assert arrays == {spec.name for spec in schema.arrays}
    assert set(meta["attributes"]) <= {spec.name for spec in schema.attributes}
    # Every public fitted attribute is in the file: nothing is left out.
    assert meta["attributes_not_saved"] == []
    # ... and the private fitted state the schema declares (how gaps are treated).
    private = set(schema.fit_attributes(model)) if schema.fit_attributes else set()
    assert arrays | set(meta["attributes"]) == _public_fitted(model) | private
    # Shapes and dtypes as declared.
    layout = Layout(ctype, 2, 3, np.dtype(dtype).name,
                    schema.layout_options(meta["params"], pytest.fail))
    for spec in schema.arrays:
        assert members[spec.name].shape == tuple(spec.shape(layout)), spec.name
        expected = np.dtype(dtype) if spec.dtype == MODEL_DTYPE else np.dtype(np.float64)
        assert spec.dtype in (MODEL_DTYPE, FLOAT64)
        assert members[spec.name].dtype == expected, spec.name

    loaded = fastgmm.load(tmp_path / "m.npz")
    assert type(loaded) is cls
    assert _public_fitted(loaded) == _public_fitted(model)
    for name in _public_fitted(model):
        a, b = getattr(model, name), getattr(loaded, name)
        assert type(a) is type(b), name
        if isinstance(a, tuple):
            assert all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(a, b,
                                                                                  strict=True))
        elif isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), name
        else:
            assert a == b, name
    assert loaded.get_params().keys() == model.get_params().keys()
    np.testing.assert_array_equal(loaded.score_samples(X[:30]), model.score_samples(X[:30]))


def test_online_attribute_round_trips(tmp_path):
    model = GaussianMixture(2, random_state=0).partial_fit(X[:150]).partial_fit(X[150:])
    model.save(tmp_path / "m.npz")
    loaded = fastgmm.load(tmp_path / "m.npz")
    assert loaded.n_steps_ == model.n_steps_ == 2
    assert GaussianMixture.model_schema().attribute("n_steps_") is not None
    assert BayesianGaussianMixture.model_schema().attribute("n_steps_") is None


def test_param_arrays_follow_the_layout():
    gm, bgm = GaussianMixture.model_schema(), BayesianGaussianMixture.model_schema()
    full = Layout("full", 2, 3)
    assert gm.param_shapes(full) == {"weights_init": (2,), "means_init": (2, 3),
                                     "precisions_init": (2, 3, 3)}
    assert bgm.param_shapes(full) == {"mean_prior": (3,), "covariance_prior": (3, 3)}
    assert bgm.param_shapes(Layout("spherical", 2, 3)) == {"mean_prior": (3,)}


@pytest.mark.parametrize("name", sorted(p.name for p in OLD_FILES.glob("*.npz")))
def test_files_of_the_previous_code_load_unchanged(name, tmp_path):
    # Written by fastgmm before the schemas were declared by the estimators.
    expected = json.loads((OLD_FILES / "expected.json").read_text())[name]
    model = fastgmm.load(OLD_FILES / name)
    assert repr(model) == expected["repr"]
    np.testing.assert_allclose(model.score_samples(X[:20]), expected["score_samples"],
                               rtol=1e-12, atol=0)
    with np.load(OLD_FILES / name, allow_pickle=False) as f:
        for member in f.files:
            if member != "metadata" and not member.startswith(("param.", "extra.")):
                value = getattr(model, member)
                stored = f[member]
                if isinstance(value, tuple):  # the Dirichlet process's two Beta arrays
                    value = np.stack(value)
                np.testing.assert_array_equal(np.asarray(value), stored)
                assert np.asarray(value).dtype == stored.dtype
    # Saved again, the file holds the same arrays and metadata (but the digest).
    model.save(tmp_path / "again.npz")
    with np.load(OLD_FILES / name) as a, np.load(tmp_path / "again.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for member in a.files:
            if member != "metadata":
                assert a[member].dtype == b[member].dtype
                np.testing.assert_array_equal(a[member], b[member])
        meta_a = json.loads(a["metadata"].tobytes())
        meta_b = json.loads(b["metadata"].tobytes())
    for meta in (meta_a, meta_b):
        meta.pop("sha256")
        meta.pop("fastgmm_version")
    # A Gaussian mixture's file now records how the fit treats gaps; an old
    # file's model treats them as its missing parameter said.
    if meta_a["format"] == "fastgmm.GaussianMixture":
        assert "fit_missing_" not in meta_a["attributes"]
        assert meta_b["attributes"].pop("fit_missing_") == meta_a["params"].get("missing",
                                                                                "error")
    assert meta_a == meta_b
