"""``python -m zoo``: the ``zoo`` command (``zoo/cli.py``)."""

import sys

from .cli import main

sys.exit(main())
