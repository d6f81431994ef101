"""Measuring files on disk (os.scandir, no symlink followed).

Shared by the per-person byte quota (dlsite/quotas.py, counted by datasets_app/usage.py), the staff
page "Disk use" (housekeeping_app/diskuse.py) and the clean-up (housekeeping_app/cleanup.py).
"""
from __future__ import annotations

import os
from pathlib import Path

from mlcore.words import whole_number


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


def numbered_folders(folder) -> dict[int, os.DirEntry]:
    """{number: entry} of the sub-folders of `folder` named by a number (a row's id)."""
    numbered = ((whole_number(e.name), e) for e in entries(folder) if e.is_dir(follow_symlinks=False))
    return {number: e for number, e in numbered if number is not None}
