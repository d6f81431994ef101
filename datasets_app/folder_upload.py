"""Folders sent from the browser for a dataset (receiving them: dlsite/uploads.py): they arrive in
numbered batches, each kept (dlsite/storage.py: the local folder, or a bucket) as a folder of numbered
files and a manifest naming their relative paths, written last, so a batch is there whole or not at
all. Once every batch is there, the upload waits for the ingestion (ingestion.py) to read it.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from django.db import transaction

from dlsite import storage
from dlsite.transfers import Transfers
from dlsite.uploads import FolderReceiver

from .models import Upload


def staging_folder(upload) -> str:
    """The storage folder where its batches wait (uploads/folders/<id>)."""
    return upload.staging_folder()


def save_batch(upload, index: int, files: list[tuple[str, object]]) -> bool:
    """Store one batch of (relative path, uploaded file); False when it was already stored."""
    def put(names):
        with Transfers() as transfers:
            transfers.save_uploaded([(uploaded, name) for (_, uploaded), name in zip(files, names)])
        return [uploaded.size for _, uploaded in files]

    return _store_batch(upload, index, [path for path, _ in files], put)


def copy_batch(upload, index: int, files: list[tuple[str, str]]) -> bool:
    """save_batch for files kept already (a classification's pictures): (relative path, storage name)
    each. With the local folder each is linked into the batch, not copied (thousands at once, in a
    web request), or copied where a link cannot be made; with a bucket each is read and kept again,
    a few at once. Either way the batch stays whole whatever becomes of the originals, and the
    ingestion removes it when done."""
    def put(names):
        if not storage.is_local():
            with Transfers() as transfers:
                return transfers.copy_kept([(kept, name) for (_, kept), name in zip(files, names)])
        return _link([(storage.local_path(kept), name) for (_, kept), name in zip(files, names)])

    return _store_batch(upload, index, [path for path, _ in files], put)


def _link(pairs: list[tuple[Path, str]]) -> list[int]:
    sizes = []
    for source, name in pairs:
        target = storage.local_folder(name)  # the local folder's own path for this name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except FileExistsError:  # left by a request that stopped before its manifest
            target.unlink()
            os.link(source, target)
        except OSError:  # another disk
            shutil.copyfile(source, target)
        sizes.append(target.stat().st_size)
    return sizes


def _store_batch(upload, index, paths, put) -> bool:
    """`paths`: each file's relative path; put(storage names) keeps the files under those names and
    answers their sizes. The manifest is kept last: a batch without one is not there (and is sent again)."""
    folder = staging_folder(upload)
    manifest = f"{folder}/{index:06d}.json"
    if storage.exists(manifest):
        return False
    sizes = put([f"{folder}/{index:06d}/{number:03d}" for number in range(len(paths))])
    storage.save_bytes(manifest, json.dumps([[path, size] for path, size in zip(paths, sizes)]).encode())
    return True


class DatasetFolders(FolderReceiver):
    """A folder sent for a dataset: each part stored as a numbered batch (save_batch); the bytes that
    arrive are counted against those announced, and an abandoned folder's files are removed."""

    model = Upload
    counts_bytes = True
    keeps_abandoned_parts = False

    def store(self, upload, index, files):
        return save_batch(upload, index, files)

    def prefix(self, upload):
        return staging_folder(upload)

    def sent_already(self, upload):
        return (f"This folder has been sent completely already (it is now “{upload.get_status_display().lower()}”). "
                "To add more images, start a new upload.")

    def discard(self, upload: Upload) -> bool:
        """Give up on a folder that never finished arriving: its staged files go, the row says so."""
        with transaction.atomic():
            claimed = Upload.objects.filter(pk=upload.pk, status=Upload.Status.RECEIVING).update(
                status=Upload.Status.FAILED, error="Sending was stopped; the files that had arrived were removed.")
        if claimed:
            storage.delete_folder(staging_folder(upload))
        return bool(claimed)


receiver = DatasetFolders()


def staged_files(folder: str) -> tuple[list[tuple[str, int]], dict[str, str]]:
    """(relative path, bytes) of each file of the batches kept under the storage folder `folder`,
    and {relative path: its storage name}."""
    if storage.is_local():  # the folder's own entries, not a walk through every file of every batch
        manifests = sorted(f"{folder}/{path.name}" for path in storage.local_folder(folder).glob("*.json"))
    else:
        manifests = sorted(kept.name for kept in storage.listing(folder)
                           if kept.name.endswith(".json") and kept.name.count("/") == folder.count("/") + 1)
    files, names = [], {}
    for manifest in manifests:
        batch = manifest[:-len(".json")]
        for number, (name, size) in enumerate(json.loads(storage.read_bytes(manifest))):
            if name in names:
                continue  # the same relative path sent twice is one file
            files.append((name, size))
            names[name] = f"{batch}/{number:03d}"
    return files, names
