"""Model-assisted labelling (issue 20, part 3).

- Suggestions: a trained model classifies every picture in a dataset's inbox (a job on the default
  worker, predict_app/tasks.py), so the inbox can show each picture's likely class and how sure the
  model is, least sure first (the pictures a model learns most from), and accept in one step every
  suggestion at or above a line, through labelling.relabel so that each is in the label history.
- Pictures a model was not sure about: with its owner's consent (TrainingRun.keep_unsure) the classify
  page and the API keep those pictures for settings.UNSURE_KEEP_DAYS, to be sent to a dataset's inbox.
"""
from __future__ import annotations

import logging
import uuid
from pathlib import PurePosixPath

from django.conf import settings
from django.db import transaction

from datasets_app.labelling import relabel
from dlsite import storage
from dlsite.jobs import ClaimLost
from mlcore.images import IMAGE_EXTENSIONS, ImageRejected, decode_reduced, image_to_array

from .many import _batch_size
from .models import UNSURE_FOLDER, Suggestion, SuggestionJob, UnsurePicture

logger = logging.getLogger(__name__)

BATCH = 256  # inbox pictures decoded and classified in one step
ACCEPTED = "suggestion accepted"  # the label history's action for a bulk accept


class AssistError(ValueError):
    """A request that cannot be done; the message says why in plain words."""


# ---------------------------------------------------------------------------------------------
# Suggestions for the inbox


def current_job(dataset) -> SuggestionJob | None:
    """The dataset's newest suggestion job (any status): what the inbox shows or waits for."""
    return dataset.suggestion_jobs.select_related("run").first()


def start_suggesting(dataset, run, user) -> SuggestionJob:
    """A job to suggest a class for every inbox picture of `dataset` with `run`'s model; the older
    suggestions of the dataset go. AssistError for a run without a model, or an empty inbox."""
    from .tasks import suggest_classes

    if not run.has_model:
        raise AssistError("That run has no trained model to suggest classes with. Choose a finished run.")
    if not dataset.images.filter(image_class__isnull=True).exists():
        raise AssistError("The inbox is empty: every picture has a class, so there is nothing to suggest.")
    with transaction.atomic():
        active = dataset.suggestion_jobs.filter(status__in=[SuggestionJob.Status.QUEUED, SuggestionJob.Status.RUNNING])
        if active.exists():
            raise AssistError("A model is suggesting classes for this inbox already; wait until it is done.")
        dataset.suggestion_jobs.all().delete()
        job = SuggestionJob.objects.create(owner=user, dataset=dataset, run=run)
        suggest_classes.delay_on_commit(job.id)
    return job


def suggest(job: SuggestionJob, predictor, heartbeat) -> None:
    """Classify the inbox pictures, BATCH at a time, then store every answer at once, ranked from least
    sure to surest. A retry starts again (the answers are kept in memory until the end: a few numbers
    per picture), so no half-ranked list is ever shown."""
    info = predictor.info
    ids = list(job.dataset.images.filter(image_class__isnull=True).order_by("id").values_list("id", flat=True))
    job.record(done=0, total=len(ids))
    answers = []  # (confidence, image id, label)
    for first in range(0, len(ids), BATCH):
        if heartbeat.lost.is_set():
            raise ClaimLost(job)
        rows = list(job.dataset.images.filter(id__in=ids[first:first + BATCH]).values_list("id", "file"))
        ready, arrays = [], []
        for image_id, name in rows:
            pixels = _model_input(name, info)
            if pixels is not None:
                ready.append(image_id)
                arrays.append(pixels)
        _, judgements = predictor.judge_arrays(arrays, batch_size=_batch_size(info))
        answers += [(j.confidence, image_id, info.class_names[j.best]) for image_id, j in zip(ready, judgements)]
        job.record(done=min(first + BATCH, len(ids)))
    answers.sort(key=lambda answer: (answer[0], answer[1]))
    with job.holding_claim():
        # Pictures labelled or removed while the job ran are left out.
        still = set(job.dataset.images.filter(id__in=[a[1] for a in answers]).values_list("id", flat=True))
        Suggestion.objects.bulk_create(
            [Suggestion(job=job, image_id=image_id, label=label, confidence=confidence, rank=rank)
             for rank, (confidence, image_id, label) in enumerate(answers, start=1) if image_id in still],
            batch_size=1000)


