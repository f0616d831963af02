"""Layout of the kernel modules: tables, driver signatures, docstrings, cache safety."""

import importlib
import inspect
import re

import pytest

from fastgmm import _kernels, _kernels_kmeans, _kernels_missing

COVARIANCE_TYPES = {"full", "tied", "diag", "spherical"}

# The Python callers pass these positionally: their order is part of the interface.
# Drivers take named tuples (``fastgmm._kernels`` section 2), whose fields are
# pinned below as well.
DRIVER_PARAMETERS = {
    "em_stats_full": "X w weighted model dense hints grid slots g_lo g_hi",
    "em_stats_tied": "X w weighted model grid slots g_lo g_hi",
    "em_stats_diag": "X w weighted model dense grid slots g_lo g_hi",
    "resp_stats_full": "X w weighted given shift grid slots g_lo g_hi",
    "resp_stats_tied": "X w weighted given shift grid slots g_lo g_hi",
    "resp_stats_diag": "X w weighted given shift grid slots g_lo g_hi",
    "point_full": "X model grid out g_lo g_hi",
    "point_tied": "X model grid out g_lo g_hi",
    "point_diag": "X model grid out g_lo g_hi",
    "fold": "slot n_used acc",
    "update_min_dist": "X center closest chunk_size c_lo c_hi",
    "candidate_potential": "X w weighted candidates closest chunk_size slot c_lo c_hi",
    "lloyd_step": "X w weighted centres labels chunk_size sum_slot count_slot c_lo c_hi",
    "em_stats_missing_full": "X w weighted model lines grid slots g_lo g_hi",
    "em_stats_missing_diag": "X w weighted model grid slots g_lo g_hi",
    "point_missing_full": "X model draws grid out g_lo g_hi",
    "point_missing_diag": "X model draws grid out g_lo g_hi",
}

#: The fields of the named tuples the drivers take, in order.
TUPLE_FIELDS = {
    (_kernels, "FullModel"): "means prec_chol log_norm lam_min pair_w pair_c",
    (_kernels, "TiedModel"): "shift mean_proj prec_chol log_norm",
    (_kernels, "DiagModel"): "means prec log_norm spherical",
    (_kernels, "DensePath"): "shift wt const on first up down",
    (_kernels, "Hints"): "best use",
    (_kernels, "Grid"): "chunk_size group",
    (_kernels, "Slots"): "nk t s g ll",
    (_kernels, "Given"): "resp labels",
    (_kernels, "PointOut"): "want_resp out_2d out_score out_label",
    (_kernels_kmeans, "Centres"): "centers shift offsets_t cnorm",
}

MODULES = (_kernels, _kernels_kmeans, _kernels_missing)


def _driver(name):
    for module in MODULES:
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(name)


def _dispatchers(module):
    from numba.core.registry import CPUDispatcher

    return {name: obj for name, obj in vars(module).items()
            if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == module.__name__}


@pytest.mark.parametrize("table, stage", [("EM_STATS", "em_stats"), ("RESP_STATS", "resp_stats"),
                                          ("POINT", "point")])
def test_tables_map_every_covariance_type_to_its_driver(table, stage):
    entries = getattr(_kernels, table)
    assert set(entries) == COVARIANCE_TYPES
    for ctype, fn in entries.items():
        expected = stage + "_" + ("diag" if ctype == "spherical" else ctype)
        assert fn is getattr(_kernels, expected)
        assert fn.py_func.__name__ == expected


@pytest.mark.parametrize("name", sorted(DRIVER_PARAMETERS))
def test_driver_arguments_keep_their_order(name):
    params = list(inspect.signature(_driver(name).py_func).parameters)
    assert params == DRIVER_PARAMETERS[name].split()


@pytest.mark.parametrize("module, name", sorted(TUPLE_FIELDS, key=lambda t: t[1]),
                         ids=lambda x: getattr(x, "__name__", x))
def test_driver_tuples_keep_their_fields(module, name):
    assert getattr(module, name)._fields == tuple(TUPLE_FIELDS[module, name].split())


@pytest.mark.parametrize("name", sorted(DRIVER_PARAMETERS))
def test_driver_docstrings_describe_every_parameter(name):
    doc = inspect.getdoc(_driver(name).py_func)
    section = doc.split("Parameters\n----------\n", 1)[1].split("\n\n", 1)[0]
    described = set()
    for line in section.splitlines():
        if line and not line.startswith(" "):
            names = line.split(" : ")[0]
            described.update(n.strip() for n in names.split(","))
    assert set(DRIVER_PARAMETERS[name].split()) <= described


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_kernels_call_only_compiled_functions_of_their_own_file(module):
    """Numba's disk cache would not notice a change to a helper in another file."""
    from numba.core.registry import CPUDispatcher

    def names(code):
        yield from code.co_names
        for const in code.co_consts:
            if inspect.iscode(const):
                yield from names(const)

    for name, disp in _dispatchers(module).items():
        for ref in names(disp.py_func.__code__):
            obj = disp.py_func.__globals__.get(ref)
            if isinstance(obj, CPUDispatcher):
                assert obj.py_func.__code__.co_filename == module.__file__, (name, ref)


def test_kmeans_module_imports_nothing_from_the_em_kernels():
    source = inspect.getsource(_kernels_kmeans)
    assert not re.search(r"^\s*(from|import)\s+\S*_kernels\b", source, re.M)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_cross_references_resolve(module):
    source = inspect.getsource(module)
    refs = set(re.findall(r":(?:func|data|class|mod):`~?([\w.]+)`", source))
    assert refs
    for ref in refs:
        if ref.startswith("fastgmm."):
            parts = ref.split(".")
            for i in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:i]))
                except ImportError:
                    continue
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
                break
        else:
            assert hasattr(module, ref), ref


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_functions_call_only_functions_defined_above_them(module):
    """The sections of a kernel file read top to bottom."""
    from numba.core.registry import CPUDispatcher

    for name, disp in _dispatchers(module).items():
        line = disp.py_func.__code__.co_firstlineno
        for ref in disp.py_func.__code__.co_names:
            obj = disp.py_func.__globals__.get(ref)
            if isinstance(obj, CPUDispatcher):
                assert obj.py_func.__code__.co_firstlineno < line, (name, ref)


def test_responsibility_cut_offs_of_both_kernel_files_are_pinned():
    """Each kernel file writes its cut-off (Numba's cache checks only its own file).

    The complete-data kernels drop responsibilities below ``exp(-50)`` of the
    row's largest; the missing-data kernels, whose bounds are looser, below
    ``exp(-37)``: the largest integer cut-off whose dropped terms stay under
    half an ulp of the largest (see ``_kernels_missing.RESP_LOG_FLOOR``).
    """
    import math

    assert _kernels.RESP_LOG_FLOOR == -50.0
    assert _kernels_missing.RESP_LOG_FLOOR == -37.0
    half_ulp = 2.0**-53
    cut = _kernels_missing.RESP_LOG_FLOOR
    assert math.exp(cut) < half_ulp <= math.exp(cut + 1.0)
    assert _kernels.RESP_LOG_FLOOR <= cut
    # No other private cut-off in the missing-data file.
    assert "_CUTOFF" not in inspect.getsource(_kernels_missing)


def test_missing_data_kernels_compute_no_line_geometry_of_their_own():
    """The line bound's inputs come from ``_compute.missing_line_bounds``.

    As the complete-data pair bounds come from ``_compute._pair_bounds``,
    with which it shares the geometry, not from compiled code of their own.
    """
    source = inspect.getsource(_kernels_missing)
    assert "uinv" not in source and "pvec" not in source
