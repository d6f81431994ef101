"""Examining the files of an upload: read, hash, decode, thumbnail, store.

This is the per-file work of ingestion, kept free of Django and of the database
so that it can run in several processes at once: a 70,000-image zip is cut into
chunks and each process examines whole chunks, while the caller decides what
becomes of each file (duplicate, conflict, new image) and writes the rows.

Files are stored content-addressed (`<prefix>/<sha[:2]>/<sha>.<ext>`): the same
bytes always get the same name, so writing one twice is harmless and a stored
file never changes. They are written into a local folder, `Chunk.out_dir`, that
stands for `<prefix>`: the kept folder itself when the site keeps its files in a
local folder, a scratch folder whose new files the caller then saves to the
bucket otherwise (datasets_app/sources.py).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import zipfile
from dataclasses import dataclass

from .archive import ArchiveLimits, PlannedImage, ZipPlan, read_entries, read_files
from .images import ImageRejected, decode_image, make_thumbnail


@dataclass(frozen=True)
class Examined:
    name: str
    size: int  # bytes read, counted towards the upload's limit
    reason: str | None = None  # why the file is not used; None when it is a good image
    sha256: str = ""
    file: str = ""  # storage name ("datasets/7/ab/ab….png")
    thumbnail: str = ""  # stored thumbnail, or "" when the image is its own thumbnail
    width: int = 0
    height: int = 0
    channels: int = 0


@dataclass(frozen=True)
class Chunk:
    """Everything a process needs to examine some files, and nothing it cannot pickle."""
    images: list[PlannedImage]
    zip_path: str | None  # read entries from this zip ...
    paths: dict[str, str] | None  # ... or these files on disk
    out_dir: str  # the local folder the files are written into, standing for `prefix`
    prefix: str  # the storage name of that folder, e.g. "datasets/7": the names Examined gives start with it
    limits: ArchiveLimits
    max_pixels: int


def examine_chunk(chunk: Chunk, archive: zipfile.ZipFile | None = None) -> list[Examined]:
    """Examine a chunk's files in order; `archive` is the chunk's zip, already open, if the caller has it."""
    plan = ZipPlan(images=chunk.images)
    if chunk.zip_path is not None:
        entries = read_entries(archive or chunk.zip_path, plan, chunk.limits)
    else:
        entries = read_files(chunk.paths, plan, chunk.limits)
    return [_examine(planned.name, data, reason, chunk) for planned, data, reason in entries]


# In a pool process: the zip, opened once by `open_worker_zip` and read by every chunk.
_worker_zip: zipfile.ZipFile | None = None


def open_worker_zip(zip_path: str | None) -> None:
    global _worker_zip
    _worker_zip = zipfile.ZipFile(zip_path) if zip_path else None


def examine_chunk_in_worker(chunk: Chunk) -> list[Examined]:
    return examine_chunk(chunk, _worker_zip)


def _examine(name, data, reason, chunk) -> Examined:
    if reason:
        return Examined(name, len(data or b""), reason)
    try:
        decoded = decode_image(data, chunk.max_pixels)
    except ImageRejected as exc:
        return Examined(name, len(data), str(exc))
    digest = hashlib.sha256(data).hexdigest()
    extension = {"JPEG": "jpg"}.get(decoded.format, decoded.format.lower())
    file = f"{digest[:2]}/{digest}.{extension}"
    store_file(chunk.out_dir, file, data)
    thumbnail = ""
    small = make_thumbnail(decoded.image)
    if small is not None:
        thumbnail = f"thumbs/{digest[:2]}/{digest}.jpg"
        store_file(chunk.out_dir, thumbnail, small)
        thumbnail = f"{chunk.prefix}/{thumbnail}"
    return Examined(name, len(data), None, digest, f"{chunk.prefix}/{file}", thumbnail,
                    decoded.width, decoded.height, decoded.channels)


def store_file(root: str, name: str, data: bytes) -> None:
    """Write a content-addressed file unless it is there already.

    A file of the right name and size holds these bytes (its name is their hash). One of another
    size is being written by another process storing the same picture (the same bytes under
    several classes), or is what a crash mid-write left behind: it is replaced whole, by a rename,
    so that no reader ever sees it part-written. One open per new file: creating files is the
    slowest part of storing 70,000 of them.
    """
    path = os.path.join(root, name)
    try:
        out = open(path, "xb")
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            out = open(path, "xb")
        except FileExistsError:  # another process stored it in between
            return _keep_or_replace(path, data)
    except FileExistsError:
        return _keep_or_replace(path, data)
    with out:
        out.write(data)


def _keep_or_replace(path: str, data: bytes) -> None:
    if os.path.getsize(path) == len(data):
        return
    # A name of this process and thread alone (not mkstemp, whose files only their owner may read).
    partial = f"{path}.{os.getpid()}-{threading.get_ident()}.part"
    try:
        with open(partial, "wb") as out:
            out.write(data)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
