"""``python -m fastgmm``: the same as the ``fastgmm`` command."""

import sys

from .cli import main

sys.exit(main())
