"""The version of fastgmm.

In a module of its own so that the package's modules can read it without
importing the package (:mod:`fastgmm._io` records it in every model file).
"""

__version__ = "0.2.0.dev0"
