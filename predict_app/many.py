"""Classifying many pictures: receiving a folder's parts (dlsite/uploads.py), reading a zip, and the
worker's pass that classifies the pictures not yet classified, a batch at a time. predict_app/tasks.py
calls the job; the views call the receiving.
"""
from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath

from django.conf import settings
from django.db import transaction

from datasets_app.folder_upload import copy_batch
from datasets_app.models import Upload
from datasets_app.sources import fit_upload_name
from datasets_app.tasks import ingest
from dlsite import quotas, storage
from dlsite.heartbeat import Heartbeat
from dlsite.jobs import ClaimLost
from dlsite.uploads import FolderReceiver, Refused
from mlcore.archive import ArchiveRejected, ZipPlan, plan_zip, read_entries, shown
from mlcore.images import IMAGE_EXTENSIONS, ImageRejected, ImageTooLarge, decode_reduced, image_to_array, make_thumbnail
from mlcore.serving import BATCH_PIXELS

from .models import FOLDER, Classification, ClassifiedImage

logger = logging.getLogger(__name__)

BATCH = 256  # pictures decoded and classified in one step, then written in one transaction
UNSURE_FOLDER = "not sure"  # in the sorted zip, the pictures below the classification's threshold




# ---------------------------------------------------------------------------------------------
# Receiving


def _stored_name(job_id: int, stem: str, original: str) -> str:
    suffix = PurePosixPath(original).suffix.lower()
    return f"{FOLDER}/{job_id}/{stem}{suffix if suffix in IMAGE_EXTENSIONS else '.bin'}"


def _new_picture(job: Classification, stem: str, name: str, data, batch: int = 0) -> ClassifiedImage:
    """A row for a picture whose bytes are stored now, under a name of the job's own (people's names
    may be long, or hold what a disk refuses), unique by its stem: so it is written straight to its
    file, without the storage's search for a free name (a third of the time of a 10,000-picture zip)."""
    stored = _stored_name(job.id, stem, name)
    if hasattr(data, "chunks"):
        data = b"".join(data.chunks())
    storage.save_bytes(stored, data)
    return ClassifiedImage(classification=job, name=name[:1000], batch=batch, file=stored)


class ClassificationFolders(FolderReceiver):
    """A folder sent to be classified: each part's pictures stored at once, a row each, to be classified
    by the worker; an abandoned folder keeps what arrived (Retry classifies it)."""

    model = Classification
    things = "pictures"
    abandoned_advice = "Pick the folder again to send it, or press Retry to classify the pictures that arrived."

    def store(self, job, index, files):
        rows = [_new_picture(job, f"{index:05d}-{number:03d}", path, uploaded, batch=index)
                for number, (path, uploaded) in enumerate(files)]
        ClassifiedImage.objects.bulk_create(rows)
        return True

    def prefix(self, job):
        """The storage folder (a dlsite/storage.py name) where the parts' pictures are kept."""
        return job.folder

    def sent_already(self, job):
        return "This folder has been sent completely already. To classify more pictures, start again."

    def when_ready(self, job):
        return {"total": job.images.count()}


receiver = ClassificationFolders()


def check_zip(fileobj, limits):
    """The zip's plan, checked from its directory before it is stored; Refused with the reason."""
    try:
        plan = plan_zip(fileobj, limits)
    except ArchiveRejected as exc:
        raise Refused(str(exc)) from None
    if not plan.images:
        raise Refused("This zip holds no pictures (PNG, JPEG, BMP or GIF files).")
    return plan


# ---------------------------------------------------------------------------------------------
# Classifying


def classify(job: Classification, predictor, limits, heartbeat: Heartbeat) -> None:
    """Classify every picture of the job not yet classified, BATCH at a time; ClaimLost when another
    attempt has it. A zip's pictures are read, classified and stored in one pass; a folder's were
    stored as they arrived."""
    if job.zip_file:
        _classify_zip(job, predictor, limits, heartbeat)
    _classify_stored(job, predictor, heartbeat)


