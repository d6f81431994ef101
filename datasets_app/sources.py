"""What an upload is read from: its stored name, the checks of a zip before it is stored, the plan of
its files (a zip, a received folder, or a zip or folder already on the server), and the examining
of those files, in several processes for a large upload, and their storing (dlsite/storage.py: the
local folder, or a bucket).
"""
from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import billiard
from django.conf import settings
from django.utils.text import slugify

from dlsite import storage
from dlsite.transfers import Transfers
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
    """What an upload holds: the plan of its files, and where on this host to read them."""
    plan: ZipPlan
    zip_path: str | None = None
    paths: dict[str, str] | None = None
    scratch: Path | None = None  # local copies made for this reading alone, removed by close()

    def close(self):
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def open_source(upload, limits) -> Source:
    """The upload's plan and local paths to read it from, on the worker. A kept zip is read by path
    (by several processes at once): the kept file itself with the local folder, this host's cached
    copy with a bucket. A "zip or folder already on the server" is a path on the worker's own disk
    (the default worker's, which reads uploads)."""
    if upload.kind == Upload.Kind.ZIP:
        path = str(storage.local_path(upload.file.name))
        return Source(plan_zip(path, limits), zip_path=path)
    if upload.kind == Upload.Kind.FOLDER:
        prefix = staging_folder(upload)
        files, names = staged_files(prefix)
        plan = plan_files(files, limits)
        paths, scratch = _local_copies(prefix, {image.name: names[image.name] for image in plan.images})
        return Source(plan, paths=paths, scratch=scratch)
    path = Path(upload.source_path)  # a zip or a folder already on the server
    if path.is_file():
        return Source(plan_zip(str(path), limits), zip_path=str(path))
    if not path.is_dir():
        raise ArchiveRejected(f"There is no zip file or folder at {path}.")
    files, skipped = list_folder(str(path))
    plan = plan_files(files, limits)
    plan.skipped.extend(skipped)
    return Source(plan, paths={name: str(path / name) for name, _ in files})


def _local_copies(prefix: str, names: dict[str, str]) -> tuple[dict[str, str], Path | None]:
    """Local paths of the kept files `names` ({relative path: storage name}, all under `prefix`): the
    kept files themselves with the local folder; with a bucket, copies fetched a few at once into a
    scratch folder (read once, so not worth the host cache's room), which is returned to be removed."""
    if storage.is_local():
        root = storage.local_folder(prefix)
        return {relative: str(root / name[len(prefix) + 1:]) for relative, name in names.items()}, None
    scratch = storage.host_cache().scratch_folder()
    try:
        copies = {relative: scratch / name[len(prefix) + 1:] for relative, name in names.items()}
        with Transfers() as transfers:
            transfers.fetch_files([(names[relative], path) for relative, path in copies.items()])
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return {relative: str(path) for relative, path in copies.items()}, scratch


def examine_all(source: Source, prefix: str, limits, processes: int):
    """Examined files in the plan's order, from `processes` processes at once when there is enough work.

    The files are stored under the storage folder `prefix`. With the local folder the processes
    write them there themselves; with a bucket they write into a scratch folder, and each chunk's
    new files are saved to the bucket (a few at once) before its results are given: a row is only
    written once its file is kept.
    """
    images = source.plan.images
    local = storage.is_local()
    out_dir = storage.local_folder(prefix) if local else storage.host_cache().scratch_folder()
    size = min(CHUNK_FILES, max(-(-len(images) // (4 * processes)), 1))  # four chunks a process at least
    chunks = [
        Chunk(images=images[start:start + size], zip_path=source.zip_path,
              paths={i.name: source.paths[i.name] for i in images[start:start + size]} if source.paths else None,
              out_dir=str(out_dir), prefix=prefix, limits=limits, max_pixels=settings.MAX_IMAGE_PIXELS)
        for start in range(0, len(images), size)
    ]
    examined = _examined_chunks(chunks, source.zip_path, processes, len(images))
    try:
        if local:
            for results in examined:
                yield from results
            return
        sent = set()  # names saved already: the same picture twice is saved once
        with Transfers() as transfers:
            for results in examined:
                new = []
                for result in results:
                    for name in (result.file, result.thumbnail):
                        if name and name not in sent:
                            sent.add(name)
                            new.append((out_dir / name[len(prefix) + 1:], name))
                transfers.save_files(new, move=True)
                yield from results
    finally:
        examined.close()
        if not local:
            shutil.rmtree(out_dir, ignore_errors=True)


def _examined_chunks(chunks, zip_path, processes, files):
    """Each chunk's examined files, in order.

    The pool is billiard's (Celery's fork of multiprocessing): the standard library
    refuses to start processes from a Celery worker's pool process, since that is a
    daemon. Its processes are spawned, not forked: a forked child inherits this
    process's sockets, and kombu's after-fork hook then closes the parent's Redis
    connection from the child (a hang, seen in the test suite). Spawning costs about
    half a second, so small uploads are examined right here.
    """
    if processes <= 1 or files < POOL_MIN_FILES:
        archive = zipfile.ZipFile(zip_path) if zip_path else None
        try:
            for chunk in chunks:
                yield examine_chunk(chunk, archive)
        finally:
            if archive:
                archive.close()
        return
    pool = billiard.get_context("spawn").Pool(processes, initializer=open_worker_zip, initargs=(zip_path,))
    try:
        yield from pool.imap(examine_chunk_in_worker, chunks)
        pool.close()
    finally:
        pool.terminate()
        pool.join()
