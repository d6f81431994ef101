"""Reading labelled image folders out of an untrusted zip file or folder.

A zip is never extracted to disk. `plan_zip` reads only the central directory
and refuses an archive that is unsafe as a whole (paths that climb out, links,
too many entries, too many bytes); `read_entries` then yields each planned
file's bytes, counting the bytes actually decompressed, because the sizes the
header declares can lie. Folders (on the server, or sent by a browser) go
through the same `plan_files` rules and are read by `read_files`.
"""
from __future__ import annotations

import os
import posixpath
import stat
import unicodedata
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import BinaryIO, Iterator

from .images import IMAGE_EXTENSIONS
from .words import file_size

SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
ARCHIVE_EXTENSIONS = {".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar"}
IGNORED_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}


class ArchiveRejected(ValueError):
    """The whole archive is refused; the message says why in plain words."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = 200_000
    max_total_bytes: int = 4 * 1024**3
    max_entry_bytes: int = 100 * 1024**2
    # Deflate reaches about 1000:1 on flat data; a real image folder is far below
    # this. Only checked on entries large enough to matter.
    max_ratio: float = 200.0
    ratio_checked_above_bytes: int = 1024**2


@dataclass(frozen=True)
class PlannedImage:
    name: str  # the entry's name in the zip
    label: str | None  # None: no class folder, so it waits in the unlabelled inbox
    split: str | None  # "train", "val" or "test" when a folder says so
    # The file's position in the list given to plan_files; for a zip, in its directory. A zip
    # may hold two entries of the same name, each its own file, so they are read by position.
    entry: int | None = None


ELLIPSIS = "…"


def without_control_characters(text: str) -> str:
    """`text` with tabs and line breaks made spaces, and NUL and other control characters left out.

    A name from a zip or a browser may hold any of them; PostgreSQL refuses NUL
    in text, and the others break report lines and spreadsheet cells."""
    spaced = (" " if c in "\t\n\r\v\f" else c for c in text)
    return "".join(c for c in spaced if unicodedata.category(c) != "Cc")


def shorten(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters with an ellipsis in the middle, so that
    the start and the end (a file's extension) both still show."""
    if len(text) <= limit:
        return text
    tail = min(40, (limit - 1) // 3)
    return text[:limit - 1 - tail] + ELLIPSIS + text[len(text) - tail:]


def fit_name(text: str, limit: int) -> str:
    """A user-supplied name made safe to store in a text field of `limit` characters."""
    return shorten(without_control_characters(text), limit)


def shown(name: str) -> str:
    """A name as quoted in a message: no control characters, at most 200 characters."""
    return fit_name(name, 200)


@dataclass
class ZipPlan:
    images: list[PlannedImage] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)

    @property
    def labels(self) -> list[str]:
        return sorted({image.label for image in self.images if image.label})


