"""Reading labelled image folders out of an untrusted zip file.

A zip is never extracted to disk. `plan_zip` reads only the central directory
and refuses an archive that is unsafe as a whole (paths that climb out, links,
too many entries, too many bytes); `read_entries` then yields each planned
file's bytes, counting the bytes actually decompressed, because the sizes the
header declares can lie.
"""
from __future__ import annotations

import posixpath
import stat
import zipfile
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

from .images import IMAGE_EXTENSIONS

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
    label: str
    split: str | None  # "train", "val" or "test" when a folder says so


@dataclass
class ZipPlan:
    images: list[PlannedImage] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)

    @property
    def labels(self) -> list[str]:
        return sorted({image.label for image in self.images})


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

    Layouts understood: `class/img.png`, `top/class/img.png` (one folder around
    everything is dropped), and `[top/]train|val|test/class/img.png`.
    """
    try:
        with zipfile.ZipFile(source) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile:
        raise ArchiveRejected("This file is not a zip archive, or it is damaged.") from None
    except (OSError, EOFError, ValueError) as exc:
        raise ArchiveRejected(f"This zip archive cannot be read ({exc}).") from None

    if len(infos) > limits.max_entries:
        raise ArchiveRejected(
            f"This zip has {len(infos):,} entries; the limit is {limits.max_entries:,}."
        )
    total = 0
    for info in infos:
        reason = _unsafe_reason(info.filename)
        if reason:
            raise ArchiveRejected(f"The zip entry “{info.filename}” {reason}, so the upload was refused.")
        if _is_link(info):
            raise ArchiveRejected(f"The zip entry “{info.filename}” is a link, so the upload was refused.")
        total += info.file_size
    if total > limits.max_total_bytes:
        raise ArchiveRejected(
            f"This zip would unpack to {total / 1024**2:,.0f} MB; the limit is "
            f"{limits.max_total_bytes / 1024**2:,.0f} MB."
        )

    files = [info for info in infos if not info.is_dir() and not _is_hidden(info.filename)]
    paths = [info.filename.split("/") for info in files]
    strip = _common_top_folder(paths)
    plan = ZipPlan()
    for info, parts in zip(files, paths):
        parts = parts[strip:]
        split = SPLIT_FOLDERS.get(parts[0].lower()) if len(parts) > 2 else None
        if split:
            parts = parts[1:]
        extension = posixpath.splitext(parts[-1])[1].lower()
        if extension in ARCHIVE_EXTENSIONS:
            plan.skipped.append((info.filename, "an archive inside the archive is not opened"))
        elif len(parts) < 2:
            plan.skipped.append((info.filename, "not inside a class folder"))
        elif extension not in IMAGE_EXTENSIONS:
            plan.skipped.append((info.filename, "not an image file (PNG, JPEG, BMP or GIF)"))
        elif info.file_size > limits.max_entry_bytes:
            plan.skipped.append((info.filename, "the file is larger than the per-file limit"))
        else:
            plan.images.append(PlannedImage(info.filename, parts[0].strip(), split))
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


def read_entries(source: str | BinaryIO, plan: ZipPlan,
                 limits: ArchiveLimits = ArchiveLimits()) -> Iterator[tuple[PlannedImage, bytes | None, str | None]]:
    """Yield (planned image, bytes, None), or (planned image, None, reason) for an entry
    that cannot be read. Raises ArchiveRejected once more bytes than allowed were decompressed."""
    total = 0
    with zipfile.ZipFile(source) as archive:
        for planned in plan.images:
            info = archive.getinfo(planned.name)
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
                    f"({limits.max_total_bytes / 1024**2:,.0f} MB); the upload was stopped."
                )
            if len(data) > limits.max_entry_bytes:
                yield planned, None, "the file is larger than the per-file limit"
            elif (len(data) > limits.ratio_checked_above_bytes
                  and len(data) > limits.max_ratio * max(info.compress_size, 1)):
                yield planned, None, "the file is compressed suspiciously well (a zip bomb?)"
            else:
                yield planned, data, None
