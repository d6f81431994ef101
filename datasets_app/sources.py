"""What an upload is read from: its stored name, the checks of a zip before it is stored, the plan of
its files (a zip, a received folder, or a zip or folder already on the server), and the examining
of those files, in several processes for a large upload.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import billiard
from django.conf import settings
from django.core.files.storage import default_storage
from django.utils.text import slugify

from dlsite.uploads import archive_limits  # noqa: F401 (imported from here by others)
from mlcore.archive import ArchiveRejected, ZipPlan, fit_name, list_folder, plan_files, plan_zip
from mlcore.examine import Chunk, examine_chunk, examine_chunk_in_worker, open_worker_zip

from .folder_upload import staged_files, staging_folder
from .models import Dataset, Upload

CHUNK_FILES = 500  # at most this many files a process examines at a time
POOL_MIN_FILES = 1000  # fewer files than this are examined right here, with no pool


def fit_upload_name(name: str) -> str:
    """A zip's or folder's name as an upload's name (PostgreSQL refuses NUL and names longer than the field)."""
    return fit_name(name, Upload._meta.get_field("original_name").max_length)


def zip_storage_name(name: str) -> str:
    """The name an uploaded zip is stored under: short and plain ASCII, since a disk refuses
    a file name over 255 bytes (120 CJK letters are 480). Upload.original_name keeps the real one."""
    return f"{slugify(name.rsplit('.', 1)[0])[:60] or 'upload'}.zip"


def fit_dataset_name(name: str) -> str:
    return fit_name(name, Dataset._meta.get_field("name").max_length)


def check_zip(fileobj):
    """Validate an uploaded zip from its directory alone, before it is stored.

    Returns the plan; raises ArchiveRejected with a message for the person.
    """
    plan = plan_zip(fileobj, archive_limits())
    if not plan.images:
        raise ArchiveRejected(
            "This zip holds no images. Put each class's images in a folder named after the class "
            "(for example cats/1.jpg and dogs/2.jpg) and zip those folders; images outside any folder "
            "go to the unlabelled inbox."
        )
    return plan


@dataclass
class Source:
    """What an upload holds: the plan of its files, and where to read them."""
    plan: ZipPlan
    zip_path: str | None = None
    paths: dict[str, str] | None = None


def open_source(upload, limits) -> Source:
    if upload.kind == Upload.Kind.ZIP:
        path = default_storage.path(upload.file.name)
        return Source(plan_zip(path, limits), zip_path=path)
    if upload.kind == Upload.Kind.FOLDER:
        files, paths = staged_files(staging_folder(upload))
        return Source(plan_files(files, limits), paths=paths)
    path = Path(upload.source_path)  # a zip or a folder already on the server
    if path.is_file():
        return Source(plan_zip(str(path), limits), zip_path=str(path))
    if not path.is_dir():
        raise ArchiveRejected(f"There is no zip file or folder at {path}.")
    files, skipped = list_folder(str(path))
    plan = plan_files(files, limits)
    plan.skipped.extend(skipped)
    return Source(plan, paths={name: str(path / name) for name, _ in files})


def examine_all(source: Source, prefix: str, limits, processes: int):
    """Examined files in the plan's order, from `processes` processes at once when there is enough work.

    The pool is billiard's (Celery's fork of multiprocessing): the standard library
    refuses to start processes from a Celery worker's pool process, since that is a
    daemon. Its processes are spawned, not forked: a forked child inherits this
    process's sockets, and kombu's after-fork hook then closes the parent's Redis
    connection from the child (a hang, seen in the test suite). Spawning costs about
    half a second, so small uploads are examined right here.
    """
    images = source.plan.images
    size = min(CHUNK_FILES, max(-(-len(images) // (4 * processes)), 1))  # four chunks a process at least
    chunks = [
        Chunk(images=images[start:start + size], zip_path=source.zip_path,
              paths={i.name: source.paths[i.name] for i in images[start:start + size]} if source.paths else None,
              media_root=str(settings.MEDIA_ROOT), prefix=prefix, limits=limits, max_pixels=settings.MAX_IMAGE_PIXELS)
        for start in range(0, len(images), size)
    ]
    if processes <= 1 or len(images) < POOL_MIN_FILES:
        archive = zipfile.ZipFile(source.zip_path) if source.zip_path else None
        try:
            for chunk in chunks:
                yield from examine_chunk(chunk, archive)
        finally:
            if archive:
                archive.close()
        return
    pool = billiard.get_context("spawn").Pool(processes, initializer=open_worker_zip, initargs=(source.zip_path,))
    try:
        for results in pool.imap(examine_chunk_in_worker, chunks):
            yield from results
        pool.close()
    finally:
        pool.terminate()
        pool.join()
