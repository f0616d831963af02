"""The covariance-family seam: no module outside its owners branches on a type name.

Every rule that depends on the covariance type belongs to its family
(``fastgmm/_covariance.py``); the kernels and their caller ``_compute``
dispatch on the evaluation kind, and argument validation names the types.
Everywhere else a comparison of a value with a type name (``ctype ==
'full'``, ``ctype in ('full', 'tied')``) or a table keyed by type names is a
branch the family should own: this test finds them by parsing the source.
"""

import ast
from pathlib import Path

from fastgmm._covariance import COVARIANCE_TYPES, FAMILIES, family

PACKAGE = Path(__file__).resolve().parent.parent / "fastgmm"

#: The modules that may name covariance types in their logic.
OWNERS = {"_covariance", "_compute", "_kernels", "_kernels_missing", "_kernels_kmeans",
          "_validation"}

TYPE_NAMES = set(COVARIANCE_TYPES)


def _names_a_type(node) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in TYPE_NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts) and all(_names_a_type(e) for e in node.elts)
    return False


def _branches(path: Path) -> list[str]:
    found = []
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            if any(_names_a_type(c) for c in [node.left, *node.comparators]):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Dict):
            keys = [k for k in node.keys if k is not None]
            if len(keys) >= 2 and all(_names_a_type(k) for k in keys):
                found.append(f"{path.name}:{node.lineno}: a table keyed by covariance types")
    return found


def test_no_covariance_type_branch_outside_the_family_module():
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem not in OWNERS:
            found += _branches(path)
    assert not found, "covariance-type branches outside the family module:\n" + "\n".join(found)


def test_the_check_finds_a_branch():
    # The check itself must be able to fail: a planted branch is found.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        planted = Path(tmp) / "planted.py"
        planted.write_text("def f(ctype):\n    return 1 if ctype in ('full', 'tied') else 2\n"
                           "SHAPES = {'full': 3, 'diag': 2}\n")
        assert len(_branches(planted)) == 2


def test_every_family_answers_the_whole_protocol():
    # A family that forgot a method would fail only on the path that needs it.
    import numpy as np

    k, d = 3, 4
    rng = np.random.default_rng(0)
    for name, fam in FAMILIES.items():
        assert family(name) is fam and fam.name == name
        cov = fam.unit(k, d)
        assert cov.shape == fam.cov_shape(k, d)
        pc = fam.precisions_cholesky(cov)
        np.testing.assert_allclose(fam.precisions(pc), fam.unit(k, d))
        np.testing.assert_allclose(fam.log_det_chol(pc, k, d), 0.0, atol=1e-15)
        full = np.asarray(fam.to_full(cov, k, d))
        np.testing.assert_array_equal(full, np.broadcast_to(np.eye(d), (k, d, d)))
        marg = fam.marginal(cov, np.array([0, 2]))
        np.testing.assert_array_equal(np.asarray(fam.to_full(marg, k, 2)),
                                      np.broadcast_to(np.eye(2), (k, 2, 2)))
        z = rng.standard_normal((5, d))
        np.testing.assert_allclose(fam.sample_noise(z, cov, 1), z)
        assert fam.stats_shape(k, d)[0] in (k, d)
        assert fam.n_cov_parameters(k, d) > 0
