"""Sphinx configuration for the fastgmm documentation.

Build (from the repository root, after ``pip install ".[docs]"``)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Everything works offline: no intersphinx, no web fonts, no remote images.
"""

from __future__ import annotations

import os
import re
import sys
import warnings

import fastgmm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "sphinxext"))

# -- Project -----------------------------------------------------------------

project = "fastgmm"
author = "fastgmm developers"
copyright = "fastgmm developers"  # noqa: A001 (Sphinx's name)
release = fastgmm.__version__
version = ".".join(release.split(".")[:2])

# -- Extensions --------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.json", "auto_examples/*.md5",
                    "**/sg_execution_times.rst"]
# The API pages document every name at its public path, fastgmm.<name>.
default_role = "py:obj"
# Every cross-reference must resolve: with -W an unresolved `name` or
# :meth:`name` fails the build (nitpick_ignore lists the names that have no
# page of their own here, such as NumPy's and the standard library's types
# in numpydoc's Parameters sections).
nitpicky = True
nitpick_ignore = [
    # Other projects' names: the build is offline (no intersphinx), so they
    # have no target here.  They render as code, without a link.
    ("py:class", "numpy.memmap"),
    ("py:class", "pandas.DataFrame"),
    ("py:class", "matplotlib.patches.Ellipse"),
    ("py:class", "sklearn.exceptions.NotFittedError"),
    ("py:class", "sklearn.exceptions.ConvergenceWarning"),
]
add_module_names = False
toc_object_entries_show_parents = "hide"   # "fit()" rather than "GaussianMixture.fit()"

# -- autodoc / autosummary / numpydoc ----------------------------------------

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"member-order": "groupwise"}
autodoc_typehints = "none"          # numpydoc's Parameters sections carry the types
numpydoc_show_class_members = False  # the class template lists members itself
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_validation_checks: set = set()

# -- MathJax ----------------------------------------------------------------
# The equations are rendered by MathJax 3 in the browser.  The docs extra
# installs a copy of it (the django-static-mathjax package, which is only
# MathJax's files; Django is not needed), and the build copies the few files
# it uses into the site, so pages show their equations without a network.
# Without that package, Sphinx's default (a CDN) is used.

try:
    import mathjax as _mathjax_package

    _MATHJAX_ES5 = os.path.join(os.path.dirname(_mathjax_package.__file__),
                                "static", "mathjax", "es5")
except ImportError:
    _MATHJAX_ES5 = None
if _MATHJAX_ES5 is not None and os.path.isfile(os.path.join(_MATHJAX_ES5, "tex-chtml.js")):
    mathjax_path = "mathjax/tex-chtml.js"     # relative: under the site's _static/
else:
    _MATHJAX_ES5 = None

#: What the combined tex-chtml.js loads at run time: fonts, the TeX extensions
#: ``autoload`` may need, and the menu's helpers.
_MATHJAX_PARTS = ("tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions",
                  "ui", "a11y")

# -- sphinx-gallery ----------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["auto_examples"],
    # Every script in examples/ is a gallery example (the wholesale lesson
    # keeps its historical name, without the plot_ prefix).
    "filename_pattern": r"\.py$",
    "ignore_pattern": r"(__init__|conftest)\.py$",
    "within_subsection_order": "gallery_order.LessonOrder",
    "download_all_examples": False,
    # No "Computation times" pages: sphinx-gallery's load their table code
    # from the network, and the docs must work offline.
    "write_computation_times": False,
    "show_signature": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "show_memory": False,
    "min_reported_time": 1,
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "reset_modules": ("matplotlib",),
    # Only what the examples print: no repr of a cell's last value (the
    # lists matplotlib's setters return).
    "capture_repr": (),
}

# Examples must not depend on a display.
os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", category=UserWarning,
                        message="Matplotlib is currently using agg")

# -- HTML --------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"fastgmm {release}"
html_static_path = ["_static"]
html_css_files = ["fastgmm.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
    # The examples' code lines are up to 100 characters: give them the room
    # of the page's table of contents.
    "secondary_sidebar_items": {"auto_examples/*": []},
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_sidebars = {"index": [], "references": []}
html_show_sourcelink = False
html_copy_source = False


def _copy_mathjax(app, exception):
    """Copy the local MathJax into ``_static/mathjax`` of an HTML build."""
    if exception is not None or _MATHJAX_ES5 is None or app.builder.format != "html":
        return
    import shutil

    target = os.path.join(app.outdir, "_static", "mathjax")
    for part in _MATHJAX_PARTS:
        src = os.path.join(_MATHJAX_ES5, part)
        dst = os.path.join(target, part)
        if os.path.isdir(src):
            shutil.copytree(src, dst, dirs_exist_ok=True)
        elif os.path.isfile(src):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(src, dst)


def _hide_private_parameters(app, what, name, obj, options, signature, return_annotation):
    """Leave parameters named ``_...`` (internal dataclass fields) out of signatures."""
    if signature and "_" in signature:
        signature = re.sub(r",\s*_\w+(=[^,)]*)?(?=[,)])", "", signature)
    return signature, return_annotation


def setup(app):
    app.connect("autodoc-process-signature", _hide_private_parameters)
    app.connect("build-finished", _copy_mathjax)
