"""Folders sent from the browser: they arrive in numbered batches, each stored as a folder of numbered
files and a manifest naming their relative paths, written last, so a batch is there whole or not at
all. Once every batch is there, the upload waits for the ingestion (ingestion.py) to read it.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from django.db import transaction

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


class BatchRefused(Exception):
    """A batch the upload cannot take; the message says why in plain words."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def receive_batch(upload: Upload, index: int, files: list[tuple[str, object]]) -> tuple[bool, Upload]:
    """Store batch `index` of a folder being sent, once, and record it: (stored now?, the upload).

    The row lock makes two requests for the same batch (a retry racing a slow first try)
    take turns, so the batch is written, counted and recorded once.
    """
    size = sum(uploaded.size for _, uploaded in files)
    with transaction.atomic():
        upload = Upload.objects.select_for_update().get(pk=upload.pk)
        if upload.status != Upload.Status.RECEIVING:
            raise BatchRefused(
                f"This folder has been sent completely already (it is now “{upload.get_status_display().lower()}”). "
                "To add more images, start a new upload.", status=409)
        if index in upload.received_batches:
            return False, upload
        if upload.received_bytes + size > upload.expected_bytes:
            raise BatchRefused("This folder is sending more bytes than it announced; the part was refused. "
                               "Pick the folder again to start over.", status=413)
        stored = save_batch(upload, index, files)
        upload.received_batches = sorted([*upload.received_batches, index])
        upload.received_bytes += size
        upload.save(update_fields=["received_batches", "received_bytes"])
    return stored, upload


def finish_receiving(upload: Upload) -> tuple[Upload, bool]:
    """Mark a folder ready to be read once every batch is there: (the upload, whether this call made
    it so, and the caller is to queue its ingestion). Finishing twice queues it once."""
    with transaction.atomic():
        upload = Upload.objects.select_for_update().get(pk=upload.pk)
        if upload.status == Upload.Status.RECEIVING:
            missing = upload.missing_batches()
            if missing:
                raise BatchRefused(
                    f"{len(missing)} of the {upload.expected_batches} parts of this folder have not arrived yet. "
                    "Press Resume, or pick the same folder again, to send them.", status=409)
            upload.status = Upload.Status.QUEUED
            upload.save(update_fields=["status"])
            return upload, True
    return upload, False


def discard_receiving(upload: Upload) -> bool:
    """Give up on a folder that never finished arriving: its staged files go, the row says so."""
    with transaction.atomic():
        claimed = Upload.objects.filter(pk=upload.pk, status=Upload.Status.RECEIVING).update(
            status=Upload.Status.FAILED, error="Sending was stopped; the files that had arrived were removed.")
    if claimed:
        shutil.rmtree(staging_folder(upload), ignore_errors=True)
    return bool(claimed)


def staged_files(folder: Path) -> tuple[list[tuple[str, int]], dict[str, str]]:
    files, paths = [], {}
    for manifest in sorted(folder.glob("*.json")):
        for number, (name, size) in enumerate(json.loads(manifest.read_text())):
            if name in paths:
                continue  # the same relative path sent twice is one file
            files.append((name, size))
            paths[name] = str(folder / manifest.stem / f"{number:03d}")
    return files, paths
