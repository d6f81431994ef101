"""Folders sent from the browser for a dataset (receiving them: dlsite/uploads.py): they arrive in
numbered batches, each stored as a folder of numbered files and a manifest naming their relative paths,
written last, so a batch is there whole or not at all. Once every batch is there, the upload waits for
the ingestion (ingestion.py) to read it.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from django.db import transaction

from dlsite.uploads import FolderReceiver

from .models import Upload


def staging_folder(upload) -> Path:
    return upload.staging_folder()


def save_batch(upload, index: int, files: list[tuple[str, object]]) -> bool:
    """Store one batch of (relative path, uploaded file); False when it was already stored."""
    def write(target, uploaded):
        with open(target, "wb") as out:
            for chunk in uploaded.chunks():
                out.write(chunk)

    return _store_batch(upload, index, files, write)


def link_batch(upload, index: int, files: list[tuple[str, Path]]) -> bool:
    """save_batch for files already on this server (a classification's pictures): each is linked into
    the batch, not copied (thousands at once, in a web request), or copied where a link cannot be
    made (another disk). The ingestion only reads them, and removes its links when done."""
    def link(target, source):
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)

    return _store_batch(upload, index, files, link)


def _store_batch(upload, index, files, put) -> bool:
    folder = staging_folder(upload)
    manifest = folder / f"{index:06d}.json"
    if manifest.exists():
        return False
    batch = folder / f"{index:06d}"
    batch.mkdir(parents=True, exist_ok=True)
    entries = []
    for number, (relative_path, source) in enumerate(files):
        target = batch / f"{number:03d}"
        put(target, source)
        entries.append([relative_path, target.stat().st_size])
    partial = manifest.with_suffix(".part")
    partial.write_text(json.dumps(entries))
    os.replace(partial, manifest)
    return True


class DatasetFolders(FolderReceiver):
    """A folder sent for a dataset: each part stored as a numbered batch (save_batch); the bytes that
    arrive are counted against those announced, and an abandoned folder's files are removed."""

    model = Upload
    counts_bytes = True
    keeps_abandoned_parts = False

    def store(self, upload, index, files):
        return save_batch(upload, index, files)

    def folder(self, upload):
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
            shutil.rmtree(staging_folder(upload), ignore_errors=True)
        return bool(claimed)


receiver = DatasetFolders()


def staged_files(folder: Path) -> tuple[list[tuple[str, int]], dict[str, str]]:
    files, paths = [], {}
    for manifest in sorted(folder.glob("*.json")):
        for number, (name, size) in enumerate(json.loads(manifest.read_text())):
            if name in paths:
                continue  # the same relative path sent twice is one file
            files.append((name, size))
            paths[name] = str(folder / manifest.stem / f"{number:03d}")
    return files, paths
