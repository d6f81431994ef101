"""Reading an upload (zip, browser folder, server folder) into a dataset: the work behind the ingestion task.

The files are examined (read, decoded for real, hashed, thumbnailed, stored under
their hash) by `mlcore.examine` in chunks, in several processes for a large
upload; this process then decides, in the files' order, what each one is (a new
image, a duplicate stored once, a label conflict, a rejected file) and inserts
the rows in large batches. A row is only written after its file is on disk.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import billiard
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection, transaction

from mlcore.archive import (
    ArchiveLimits,
    ArchiveRejected,
    ZipPlan,
    list_folder,
    plan_files,
    plan_zip,
)
from mlcore.examine import (
    Chunk,
    examine_chunk,
    examine_chunk_in_worker,
    open_worker_zip,
)
from mlcore.splits import stratified_split

from .models import Image, ImageClass, Upload, UploadOutcome

ROWS_PER_INSERT = 2000
CHUNK_FILES = 500  # at most this many files a process examines at a time
POOL_MIN_FILES = 1000  # fewer files than this are examined right here, with no pool
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


def finish_receiving(upload: Upload) -> Upload:
    """Queue the ingestion of a folder once every batch is there; finishing twice queues it once."""
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
            from .tasks import ingest  # the task module imports this one

            ingest.delay_on_commit(upload.id)
    return upload


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


IMAGE_COLUMNS = ("dataset", "image_class", "upload", "file", "thumbnail", "original_name", "split", "folder_split",
                 "split_fixed", "label_conflict", "width", "height", "channels", "sha256")


def insert_image_rows(rows):
    """Insert Image rows given as tuples in IMAGE_COLUMNS order.

    Not bulk_create: building 70,000 model instances and compiling their values cost
    more than the decoding (measured: 2.3 s of 4.6 s per 10,000 MNIST images went to
    the ORM). SQLite takes one executemany; PostgreSQL takes COPY (the 70,000 MNIST
    rows: 3.3 s with COPY, 8.0 s with executemany, on this 2-core machine).
    """
    fields = [Image._meta.get_field(name) for name in IMAGE_COLUMNS]
    quote = connection.ops.quote_name
    table, columns = quote(Image._meta.db_table), ", ".join(quote(f.column) for f in fields)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})", rows)


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
        self.rows: list[tuple] = []  # Image rows waiting to be inserted, in IMAGE_COLUMNS order
        self.counts = dict(accepted=0, rejected=len(plan.skipped), duplicates=0, conflicts=0, unlabelled=0)

    def planned_splits(self):
        """Splits for every planned image, decided before reading: a folder's, else stratified and seeded."""
        images = self.plan.images
        return stratified_split(
            [image.label or "" for image in images], [image.split for image in images],
            val_fraction=self.dataset.val_fraction, test_fraction=self.dataset.test_fraction,
            seed=self.dataset.split_seed,
        )

    def run(self, examined, limits):
        total = len(self.plan.images)
        splits = dict(zip((image.name for image in self.plan.images), self.planned_splits()))
        self.upload.record_progress(0, total)
        read_bytes, last_report = 0, time.monotonic()
        for done, (planned, result) in enumerate(zip(self.plan.images, examined), start=1):
            read_bytes += result.size
            if read_bytes > limits.max_total_bytes:  # counted as read: the sizes a zip declares can lie
                raise ArchiveRejected(
                    "These files unpack to more bytes than declared and than the limit "
                    f"({limits.max_total_bytes / 1024**2:,.0f} MB); the upload was stopped."
                )
            if result.reason:
                self._reject(planned.name, result.reason)
            else:
                self._take(planned, result, splits[planned.name])
            if len(self.rows) >= ROWS_PER_INSERT or time.monotonic() - last_report > PROGRESS_EVERY_S:
                self._flush()
                self.upload.record_progress(done, total)
                if self.on_progress:
                    self.on_progress(done, total)
                last_report = time.monotonic()
        self._flush()
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

    def _take(self, planned, result, split):
        digest, label = result.sha256, planned.label
        copies = self.known.get(digest, {})
        # The same bytes under the same label (or, for an unlabelled file, under any
        # label) are one image, stored once.
        same = copies.get(label) if label else next(iter(copies.values()), None)
        if same is not None:
            self.counts["duplicates"] += 1
            self.outcomes.append(UploadOutcome(upload=self.upload, file_name=planned.name,
                                               kind=UploadOutcome.Kind.DUPLICATE, detail=f"the same picture as {same}"))
            return
        if label and any(other for other in copies if other and other != label):
            self.conflicted.add(digest)
        self.known.setdefault(digest, {})[label] = planned.name
        self.counts["accepted"] += 1
        if not label:
            self.counts["unlabelled"] += 1
        image_class = self._class(label)
        self.rows.append((
            self.dataset.id, image_class.id if image_class else None, self.upload.id, result.file,
            result.thumbnail, planned.name, split, planned.split or "", False, False, result.width, result.height,
            result.channels, digest,
        ))

    def _class(self, label):
        if not label:
            return None
        if label not in self.classes:
            self.classes[label], created = ImageClass.objects.get_or_create(dataset=self.dataset, name=label)
            if created:
                self.created_classes.append(self.classes[label].id)
        return self.classes[label]

    def _flush(self):
        if self.rows:
            insert_image_rows(self.rows)
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


def ingest_upload(upload: Upload, on_progress=None, processes=None):
    """Read every file of the upload into its dataset and record the report.

    A failure midway keeps nothing half done: this upload's rows are removed again
    and the dataset is as before.
    """
    limits = archive_limits()
    processes = processes or settings.INGEST_PROCESSES
    ingestion = None
    try:
        source = open_source(upload, limits)
        ingestion = Ingestion(upload, source.plan, on_progress)
        examined = examine_all(source, f"datasets/{upload.dataset_id}", limits, processes)
        counts = ingestion.run(examined, limits)
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