def _classify_zip(job: Classification, predictor, limits, heartbeat: Heartbeat) -> None:
    """Each picture decoded from the zip's own bytes and its row written once, with what the model
    said (writing rows first and their results after, then reading each file back, took three
    quarters of a 10,000-picture job). An attempt after one that was cut off goes on after the
    pictures that one stored: they are stored a batch at a time, in the zip's order."""
    stored = job.images.count()
    # Read by path: the kept zip itself with the local folder (no copy), this host's cached copy with
    # a bucket (fetched once: a retry on this host reads the same copy).
    with open(storage.local_path(job.zip_file.name), "rb") as handle:
        plan = plan_zip(handle, limits)
        total = len(plan.images)
        if not job.record_progress(stored, total):
            raise ClaimLost(job)
        entries = read_entries(handle, ZipPlan(images=plan.images[stored:]), limits)
        for first in range(stored, total, BATCH):
            if heartbeat.lost.is_set():
                raise ClaimLost(job)
            rows, datas = [], []
            for number, (planned, data, reason) in zip(range(first, min(first + BATCH, total)), entries):
                if data is None:
                    rows.append(ClassifiedImage(classification=job, name=planned.name[:1000],
                                                error=f"Not used: {reason}."))
                else:
                    rows.append(_new_picture(job, f"{number:07d}", planned.name, data))
                datas.append(data)
            _judge(job, predictor, rows, datas)
            with job.holding_claim():
                ClassifiedImage.objects.insert(rows)
                job.record_progress(first + len(rows), total)


def _classify_stored(job: Classification, predictor, heartbeat: Heartbeat) -> None:
    """The stored pictures not yet classified (a folder's, or an older attempt's), read back from their files."""
    total = job.images.count()
    done = total - job.images.filter(confidence__isnull=True, error="").count()  # an earlier attempt's work
    while True:
        if heartbeat.lost.is_set():
            raise ClaimLost(job)
        rows = list(job.images.filter(confidence__isnull=True, error="").order_by("id")[:BATCH])
        if not rows:
            break
        _judge(job, predictor, rows, [None] * len(rows))
        with job.holding_claim():
            ClassifiedImage.objects.write_results(rows)
            done += len(rows)  # each row of the step is classified now, or has its error
            job.record_progress(done, total)


def _judge(job: Classification, predictor, rows: list[ClassifiedImage], datas: list) -> None:
    """Set what the model says of each row (its bytes in `datas`, or None to read its file), or why
    it could not be used. Decoding, resizing and thumbnails run in threads, one per core: Pillow and
    OpenCV let go of the GIL while they work; the model then sees the whole batch at once."""
    info = predictor.info
    side = max(*info.image_size, 160)  # thumbnails are made from the same small decoding
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        prepared = list(pool.map(lambda pair: _model_input(job, *pair, side, info), zip(rows, datas)))
    ready = [row for row, pixels in zip(rows, prepared) if pixels is not None]
    probabilities, judgements = predictor.judge_arrays([pixels for pixels in prepared if pixels is not None],
                                                       batch_size=_batch_size(info))
    for row, probability, judgement in zip(ready, probabilities, judgements):
        row.label, row.confidence = info.class_names[judgement.best], judgement.confidence
        row.doubt = judgement.doubt
        row.probabilities = [round(float(p), 6) for p in probability]


