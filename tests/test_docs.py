"""The documentation agrees with the code it shows.

The figure of the README and the index page is the output of ``fastgmm demo``
with its default seed: the test reruns the demo and compares the pictures
and the choice of k they show.  Install commands are spelled one way on every
page.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGURE = ROOT / "docs" / "demo_segments.png"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    pytest.importorskip("matplotlib")
    from fastgmm._demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    with open(out / "stdout.txt", "w") as stdout:
        result = run_demo(str(out), seed=0, stdout=stdout)   # the CLI's defaults
    return out, result


def test_the_docs_figure_is_the_demo_output(demo):
    """docs/demo_segments.png shows what ``fastgmm demo`` draws now (regenerate it with
    ``fastgmm demo --out DIR`` and copy DIR/demo_segments.png when this fails).
    """
    from matplotlib.image import imread
    from PIL import Image

    out, result = demo
    ours, theirs = imread(FIGURE), imread(out / "demo_segments.png")
    assert ours.shape == theirs.shape
    # The same picture, up to anti-aliasing of another matplotlib or FreeType:
    # a moved star or another curve changes far more pixels than this.
    differing = np.abs(ours - theirs).max(axis=-1) > 0.1
    assert differing.mean() < 1e-3, differing.mean()
    # and the choice of k it shows is the one the demo prints
    with Image.open(FIGURE) as image:
        description = image.info.get("Description", "")
    k, ctype = result.best_bic[:2]
    assert f"BIC on log spending lowest at k={k} with {ctype} covariances" in description
    assert f"BIC prefers k={k} with {ctype} covariances." in (out / "stdout.txt").read_text()


def test_the_pages_state_the_k_of_the_figure(demo):
    _, result = demo
    words = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}
    k = result.best_bic[0]
    index = " ".join((ROOT / "docs" / "index.rst").read_text().split())
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"lowest at {words[k]} full-covariance components" in index
    assert f"lowest at k = {k} (right)" in index
    assert f"lowest at {words[k]} full-covariance components](docs/demo_segments.png)" in readme
    assert f"(k = {k} with full covariances, the star in the figure" in readme
    assert result.best_bic[1] == "full"


def test_the_demo_switches_components_off(demo):
    _, result = demo
    w = result.vb_weights
    assert w.shape == (10,)
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-9)
    assert result.n_effective == int(np.sum(w >= 0.01)) < 10
    off = (10 - result.n_effective)
    assert f"{off} of 10 components are switched off" in (demo[0] / "stdout.txt").read_text()
    readme = (ROOT / "README.md").read_text()
    assert f"switches off the {off} components the data do not need" in readme


def _pages():
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.rst")),
             *sorted((ROOT / "examples").glob("*.py")), *sorted((ROOT / "examples").glob("*.rst"))]
    return [p for p in files if "_build" not in p.parts and "generated" not in p.parts
            and "auto_examples" not in p.parts]


def test_one_install_spelling_on_every_page():
    """Extras are installed from a checkout, ``pip install ".[extra]"``, on every page."""
    seen = set()
    for page in _pages():
        for m in re.finditer(r"pip install\s+(\"[^\"]*\"|\S+)", page.read_text()):
            seen.add(m.group(1))
            assert "fastgmm[" not in m.group(1), f"{page.name}: {m.group(0)}"
    extras = {s for s in seen if "[" in s}
    assert extras and all(re.fullmatch(r'"\.\[[a-z,]+\]"', s) for s in extras), extras