def _model_input(name, info):
    """A stored dataset picture as the model's input; None when its file is gone or unreadable."""
    try:
        with storage.open_kept(name) as handle:
            image = decode_reduced(handle.read(), max(*info.image_size), settings.MAX_PREDICT_PIXELS,
                                   settings.MAX_IMAGE_PIXELS).image
    except (OSError, ImageRejected):
        return None
    return image_to_array(image, info.image_size, info.channels, info.resize)


def accept_at_or_above(dataset, job: SuggestionJob, percent: int, user) -> dict:
    """File every inbox picture whose suggestion is at least `percent` % sure under the suggested class,
    one relabel per class (each picture a row of the label history). Suggested classes the dataset
    lacks are left alone. Returns {"moved": {class name: [image ids]}, "missing": {class name: count}}."""
    if not 0 <= percent <= 100:
        raise AssistError("Give a percentage between 0 and 100.")
    classes = {image_class.name: image_class for image_class in dataset.classes.all()}
    # As the inbox shows them: a picture shown "90 % sure" (rounded) is accepted at 90 %.
    wanted = (job.suggestions.filter(image__image_class__isnull=True, image__dataset=dataset,
                                     confidence__gte=(percent - 0.5) / 100).values_list("label", "image_id"))
    by_label: dict[str, list[int]] = {}
    for label, image_id in wanted:
        by_label.setdefault(label, []).append(image_id)
    moved, missing = {}, {}
    with transaction.atomic():
        for label, ids in sorted(by_label.items()):
            if label not in classes:
                missing[label] = len(ids)
                continue
            if relabel(dataset, ids, classes[label], user, action=ACCEPTED):
                moved[label] = ids
    return {"moved": moved, "missing": missing}


def undo_accept(dataset, moved: dict, user) -> int:
    """Put back in the inbox the pictures a bulk accept filed, those still in the class it gave them."""
    ids = []
    for label, image_ids in moved.items():
        ids += list(dataset.images.filter(id__in=image_ids, image_class__name=label).values_list("id", flat=True))
    return relabel(dataset, ids, None, user, action="undone")


# ---------------------------------------------------------------------------------------------
# Pictures a model was not sure about


def unsure_keeper(run, via: str):
    """For predict_app.services.classify_uploads: keeps each "not sure" picture of `run`, when its owner
    said so (TrainingRun.keep_unsure); None (keep nothing) otherwise."""
    if not run.keep_unsure:
        return None

    def keep(result: dict, data: bytes) -> None:
        suffix = PurePosixPath(result["name"]).suffix.lower()
        name = f"{UNSURE_FOLDER}/{run.id}/{uuid.uuid4().hex}{suffix if suffix in IMAGE_EXTENSIONS else '.bin'}"
        try:
            stored = storage.save_bytes(name, bytes(data))
        except OSError:  # a full disk must not cost the person their answer
            logger.exception("Could not keep a picture model %s was not sure about", run.id)
            return
        UnsurePicture.objects.create(
            run_id=run.id, name=str(result["name"])[:255], file=stored, label=result["label"][:255],
            confidence=result["probability"], doubt=result["doubt"], reason=result["doubt_words"][:500], via=via)
    return keep


def send_unsure_to_inbox(run, pictures, dataset, user):
    """Queue these kept pictures into the inbox of `dataset`, each with the class the model would have given
    it as a suggestion (as pictures sent from a classification are); the kept copies then go. Returns the
    upload; many.Refused when there is nothing to send or a limit would be passed."""
    from .many import send_to_inbox

    pictures = list(pictures)
    upload = send_to_inbox(pictures, dataset, user, f"model {run.id} was not sure about")
    UnsurePicture.objects.filter(id__in=[picture.id for picture in pictures]).delete()
    return upload