def _batch_size(info) -> int:
    """Pictures per call of the model: all of a step's small ones; fewer big ones (memory grows with them)."""
    return max(1, min(BATCH, BATCH_PIXELS // (info.image_size[0] * info.image_size[1])))


def _model_input(job, row: ClassifiedImage, data: bytes | None, side: int, info):
    """The picture as the model's input, with its thumbnail stored; None, with `row.error` set, when
    the file cannot be used (or was not: a zip entry that could not be read has its error already)."""
    if row.error:
        return None
    limit = settings.MAX_PREDICT_FILE_BYTES
    try:
        if data is None:
            with storage.open_kept(row.file.name) as handle:
                data = handle.read(limit + 1)
        if len(data) > limit:
            row.error = f"This file is larger than the limit of {limit:,} bytes."
            return None
        image = decode_reduced(data, side, settings.MAX_PREDICT_PIXELS, settings.MAX_IMAGE_PIXELS).image
    except ImageTooLarge as exc:
        row.error = f"This picture is too large ({exc.width} × {exc.height} pixels); the limit is {exc.limit:,}."
        return None
    except ImageRejected as exc:
        row.error = f"This file could not be used: {exc}."[:300]
        return None
    except OSError:
        row.error = "This file is missing from the server."
        return None
    thumbnail = make_thumbnail(image)
    if thumbnail:
        # Its own name, unique in the job like its picture's: kept without a search for a free name.
        row.thumbnail = storage.save_bytes(f"{FOLDER}/{job.id}/thumbs/{_stem(row)}.jpg", thumbnail)
    return image_to_array(image, info.image_size, info.channels, info.resize)


def _stem(row: ClassifiedImage) -> str:
    """The name the picture's file was stored under, without its folder and suffix (unique in its job)."""
    return PurePosixPath(row.file.name).stem


# ---------------------------------------------------------------------------------------------
# Results


def results_rows(job: Classification):
    """The spreadsheet's rows (dlsite/spreadsheets.py writes them): a heading, then one line per picture:
    its name, the class, how sure (0 to 1), and every class's probability."""
    names = job.run.class_names
    yield ["file", "class", "confidence", *names, "not sure", "problem"]
    for row in job.images.order_by("name", "id").iterator():
        probabilities = row.probabilities or [""] * len(names)
        yield [row.name, row.label, "" if row.confidence is None else f"{row.confidence:.6f}",
               *probabilities, row.doubt_in_words, row.error]


def sorted_zip(job: Classification):
    """A temporary file holding a zip of the pictures, one folder per class the model gave them
    (and UNSURE_FOLDER for those below the classification's threshold), each under its own name."""
    handle = tempfile.TemporaryFile()
    used = set()
    with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
        unsure = set(job.unsure_pictures().values_list("id", flat=True))
        for row in job.images.exclude(label="").order_by("name", "id").iterator():
            folder = UNSURE_FOLDER if row.id in unsure else _folder_name(row.label)
            base = PurePosixPath(row.name).name or f"picture-{row.id}"
            target = f"{folder}/{base}"
            if target in used:  # two pictures of the same name from different folders
                stem, suffix = os.path.splitext(base)
                target = f"{folder}/{stem}-{row.id}{suffix}"
            used.add(target)
            with storage.open_kept(row.file.name) as picture:
                archive.writestr(target, picture.read())
    handle.seek(0)
    return handle


def send_to_inbox(pictures, dataset, user, source: str):
    """Queue `pictures` (a classification's, or those a model was not sure about: rows with a name, a file
    and a label; `source` says where they came from, after "N pictures" in the upload's name) to be read into the inbox of `dataset`, each with the class the model
    gave it as a suggestion: an upload of loose files (no folder, so no label), read by the ingestion like
    any other. Returns the upload; Refused when the person's storage limit would be passed."""
    files, suggestions, used, size = [], {}, set(), 0
    for picture in pictures:
        if not picture.file:
            continue
        name = PurePosixPath(picture.name).name or f"picture-{picture.id}"
        if name in used:  # two pictures of one name from different folders
            stem, suffix = os.path.splitext(name)
            name = f"{stem}-{picture.id}{suffix}"
        used.add(name)
        try:
            size += picture.file.size  # the storage's own answer: the folder's or the bucket's
        except (OSError, ValueError):  # gone: nothing to send
            continue
        files.append((name, picture.file.name))
        if picture.label:
            suggestions[name] = picture.label
    if not files:
        raise Refused("Choose the pictures to send first: tick them in the gallery.")
    if refusal := quotas.upload_refusal(user, size):
        raise Refused(refusal)
    with transaction.atomic():
        upload = Upload.objects.create(
            dataset=dataset, kind=Upload.Kind.FOLDER, status=Upload.Status.QUEUED, created_by=user,
            original_name=fit_upload_name(f"{len(files)} pictures {source}"),
            expected_files=len(files), expected_batches=1, received_batches=[0], expected_bytes=size,
            received_bytes=size, suggestions=suggestions)
        copy_batch(upload, 0, files)
        ingest.delay_on_commit(upload.id)
    return upload


def _folder_name(label: str) -> str:
    """A class name as a folder name inside a zip: no slashes, nothing hidden."""
    name = shown(label).replace("/", "_").replace("\\", "_").strip(". ") or "class"
    return name[:100]
