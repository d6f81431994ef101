"""The insert pass of reading an upload (zip, browser folder, server folder) into a dataset: the work
behind the ingestion task.

The files are examined (read, decoded for real, hashed, thumbnailed, stored under their hash) by
`mlcore.examine` in chunks, in several processes for a large upload (sources.py); this process then
decides, in the files' order, what each one is (a new image, a duplicate stored once, a label
conflict, a rejected file) and inserts the rows in large batches. A row is only written after its
file is kept (on disk, or in the bucket). Folders sent from the browser arrive first in folder_upload.py.
"""
from __future__ import annotations

import time
import zipfile
from contextlib import closing

from django.conf import settings
from django.db import transaction

from dlsite import bulk, quotas
from dlsite.heartbeat import Heartbeat
from dlsite.jobs import ClaimLost
from mlcore.archive import ArchiveRejected, ELLIPSIS, fit_name, shorten, without_control_characters
from mlcore.splits import stratified_split
from mlcore.words import file_size

from .models import Image, ImageClass, Upload, UploadOutcome
from .sources import archive_limits, examine_all, open_source

ROWS_PER_INSERT = 2000
PROGRESS_EVERY_S = 0.5
# The lengths of the fields user-supplied names are stored in.
FILE_NAME_LENGTH = min(Image._meta.get_field("original_name").max_length,
                       UploadOutcome._meta.get_field("file_name").max_length)
DETAIL_LENGTH = UploadOutcome._meta.get_field("detail").max_length
CLASS_NAME_LENGTH = ImageClass._meta.get_field("name").max_length


IMAGE_COLUMNS = ("dataset", "image_class", "upload", "file", "thumbnail", "original_name", "split", "folder_split",
                 "split_fixed", "label_conflict", "width", "height", "channels", "sha256", "suggested_label")


def insert_image_rows(rows):
    """Insert Image rows given as tuples in IMAGE_COLUMNS order. Not bulk_create: building 70,000
    model instances and compiling their values cost more than the decoding (measured: 2.3 s of 4.6 s
    per 10,000 MNIST images went to the ORM)."""
    bulk.insert(Image, IMAGE_COLUMNS, rows)


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
        # A folder's name -> its class's name, which fits the field; the folders whose names were shortened
        self.class_names: dict[str, str] = {}
        self.shortened_classes: list[tuple[str, str]] = []
        self.shortened_files = 0
        self.outcomes = []
        for name, reason in plan.skipped:
            self._outcome(name, UploadOutcome.Kind.REJECTED, reason)
        self.rows: list[tuple] = []  # Image rows waiting to be inserted, in IMAGE_COLUMNS order
        self.counts = dict(accepted=0, rejected=len(plan.skipped), duplicates=0, conflicts=0, unlabelled=0)
        # The owner's limit of images (settings.QUOTA_IMAGES); None for none. Files past it are refused.
        self.images_left = quotas.images_left(self.dataset.owner)

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
        self.upload.record_progress(0, total)
        read_bytes, last_report = 0, time.monotonic()
        splits = self.planned_splits()  # by position: two zip entries may have the same name
        for done, (planned, result, split) in enumerate(zip(self.plan.images, examined, splits), start=1):
            read_bytes += result.size
            if read_bytes > limits.max_total_bytes:  # counted as read: the sizes a zip declares can lie
                raise ArchiveRejected(
                    "These files unpack to more bytes than declared and than the limit "
                    f"({file_size(limits.max_total_bytes)}); the upload was stopped."
                )
            if result.reason:
                self._reject(planned.name, result.reason)
            else:
                self._take(planned, result, split)
            if len(self.rows) >= ROWS_PER_INSERT or time.monotonic() - last_report > PROGRESS_EVERY_S:
                self._flush()
                self.upload.record_progress(done, total)
                if self.on_progress:
                    self.on_progress(done, total)
                last_report = time.monotonic()
        self._flush()
        self._flag_conflicts()
        UploadOutcome.objects.bulk_create(self.outcomes, batch_size=1000)
        self._note_shortened_names()
        self.upload.record_progress(total, total)
        if self.on_progress:
            self.on_progress(total, total)
        return self.counts

    def _reject(self, name, reason):
        self.counts["rejected"] += 1
        self._outcome(name, UploadOutcome.Kind.REJECTED, reason)

    def _outcome(self, name, kind, detail):
        self.outcomes.append(UploadOutcome(upload=self.upload, file_name=self._file_name(name), kind=kind,
                                           detail=fit_name(detail, DETAIL_LENGTH)))

    def _file_name(self, name):
        """The name as stored: PostgreSQL refuses NUL and longer names than the field (SQLite takes both)."""
        name = without_control_characters(name)
        if len(name) > FILE_NAME_LENGTH:
            self.shortened_files += 1
        return shorten(name, FILE_NAME_LENGTH)

    def _take(self, planned, result, split):
        digest, label = result.sha256, self._class_name(planned.label)
        copies = self.known.get(digest, {})
        # The same bytes under the same label (or, for an unlabelled file, under any
        # label) are one image, stored once.
        same = copies.get(label) if label else next(iter(copies.values()), None)
        if same is not None:
            self.counts["duplicates"] += 1
            self._outcome(planned.name, UploadOutcome.Kind.DUPLICATE, f"the same picture as {same}")
            return
        if self.images_left is not None and self.counts["accepted"] >= self.images_left:
            self._reject(planned.name, f"not added: {quotas.images_full_message()}")
            return
        if label and any(other for other in copies if other and other != label):
            self.conflicted.add(digest)
        name = self._file_name(planned.name)
        self.known.setdefault(digest, {})[label] = name
        self.counts["accepted"] += 1
        if not label:
            self.counts["unlabelled"] += 1
        image_class = self._class(label)
        self.rows.append((
            self.dataset.id, image_class.id if image_class else None, self.upload.id, result.file,
            result.thumbnail, name, split, planned.split or "", False, False, result.width, result.height,
            result.channels, digest, "" if label else str(self.upload.suggestions.get(planned.name, ""))[:200],
        ))

    def _class_name(self, folder):
        """The class a folder's images go to: its name without control characters, shortened
        to fit the field; two long folder names that shorten alike stay two classes."""
        if not folder:
            return None
        if folder not in self.class_names:
            name = " ".join(without_control_characters(folder).split()) or "unnamed"
            fitted = shorten(name, CLASS_NAME_LENGTH)
            taken = set(self.class_names.values())
            number = 2
            while fitted != name and fitted in taken:
                suffix = f" ({number})"
                fitted = shorten(name, CLASS_NAME_LENGTH - len(suffix)) + suffix
                number += 1
            if fitted != name:
                self.shortened_classes.append((folder, fitted))
            self.class_names[folder] = fitted
        return self.class_names[folder]

    def _note_shortened_names(self):
        """Say in the upload's report which names were too long to keep whole."""
        notes = [f"The folder name “{shorten(without_control_characters(folder), 80)}” was too long "
                 f"for a class name; the class is called “{name}”." for folder, name in self.shortened_classes]
        if self.shortened_files:
            notes.append(f"{self.shortened_files} file name{'s were' if self.shortened_files != 1 else ' was'} "
                         f"longer than {FILE_NAME_LENGTH:,} characters and {'are' if self.shortened_files != 1 else 'is'} "
                         f"shown shortened, with “{ELLIPSIS}” in the middle.")
        if notes:
            self.upload.error = " ".join(notes)
            Upload.objects.filter(id=self.upload.id).update(error=self.upload.error)

    def _class(self, label):
        if not label:
            return None
        if label not in self.classes:
            self.classes[label], created = ImageClass.objects.get_or_create(dataset=self.dataset, name=label)
            if created:
                self.created_classes.append(self.classes[label].id)
        return self.classes[label]

    def _flush(self):
        if self.upload.claim_lost:
            raise ClaimLost(self.upload)  # another attempt has this upload now: write nothing more
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
            self._outcome(name, UploadOutcome.Kind.CONFLICT,
                          f"labelled “{label}” here, but the same picture is also under “{'”, “'.join(others)}”")


