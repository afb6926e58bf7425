"""The two places zoo looks for files outside its arguments and environment variables.

``checkout_root()`` is the source checkout zoo runs from (an editable install or a clone on
``PYTHONPATH``) and ``None`` for an installed package: only defaults of repository tooling
and the last-but-one place weights are looked for use it. ``user_cache_dir()`` is
``$ZOO_CACHE_DIR``, else ``~/.cache/zoo``.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def checkout_root() -> Path | None:
    """The folder holding ``pyproject.toml`` next to the package, when zoo runs from a checkout."""
    root = _PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() and (root / "zoo" / "__init__.py").is_file() else None


def user_cache_dir() -> Path:
    return Path(os.environ.get("ZOO_CACHE_DIR") or Path.home() / ".cache" / "zoo")
