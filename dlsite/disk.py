"""Measuring kept files: through the storage (dlsite/storage.py: the local folder or a bucket, one
listing per folder), and, for what stays on this host's own disk (the local PACK_DIR), on disk
(os.scandir, no symlink followed).

Shared by the per-person byte quota (dlsite/quotas.py, counted by datasets_app/usage.py), the staff
page "Disk use" (housekeeping_app/diskuse.py) and the clean-up (housekeeping_app/cleanup.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from django.core.files.storage import default_storage

from dlsite import storage
from mlcore.words import whole_number


# --- kept files (the storage) ----------------------------------------------------------------------

@dataclass
class KeptFolder:
    """A kept folder as one listing found it: its name, its files' bytes, and when the newest of them
    was written (a timestamp)."""
    name: str
    bytes: int = 0
    newest: float = 0.0
    files: list = field(default_factory=list)

    def add(self, kept: storage.Kept) -> None:
        self.bytes += kept.size
        self.newest = max(self.newest, kept.modified.timestamp())
        self.files.append(kept)


def kept_tops() -> tuple[list[str], list[str]]:
    """(folders, files) at the top of the storage."""
    try:
        return default_storage.listdir("")
    except FileNotFoundError:  # a local folder not made yet
        return [], []


def kept_folder_size(prefix: str) -> int:
    """Bytes of everything kept under a folder's name."""
    return sum(kept.size for kept in storage.listing(prefix))


def kept_file_size(name: str) -> int:
    """Bytes of a kept file; 0 when there is none."""
    if not storage.exists(name):
        return 0
    try:
        return default_storage.size(name)
    except OSError:  # removed in between
        return 0


def kept_numbered_folders(prefix: str, files: list[storage.Kept] | None = None) -> dict[int, KeptFolder]:
    """{number: KeptFolder} of the folders under `prefix` named by a number (a row's id), from one
    listing (or the `files` of one already made)."""
    prefix = prefix.rstrip("/")
    found: dict[int, KeptFolder] = {}
    for kept in storage.listing(prefix) if files is None else files:
        parts = PurePosixPath(kept.name[len(prefix) + 1:]).parts
        if len(parts) < 2:  # a file directly under the prefix
            continue
        number = whole_number(parts[0])
        if number is not None:
            found.setdefault(number, KeptFolder(f"{prefix}/{parts[0]}")).add(kept)
    return found


# --- this host's disk ------------------------------------------------------------------------------


def entries(folder) -> list[os.DirEntry]:
    """The entries of a folder; none when it is missing or unreadable."""
    try:
        with os.scandir(folder) as found:
            return list(found)
    except OSError:
        return []


def entry_size(entry: os.DirEntry) -> int:
    try:
        return entry.stat(follow_symlinks=False).st_size
    except OSError:
        return 0


def walk_files(folder):
    """(DirEntry, relative parts) of every file or link under `folder`, never entering a linked folder."""
    stack = [(folder, ())]
    while stack:
        current, parts = stack.pop()
        for entry in entries(current):
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, (*parts, entry.name)))
            else:
                yield entry, (*parts, entry.name)


def tree_size(path) -> int:
    """Bytes of a file, or of every file under a folder."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        try:
            return path.lstat().st_size
        except OSError:
            return 0
    return sum(entry_size(entry) for entry, _ in walk_files(path))


def last_touched(path, reads_count=False) -> float:
    """The newest modification time of a folder and of everything in it; with `reads_count`, the
    newest access time of its files too (when a pack was last read). The folder's own access time
    never counts: it changes whenever the folder is listed, by the clean-up too."""
    path = Path(path)
    try:
        newest = path.lstat().st_mtime
    except OSError:
        return 0.0
    for entry, _ in walk_files(path):
        try:
            stat = entry.stat(follow_symlinks=False)
            newest = max(newest, stat.st_mtime, stat.st_atime if reads_count else 0.0)
        except OSError:
            pass
    return newest
