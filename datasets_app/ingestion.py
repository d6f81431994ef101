"""Reading an upload (zip, browser folder, server folder) into a dataset: the work behind the ingestion task.

One pass over the files: hash, skip exact duplicates before decoding them,
decode every other file for real, make a thumbnail for large images, write the
file under its hash, and insert the rows in large batches. File writes run on
two threads beside the decoding, since they mostly wait on the disk.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import transaction

from mlcore.archive import (
    ArchiveLimits,
    ArchiveRejected,
    list_folder,
    plan_files,
    plan_zip,
    read_entries,
    read_files,
)
from mlcore.images import ImageRejected, decode_image, make_thumbnail
from mlcore.splits import stratified_split

from .models import Image, ImageClass, Upload, UploadOutcome

ROWS_PER_INSERT = 2000
PROGRESS_EVERY_S = 0.5
STAGING_ROOT = "uploads/folders"


def archive_limits():
    return ArchiveLimits(max_entries=settings.MAX_ZIP_ENTRIES, max_total_bytes=settings.MAX_ZIP_UNPACKED_BYTES)


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


# Browser folders arrive in batches; each batch is a folder of numbered files and a
# manifest naming their relative paths, written last, so a batch is there whole or not at all.

def staging_folder(upload) -> Path:
    return Path(settings.MEDIA_ROOT) / STAGING_ROOT / str(upload.id)


def save_batch(upload, index: int, files: list[tuple[str, object]]) -> bool:
    """Store one batch of (relative path, uploaded file); False when it was already stored."""
    folder = staging_folder(upload)
    manifest = folder / f"{index:06d}.json"
    if manifest.exists():
        return False
    batch = folder / f"{index:06d}"
    batch.mkdir(parents=True, exist_ok=True)
    entries = []
    for number, (relative_path, uploaded) in enumerate(files):
        target = batch / f"{number:03d}"
        with open(target, "wb") as out:
            for chunk in uploaded.chunks():
                out.write(chunk)
        entries.append([relative_path, target.stat().st_size])
    partial = manifest.with_suffix(".part")
    partial.write_text(json.dumps(entries))
    os.replace(partial, manifest)
    return True


def staged_files(folder: Path) -> tuple[list[tuple[str, int]], dict[str, str]]:
    files, paths = [], {}
    for manifest in sorted(folder.glob("*.json")):
        for number, (name, size) in enumerate(json.loads(manifest.read_text())):
            if name in paths:
                continue  # the same relative path sent twice is one file
            files.append((name, size))
            paths[name] = str(folder / manifest.stem / f"{number:03d}")
    return files, paths


@contextmanager
def open_source(upload, limits):
    """(plan, iterator of (planned, bytes, reason)) for any kind of upload."""
    if upload.kind == Upload.Kind.ZIP:
        with upload.file.open("rb") as zip_file:
            plan = plan_zip(zip_file, limits)
            yield plan, read_entries(zip_file, plan, limits)
        return
    if upload.kind == Upload.Kind.FOLDER:
        files, paths = staged_files(staging_folder(upload))
        plan = plan_files(files, limits)
    else:  # a zip or a folder already on the server
        path = Path(upload.source_path)
        if path.is_file():
            with open(path, "rb") as zip_file:
                plan = plan_zip(zip_file, limits)
                yield plan, read_entries(zip_file, plan, limits)
            return
        if not path.is_dir():
            raise ArchiveRejected(f"There is no zip file or folder at {path}.")
        files, skipped = list_folder(str(path))
        plan = plan_files(files, limits)
        plan.skipped.extend(skipped)
        paths = {name: str(path / name) for name, _ in files}
    yield plan, read_files(paths, plan, limits)


class FileWriter:
    """Writes content-addressed files on background threads.

    A name is its content's hash, so a file that exists already holds these bytes.
    Local files are written to a temporary name and renamed, so a crash never
    leaves half a file under a real name.
    """

    def __init__(self, storage=default_storage):
        self.storage = storage
        self.local = isinstance(storage, FileSystemStorage)
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest-write")
        self.pending = []
        self.folders = set()

    def write(self, name: str, data: bytes):
        self.pending.append(self.pool.submit(self._write_local if self.local else self._write_storage, name, data))

    def _write_local(self, name, data):
        path = self.storage.path(name)
        folder = os.path.dirname(path)
        if folder not in self.folders:
            os.makedirs(folder, exist_ok=True)
            self.folders.add(folder)
        if os.path.exists(path):
            return
        partial = f"{path}.{os.getpid()}.{id(data)}.part"
        with open(partial, "wb") as out:
            out.write(data)
        os.replace(partial, path)

    def _write_storage(self, name, data):
        if not self.storage.exists(name):
            self.storage.save(name, ContentFile(data))

    def flush(self):
        """Wait for every write so far; raises the first error."""
        done, _ = wait(self.pending)
        self.pending = []
        for future in done:
            future.result()

    def close(self):
        self.pool.shutdown(wait=True)


class Ingestion:
    """One upload's pass over its files, with the counts of its report."""

    def __init__(self, upload: Upload, plan, on_progress=None):
        self.upload, self.dataset, self.plan = upload, upload.dataset, plan
        self.on_progress = on_progress
        self.classes = {c.name: c for c in self.dataset.classes.all()}
        self.created_classes = []
        # sha256 -> {label or None: a file name}, for the images already in the dataset and those read so far
        self.known: dict[str, dict[str | None, str]] = {}
        for sha, label, name in self.dataset.images.values_list("sha256", "image_class__name", "original_name"):
            self.known.setdefault(sha, {}).setdefault(label, name)
        self.conflicted: set[str] = set()
        self.outcomes = [UploadOutcome(upload=upload, file_name=name, kind=UploadOutcome.Kind.REJECTED, detail=reason)
                         for name, reason in plan.skipped]
        self.rows: list[Image] = []
        self.counts = dict(accepted=0, rejected=len(plan.skipped), duplicates=0, conflicts=0, unlabelled=0)

    def planned_splits(self):
        """Splits for every planned image, decided before reading: a folder's, else stratified and seeded."""
        images = self.plan.images
        return stratified_split(
            [image.label or "" for image in images], [image.split for image in images],
            val_fraction=self.dataset.val_fraction, test_fraction=self.dataset.test_fraction,
            seed=self.dataset.split_seed,
        )

    def run(self, entries):
        total = len(self.plan.images)
        splits = dict(zip((image.name for image in self.plan.images), self.planned_splits()))
        self.upload.record_progress(0, total)
        writer = FileWriter()
        last_report = time.monotonic()
        try:
            for done, (planned, data, reason) in enumerate(entries, start=1):
                if reason:
                    self._reject(planned.name, reason)
                else:
                    self._take(planned, data, splits[planned.name], writer)
                if len(self.rows) >= ROWS_PER_INSERT or time.monotonic() - last_report > PROGRESS_EVERY_S:
                    self._flush(writer)
                    self.upload.record_progress(done, total)
                    if self.on_progress:
                        self.on_progress(done, total)
                    last_report = time.monotonic()
            self._flush(writer)
        finally:
            writer.close()
        self._flag_conflicts()
        UploadOutcome.objects.bulk_create(self.outcomes, batch_size=1000)
        self.upload.record_progress(total, total)
        if self.on_progress:
            self.on_progress(total, total)
        return self.counts

    def _reject(self, name, reason):
        self.counts["rejected"] += 1
        self.outcomes.append(UploadOutcome(upload=self.upload, file_name=name, kind=UploadOutcome.Kind.REJECTED,
                                           detail=reason))

    def _take(self, planned, data, split, writer):
        digest = hashlib.sha256(data).hexdigest()
        label = planned.label
        copies = self.known.get(digest, {})
        # The same bytes under the same label (or, for an unlabelled file, under any
        # label) are one image: stored once, and not decoded again.
        same = copies.get(label) if label else next(iter(copies.values()), None)
        if same is not None:
            self.counts["duplicates"] += 1
            self.outcomes.append(UploadOutcome(upload=self.upload, file_name=planned.name,
                                               kind=UploadOutcome.Kind.DUPLICATE, detail=f"the same picture as {same}"))
            return
        try:
            decoded = decode_image(data, settings.MAX_IMAGE_PIXELS)
        except ImageRejected as exc:
            self._reject(planned.name, str(exc))
            return
        if label and any(other for other in copies if other and other != label):
            self.conflicted.add(digest)
        self.known.setdefault(digest, {})[label] = planned.name

        folder = f"datasets/{self.dataset.id}"
        extension = {"JPEG": "jpg"}.get(decoded.format, decoded.format.lower())
        name = f"{folder}/{digest[:2]}/{digest}.{extension}"
        writer.write(name, data)
        thumbnail = make_thumbnail(decoded.image)
        thumbnail_name = ""
        if thumbnail is not None:
            thumbnail_name = f"{folder}/thumbs/{digest[:2]}/{digest}.jpg"
            writer.write(thumbnail_name, thumbnail)
        self.counts["accepted"] += 1
        if not label:
            self.counts["unlabelled"] += 1
        self.rows.append(Image(
            dataset_id=self.dataset.id, image_class=self._class(label), upload=self.upload, file=name,
            thumbnail=thumbnail_name, original_name=planned.name, split=split, split_fixed=bool(planned.split),
            width=decoded.width, height=decoded.height, channels=decoded.channels, sha256=digest,
        ))

    def _class(self, label):
        if not label:
            return None
        if label not in self.classes:
            self.classes[label], created = ImageClass.objects.get_or_create(dataset=self.dataset, name=label)
            if created:
                self.created_classes.append(self.classes[label].id)
        return self.classes[label]

    def _flush(self, writer):
        writer.flush()  # rows only ever point at files that are on disk
        if self.rows:
            Image.objects.bulk_create(self.rows)
            self.rows = []

    def _flag_conflicts(self):
        """Every labelled copy of a picture filed under two classes is flagged, old and new alike."""
        shas = sorted(self.conflicted)
        for start in range(0, len(shas), 500):
            chunk = shas[start:start + 500]
            self.dataset.images.filter(sha256__in=chunk, image_class__isnull=False).update(label_conflict=True)
        names = {}
        for sha, label, name in self.upload.images.filter(sha256__in=shas).values_list(
                "sha256", "image_class__name", "original_name"):
            names[name] = (sha, label)
        for name, (sha, label) in names.items():
            others = sorted(other for other in self.known[sha] if other and other != label)
            self.counts["conflicts"] += 1
            self.outcomes.append(UploadOutcome(
                upload=self.upload, file_name=name, kind=UploadOutcome.Kind.CONFLICT,
                detail=f"labelled “{label}” here, but the same picture is also under “{'”, “'.join(others)}”"))