def ingest_upload(upload: Upload, on_progress=None, processes=None):
    """Read every file of the upload into its dataset and record the report.

    A failure midway keeps nothing half done: this upload's rows are removed again
    and the dataset is as before. An attempt after a worker died first removes what
    the dead one wrote, so each image is counted once. While it reads, a heartbeat
    shows the worker alive; if another attempt takes the upload meanwhile, this one
    stops at its next batch and writes nothing more.
    """
    limits = archive_limits()
    processes = processes or settings.INGEST_PROCESSES
    ingestion = None
    if not _discard_earlier_attempt(upload):
        return  # the reaper gave the upload to another attempt before this one began
    source = None
    try:
        with Heartbeat(upload):
            source = open_source(upload, limits)
            ingestion = Ingestion(upload, source.plan, on_progress)
            # closing: the processes and the scratch files go at once, also when reading stops midway
            with closing(examine_all(source, upload.dataset.media_folder, limits, processes)) as examined:
                counts = ingestion.run(examined, limits)
    except ClaimLost:
        return
    except (ArchiveRejected, zipfile.BadZipFile) as exc:
        _discard(upload, ingestion, str(exc))
        return
    except Exception:
        _discard(upload, ingestion, "Something went wrong while reading these files; nothing from them was kept.")
        raise
    finally:
        if source is not None:
            source.close()
    if upload.finish(**counts):
        _remove_staging(upload)


def _discard_earlier_attempt(upload) -> bool:
    """Remove what an earlier attempt, killed midway, left, if this attempt still holds the upload.
    Unfenced, a worker slow to begin (its claim already given to the next attempt, which had read the
    whole upload meanwhile) removed the next attempt's rows: an upload "done" with no images."""
    with transaction.atomic():
        if not upload.claimed_row().select_for_update().exists():
            return False
        upload.discard_rows()
        return True


def _discard(upload, ingestion, message):
    """Remove the rows this upload created and say why, if this attempt still holds it (else
    the rows are another attempt's). Files shared with other images stay; the source stays,
    so that Retry can read it again."""
    with transaction.atomic():
        if upload.claimed_row().select_for_update().exists():
            upload.discard_rows(ingestion.created_classes if ingestion is not None else ())
            upload.fail(message)


def _remove_staging(upload):
    """Once read, the zip or the staged folder is no longer needed: its images are kept."""
    upload.remove_source_files()
    if upload.file.name:
        Upload.objects.filter(id=upload.id).update(file="")
        upload.file.name = ""