def _is_link(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def _unsafe_reason(name: str) -> str | None:
    if "\\" in name or "\x00" in name:
        return "has a backslash or a null character in its name"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    if ".." in name.split("/"):
        return "points outside the archive (..)"
    return None


def plan_zip(source: str | BinaryIO, limits: ArchiveLimits = ArchiveLimits()) -> ZipPlan:
    """Decide, from the central directory alone, which entries are images and their labels.

    The whole zip is refused when it is unsafe: paths that climb out, links, too
    many entries or too many declared bytes.
    """
    try:
        with zipfile.ZipFile(source) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile:
        raise ArchiveRejected("This file is not a zip archive, or it is damaged.") from None
    except (OSError, EOFError, ValueError) as exc:
        raise ArchiveRejected(f"This zip archive cannot be read ({exc}).") from None
    if len(infos) > limits.max_entries:
        raise ArchiveRejected(f"This zip has {len(infos):,} entries; the limit is {limits.max_entries:,}.")
    for info in infos:
        if _is_link(info):
            raise ArchiveRejected(f"The zip entry “{shown(info.filename)}” is a link, so the upload was refused.")
    files = [(index, info) for index, info in enumerate(infos) if not info.is_dir()]
    plan = plan_files([(info.filename, info.file_size) for _, info in files], limits)
    # plan_files numbers the files it was given; read_entries needs their place in the zip.
    plan.images = [replace(image, entry=files[image.entry][0]) for image in plan.images]
    return plan


def plan_files(files: list[tuple[str, int]], limits: ArchiveLimits = ArchiveLimits()) -> ZipPlan:
    """Sort (relative path, size) pairs into images with labels and files skipped with a reason.

    The same rules for a zip, a folder on the server and a folder sent by a
    browser. Layouts understood: `class/img.png`, `top/class/img.png` (one
    folder around everything is dropped), `[top/]train|val|test/class/img.png`,
    and `img.png` with no folder, which is an unlabelled image (label None).
    """
    if len(files) > limits.max_entries:
        raise ArchiveRejected(f"This upload has {len(files):,} files; the limit is {limits.max_entries:,}.")
    total = 0
    for name, size in files:
        reason = _unsafe_reason(name)
        if reason:
            raise ArchiveRejected(f"The file “{shown(name)}” {reason}, so the upload was refused.")
        total += size
    if total > limits.max_total_bytes:
        raise ArchiveRejected(
            f"This upload would unpack to {file_size(total)}; the limit is "
            f"{file_size(limits.max_total_bytes)}."
        )

    files = [(number, name, size) for number, (name, size) in enumerate(files) if not _is_hidden(name)]
    paths = [name.split("/") for _, name, _ in files]
    strip = _common_top_folder(paths)
    plan = ZipPlan()
    for (number, name, size), parts in zip(files, paths):
        parts = parts[strip:]
        split = SPLIT_FOLDERS.get(parts[0].lower()) if len(parts) > 2 else None
        if split:
            parts = parts[1:]
        extension = posixpath.splitext(parts[-1])[1].lower()
        if extension in ARCHIVE_EXTENSIONS:
            plan.skipped.append((name, "an archive inside the archive is not opened"))
        elif extension not in IMAGE_EXTENSIONS:
            plan.skipped.append((name, "not an image file (PNG, JPEG, BMP or GIF)"))
        elif size > limits.max_entry_bytes:
            plan.skipped.append((name, "the file is larger than the per-file limit"))
        else:
            label = parts[0].strip() if len(parts) >= 2 else None
            plan.images.append(PlannedImage(name, label or None, split, entry=number))
    return plan


def _is_hidden(name: str) -> bool:
    parts = name.split("/")
    return parts[0] == "__MACOSX" or any(
        part.startswith(".") or part.lower() in IGNORED_NAMES for part in parts if part
    )


def _common_top_folder(paths: list[list[str]]) -> int:
    """1 when every file sits under the same single top folder that is not itself a class."""
    if not paths or any(len(parts) < 3 for parts in paths):
        return 0
    tops = {parts[0] for parts in paths}
    return 1 if len(tops) == 1 and tops.pop().lower() not in SPLIT_FOLDERS else 0


def read_entries(source: str | BinaryIO | zipfile.ZipFile, plan: ZipPlan,
                 limits: ArchiveLimits = ArchiveLimits()) -> Iterator[tuple[PlannedImage, bytes | None, str | None]]:
    """Yield (planned image, bytes, None), or (planned image, None, reason) for an entry
    that cannot be read. Raises ArchiveRejected once more bytes than allowed were decompressed.

    `source` may be an open ZipFile, so that a process reading many chunks of one
    zip parses its directory (70,000 entries: a third of a second) only once."""
    total = 0
    with _open_zip(source) as archive:
        infos = archive.infolist()
        for planned in plan.images:
            info = _entry_info(archive, infos, planned)
            try:
                with archive.open(info) as entry:
                    data = entry.read(limits.max_entry_bytes + 1)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
                yield planned, None, f"the zip entry is damaged ({exc})"
                continue
            total += len(data)
            if total > limits.max_total_bytes:
                raise ArchiveRejected(
                    "This zip unpacks to more bytes than its directory declares and than the limit "
                    f"({file_size(limits.max_total_bytes)}); the upload was stopped."
                )
            if len(data) > limits.max_entry_bytes:
                yield planned, None, "the file is larger than the per-file limit"
            elif (len(data) > limits.ratio_checked_above_bytes
                  and len(data) > limits.max_ratio * max(info.compress_size, 1)):
                yield planned, None, "the file is compressed suspiciously well (a zip bomb?)"
            else:
                yield planned, data, None


def _entry_info(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], planned: PlannedImage) -> zipfile.ZipInfo:
    """The planned entry, found by its position: getinfo() gives only the last of several entries of one name."""
    if planned.entry is not None and planned.entry < len(infos) and infos[planned.entry].filename == planned.name:
        return infos[planned.entry]
    return archive.getinfo(planned.name)


@contextmanager
def _open_zip(source):
    if isinstance(source, zipfile.ZipFile):
        yield source  # the caller's, and the caller closes it
    else:
        with zipfile.ZipFile(source) as archive:
            yield archive


def list_folder(root: str) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    """(relative path, size) of the files under `root`, and links skipped with a reason.

    Links are never followed, so a folder cannot point the import outside itself.
    """
    files, skipped = [], []
    root = os.path.abspath(root)
    for folder, subfolders, names in os.walk(root, followlinks=False):
        for name in sorted(names) + [s for s in subfolders if os.path.islink(os.path.join(folder, s))]:
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, root).replace(os.sep, "/")
            if os.path.islink(path):
                skipped.append((relative, "a link is not followed"))
            elif os.path.isfile(path):
                files.append((relative, os.path.getsize(path)))
        subfolders.sort()
    return sorted(files), sorted(skipped)


def read_files(paths: dict[str, str], plan: ZipPlan,
               limits: ArchiveLimits = ArchiveLimits()) -> Iterator[tuple[PlannedImage, bytes | None, str | None]]:
    """Like `read_entries`, for files on disk: `paths` maps each planned name to its file."""
    total = 0
    for planned in plan.images:
        try:
            with open(paths[planned.name], "rb") as f:
                data = f.read(limits.max_entry_bytes + 1)
        except OSError as exc:
            yield planned, None, f"the file cannot be read ({exc.strerror or exc})"
            continue
        total += len(data)
        if total > limits.max_total_bytes:
            raise ArchiveRejected(
                f"These files hold more than the limit of {file_size(limits.max_total_bytes)}; "
                "the upload was stopped."
            )
        if len(data) > limits.max_entry_bytes:
            yield planned, None, "the file is larger than the per-file limit"
        else:
            yield planned, data, None
