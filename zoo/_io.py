"""Files written atomically, with the usual permissions: the one writer every layer uses.

A write goes to a temporary file in the same folder (``.<name>.<hex>.tmp``, created with mode
0666 less the umask, as ``open`` would, not ``tempfile``'s 0600), is flushed to disk, then
renamed over the target: a reader never sees half a file, and a process killed mid-write
leaves the previous file intact. ``remove_orphans`` clears the temporary files such a kill
leaves behind.

Imports nothing of zoo: every layer may use it.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path


def tmp_name(path: Path) -> Path:
    """The temporary file a write of ``path`` goes through (``remove_orphans`` matches it)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def remove_orphans(folder: Path) -> list[Path]:
    """Delete the temporary files of writes that a kill interrupted (``.<name>.<hex>.tmp``).
    Call it only while no one writes into ``folder``: a live writer's file looks the same."""
    orphans = [p for p in Path(folder).glob(".*.tmp") if p.is_file()]
    for p in orphans:
        p.unlink(missing_ok=True)
    return orphans


def atomic_write(path: str | Path, data: bytes) -> None:
    """``data`` into ``path`` or, on any failure, nothing (the old file, if any, stays).

    A full disk is an ``OSError`` that says so and names ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0666 less the umask
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(
                err.errno,
                f"the disk is full: could not write {path} ({len(data):,} bytes); "
                f"the previous {path.name}, if any, is kept. Free some space and run again",
            ) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
