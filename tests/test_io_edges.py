"""Model files at the edges a user meets (issue #28, item 1).

Listed extra arrays that inflate enormously, paths that are not regular
files, text fields that would drive a terminal, Bayesian posteriors with
finite but unusable values, and a seeded fuzz loop over whole files: each
case is a clean ``ModelFileError`` or a model whose scores are finite on
finite data.
"""

from __future__ import annotations

import copy
import io
import os
import threading
import time
import zipfile

import numpy as np
import pytest
from scipy.special import digamma
from test_io_hardening import _craft, _open, _peak_bytes

import fastgmm
from fastgmm import ModelFileError
from fastgmm._io import read, save
from fastgmm.cli import main


def _data(seed=0, n=300):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal([0.0, 0.0, 1.0], 1.0, (n // 2, 3)),
                      rng.normal([5.0, 3.0, -2.0], [1.0, 0.5, 2.0], (n - n // 2, 3))])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(X, {name: path}) of a Gaussian and a Bayesian model file."""
    folder = tmp_path_factory.mktemp("edges")
    X = _data()
    out = {}
    gm = fastgmm.GaussianMixture(2, random_state=0).fit(X)
    gm.save(folder / "gm.npz")
    out["gm"] = folder / "gm.npz"
    bgm = fastgmm.BayesianGaussianMixture(3, random_state=0, max_iter=50).fit(X)
    bgm.save(folder / "bgm.npz")
    out["bgm"] = folder / "bgm.npz"
    bgm_dd = fastgmm.BayesianGaussianMixture(
        3, covariance_type="diag", weight_concentration_prior_type="dirichlet_distribution",
        random_state=0, max_iter=50).fit(X)
    bgm_dd.save(folder / "bgm_dd.npz")
    out["bgm_dd"] = folder / "bgm_dd.npz"
    return X, out


# ---------------------------------------------------------------------------
# a listed extra array that is a zip bomb
# ---------------------------------------------------------------------------


def test_a_listed_extra_bomb_is_not_inflated_by_load(tmp_path, files):
    X, paths = files
    meta, arrays = _open(paths["gm"])
    arrays["extra.zeros"] = np.zeros(40 * 2**20 // 8)    # 40 MB of zeros, ~40 KB deflated
    path = tmp_path / "bomb.npz"
    _craft(path, meta, arrays, compression=zipfile.ZIP_DEFLATED)
    del arrays["extra.zeros"]
    assert path.stat().st_size < 2**20

    loaded = []
    assert _peak_bytes(lambda: loaded.append(fastgmm.load(path))) < 4 * 2**20
    np.testing.assert_array_equal(loaded[0].means_, arrays["means_"])
    # read() skips it too when told to, and reads it (bounded by its shape) when asked.
    assert _peak_bytes(lambda: read(path, extra_arrays=False)) < 4 * 2**20
    assert read(path, extra_arrays=()).extra_arrays == {}
    assert read(path, extra_arrays=["zeros"]).extra_arrays["zeros"].shape == (40 * 2**20 // 8,)


def test_a_skipped_extra_is_still_checked_against_its_listing(tmp_path, files):
    _, paths = files
    meta, arrays = _open(paths["gm"])
    arrays["extra.note"] = np.zeros(3)
    path = tmp_path / "swapped.npz"
    _craft(path, meta, arrays)
    meta2, _ = _open(path)
    meta2["arrays"]["extra.note"]["shape"] = [4]        # listed shape no longer the header's
    _craft(path, meta2, arrays, table=False)
    with pytest.raises(ModelFileError, match="'extra.note' does not match"):
        fastgmm.load(path)


# ---------------------------------------------------------------------------
# paths that are not regular files
# ---------------------------------------------------------------------------


def _within(seconds, fn):
    """fn()'s exception or result, failing if it takes longer than ``seconds``."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    start = time.perf_counter()
    thread.start()
    thread.join(seconds)
    return thread.is_alive(), time.perf_counter() - start, box


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_within_a_second(tmp_path, capsys):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    try:
        hung, took, box = _within(5, lambda: fastgmm.load(fifo))
        assert not hung, "load blocked on a FIFO"
        assert took < 1.0
        assert isinstance(box.get("error"), ModelFileError)
        assert "FIFO" in str(box["error"]) and "not a regular file" in str(box["error"])
        for argv in (["info", str(fifo)], ["predict", str(fifo), str(tmp_path / "x.csv"),
                                           "--out", str(tmp_path / "o.csv")]):
            hung, took, box = _within(5, lambda argv=argv: main(argv))
            assert not hung, f"fastgmm {argv[0]} blocked on a FIFO"
            assert box.get("value") not in (0, None)
    finally:
        # Release any reader still blocked (a failing run) before the folder goes.
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    assert "not a regular file" in capsys.readouterr().err


@pytest.mark.parametrize("target, kind", [("dir", "a directory"), (os.devnull, "a device")])
def test_directories_and_devices_are_refused(tmp_path, target, kind):
    path = tmp_path if target == "dir" else target
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")
    with pytest.raises(ModelFileError, match=f"is {kind}, not a regular file"):
        fastgmm.load(path)


# ---------------------------------------------------------------------------
# text printed by the command line
# ---------------------------------------------------------------------------


def test_info_escapes_every_text_field(tmp_path, files, capsys):
    X, _ = files
    model = fastgmm.GaussianMixture(2, random_state=0).fit(X)
    model.feature_names_in_ = np.array(["a\x1b[31mred", "line\nbreak", "t\u202eemp\u00e9"],
                                       dtype=object)
    path = tmp_path / "names.npz"
    save(model, path, extra={"cli": {"columns": ["c\x1b]0;x\x07", "d", "e"],
                                             "log": False, "standardize": False,
                                             "data": "data\r\x1b[2J.csv"}})
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in "\x1b\x07\r\u202e")
    assert "a\\x1b[31mred" in out and "line\\nbreak" in out and "t\\u202eempé" in out
    assert "c\\x1b]0;x\\x07" in out and "data\\r\\x1b[2J.csv" in out
    # Seven lines, as info prints for such a model: no newline came from the file.
    starts = ["file:", "format:", "components:", "features:", "fitted by", "EM:", "weights:"]
    lines = out.splitlines()
    assert len(lines) == len(starts)
    assert all(line.startswith(start) for line, start in zip(lines, starts, strict=True))


def test_errors_naming_file_text_are_escaped(tmp_path, files, capsys):
    X, _ = files
    model = fastgmm.GaussianMixture(2, random_state=0).fit(X[:, :2])
    model.feature_names_in_ = np.array(["x\x1b[2J", "y"], dtype=object)
    save(model, tmp_path / "m.npz")
    (tmp_path / "d.csv").write_text("p,q\n1,2\n3,4\n")
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "d.csv"),
                 "--out", str(tmp_path / "o.csv")]) != 0
    err = capsys.readouterr().err
    assert "\x1b" not in err and "x\\x1b[2J" in err


# ---------------------------------------------------------------------------
# Bayesian posteriors that would make the model unusable
# ---------------------------------------------------------------------------


def _forged(tmp_path, path, **changes):
    meta, arrays = _open(path)
    for name, value in changes.items():
        arrays[name] = np.asarray(value, dtype=arrays[name].dtype).reshape(arrays[name].shape)
    out = tmp_path / "forged.npz"
    _craft(out, meta, arrays)
    return out, arrays


def _dp_weights(a, b):
    """The stick-breaking expected weights (Blei & Jordan 2006), independently."""
    v = a / (a + b)
    rest = np.concatenate(([1.0], np.cumprod(1.0 - v)[:-1]))
    w = v * rest
    return w / w.sum()


def test_the_saved_bayesian_files_load_and_their_weights_are_the_posteriors(files):
    _, paths = files
    for name in ("bgm", "bgm_dd"):
        meta, arrays = _open(paths[name])
        conc = arrays["weight_concentration_"]
        expected = _dp_weights(*conc) if conc.ndim == 2 else conc / conc.sum()
        np.testing.assert_allclose(arrays["weights_"], expected, rtol=1e-12)
        fastgmm.load(paths[name])


@pytest.mark.parametrize("name, value, match", [
    ("mean_precision_", 5e-324, "too extreme for the scores to be finite"),
    ("weight_concentration_", 1e308, "too extreme|not finite"),
])
def test_extreme_but_finite_posteriors_are_refused(tmp_path, files, name, value, match):
    X, paths = files
    meta, arrays = _open(paths["bgm"])
    forged = np.full_like(arrays[name], value)
    with np.errstate(all="ignore"):
        # What scoring such a model would do: the E-step's constants of
        # Bishop (2006) eq. 10.65/10.66 are not finite.
        if name == "mean_precision_":
            assert not np.isfinite(3 / (2 * forged)).all()
        else:
            assert not np.isfinite(digamma(forged[0]) - digamma(forged[0] + forged[1])).all()
    path, _ = _forged(tmp_path, paths["bgm"], **{name: forged})
    with pytest.raises(ModelFileError, match=match):
        fastgmm.load(path)


@pytest.mark.parametrize("which", ["bgm", "bgm_dd"])
def test_weights_that_contradict_the_concentrations_are_refused(tmp_path, files, which):
    _, paths = files
    meta, arrays = _open(paths[which])
    w = arrays["weights_"][::-1].copy()                 # still positive, still sums to 1
    assert not np.allclose(w, arrays["weights_"])
    path, _ = _forged(tmp_path, paths[which], weights_=w)
    with pytest.raises(ModelFileError, match="weights_ differs from the weights that "
                                             "weight_concentration_ gives"):
        fastgmm.load(path)


# ---------------------------------------------------------------------------
# the fuzz loop
# ---------------------------------------------------------------------------

FUZZ_SEED = 28
FUZZ_CASES = 600
FUZZ_SECONDS = 20.0


def _zip_members(blob: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def _zip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    return buf.getvalue()


_EXTREMES = [0.0, -0.0, 1e-320, 5e-324, 1e-300, 1e300, 1e308, -1e308, -1.0, 1.0, 3.0e38, 1e-45]


def _forge_values(rng, meta, arrays):
    """Digests fresh, values forged: entries replaced by extreme or shuffled values."""
    arrays = {k: v.copy() for k, v in arrays.items()}
    name = rng.choice(sorted(arrays))
    arr = arrays[name]
    flat = arr.reshape(-1)
    if flat.size:
        how = rng.integers(3)
        if how == 0:
            idx = rng.integers(flat.size, size=rng.integers(1, flat.size + 1))
            with np.errstate(all="ignore"):
                flat[idx] = np.asarray(rng.choice(_EXTREMES, size=idx.size)).astype(arr.dtype)
        elif how == 1:
            with np.errstate(all="ignore"):
                flat *= arr.dtype.type(rng.choice([1e-300, 1e300, -1.0, 1e30, 1e-30]))
        else:
            rng.shuffle(flat)
    return f"values of {name}", meta, arrays


def _forge_shape(rng, meta, arrays):
    """A fitted array given another shape, consistently in its header and listing."""
    arrays = dict(arrays)
    name = rng.choice(sorted(n for n in arrays if not n.startswith("extra.")))
    shape = list(arrays[name].shape) or [1]
    axis = rng.integers(len(shape))
    shape[axis] = int(rng.choice([0, 1, shape[axis] + 1, 2 * shape[axis] + 3]))
    arrays[name] = rng.normal(size=shape).astype(arrays[name].dtype)
    meta = copy.deepcopy(meta)
    if rng.random() < 0.5:
        key = rng.choice(["n_components", "n_features"])
        meta[key] = int(shape[0]) if shape[0] else 1
    return f"shape of {name} -> {shape}", meta, arrays


def _fuzz_cases(rng, blob, meta, arrays):
    """(description, file bytes) for one random mutation of a model file."""
    kind = rng.integers(6)
    if kind == 0:                                        # random byte flips
        data = bytearray(blob)
        for pos in rng.integers(len(data), size=rng.integers(1, 6)):
            data[pos] ^= 1 << int(rng.integers(8))
        return "byte flips", bytes(data)
    if kind == 1:                                        # truncation
        return "truncated", blob[: int(rng.integers(len(blob)))]
    if kind == 2:                                        # member swaps
        members = _zip_members(blob)
        names = sorted(members)
        a, b = rng.choice(len(names), size=2, replace=False)
        renamed = dict(members)
        renamed[names[a]], renamed[names[b]] = members[names[b]], members[names[a]]
        return f"swapped {names[a]} and {names[b]}", _zip(renamed)
    if kind == 3:                                        # a member's bytes flipped, zip valid
        members = _zip_members(blob)
        name = rng.choice(sorted(members))
        data = bytearray(members[name])
        pos = int(rng.integers(len(data)))
        data[pos] ^= 1 << int(rng.integers(8))
        members[name] = bytes(data)
        return f"bytes of {name}", _zip(members)
    forge = _forge_values if kind == 4 else _forge_shape
    what, meta2, arrays2 = forge(rng, meta, arrays)
    buf = io.BytesIO()
    path = buf  # _craft writes to anything zipfile accepts
    _craft(path, meta2, arrays2)
    return what, buf.getvalue()


def test_fuzzed_model_files_are_refused_cleanly_or_score_finitely(tmp_path, files):
    X, paths = files
    rng = np.random.default_rng(FUZZ_SEED)
    bases = []
    for name in ("gm", "bgm", "bgm_dd"):
        blob = paths[name].read_bytes()
        meta, arrays = _open(paths[name])
        bases.append((blob, meta, arrays))
    target = tmp_path / "fuzzed.npz"
    outcomes = {"refused": 0, "loaded": 0}
    start = time.perf_counter()
    for case in range(FUZZ_CASES):
        if time.perf_counter() - start > FUZZ_SECONDS:
            break
        blob, meta, arrays = bases[case % len(bases)]
        what, data = _fuzz_cases(rng, blob, meta, arrays)
        target.write_bytes(data)
        try:
            model = fastgmm.load(target)
        except ModelFileError:
            outcomes["refused"] += 1
            continue
        except Exception as exc:  # pragma: no cover - the failure this test looks for
            pytest.fail(f"case {case} ({what}): {type(exc).__name__}: {exc}")
        outcomes["loaded"] += 1
        scores = model.score_samples(X)
        assert np.isfinite(scores).all(), f"case {case} ({what})"
        assert model.predict(X).shape == (X.shape[0],)
    assert outcomes["refused"] + outcomes["loaded"] >= 100, outcomes
    assert outcomes["refused"] > 0 and outcomes["loaded"] > 0, outcomes


def test_means_too_far_for_any_row_to_score_are_refused(tmp_path, files):
    X, paths = files
    meta, arrays = _open(paths["gm"])
    means = arrays["means_"] * 1e160                    # finite; squared distance ~1e320
    with np.errstate(over="ignore"):
        assert not np.isfinite((means ** 2).sum())
    path, _ = _forged(tmp_path, paths["gm"], means_=means)
    with pytest.raises(ModelFileError, match="means are too far from the origin"):
        fastgmm.load(path)


def test_fit_escapes_the_column_names_it_prints(tmp_path, capsys):
    (tmp_path / "d.csv").write_text("a\x1b[31m,b\n" + "\n".join(
        f"{i % 7}.5,{(i * 3) % 11}.25" for i in range(40)) + "\n")
    assert main(["fit", str(tmp_path / "d.csv"), "--k", "2", "--quiet",
                 "--out", str(tmp_path / "m.npz")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "a\\x1b[31m" in out