def ingest_upload(upload: Upload, on_progress=None):
    """Read every file of the upload into its dataset and record the report.

    A failure midway keeps nothing half done: this upload's rows are removed again
    and the dataset is as before.
    """
    ingestion = None
    try:
        with open_source(upload, archive_limits()) as (plan, entries):
            ingestion = Ingestion(upload, plan, on_progress)
            counts = ingestion.run(entries)
    except (ArchiveRejected, zipfile.BadZipFile) as exc:
        _discard(upload, ingestion)
        upload.fail(str(exc))
        return
    except Exception:
        _discard(upload, ingestion)
        upload.fail("Something went wrong while reading these files; nothing from them was kept.")
        raise
    upload.finish(**counts)
    _remove_staging(upload)


def _discard(upload, ingestion):
    """Remove the rows this upload created; files shared with other images stay."""
    with transaction.atomic():
        upload.images.all().delete()
        upload.outcomes.all().delete()
        if ingestion is not None:
            upload.dataset.classes.filter(id__in=ingestion.created_classes, images__isnull=True).delete()


def _remove_staging(upload):
    if upload.kind == Upload.Kind.FOLDER:
        shutil.rmtree(staging_folder(upload), ignore_errors=True)


def sample_digits_zip() -> bytes:
    """scikit-learn's bundled handwritten digits (1,797 images, 8 x 8 pixels) as a zip of class folders."""
    import numpy as np
    from PIL import Image as PILImage
    from sklearn.datasets import load_digits

    digits = load_digits()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index, (pixels, target) in enumerate(zip(digits.images, digits.target)):
            png = io.BytesIO()
            PILImage.fromarray((pixels * (255 / 16)).round().astype(np.uint8), "L").save(png, "PNG")
            archive.writestr(f"digits/{target}/{index:04d}.png", png.getvalue())
    return buffer.getvalue()
