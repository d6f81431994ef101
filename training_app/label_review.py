"""Finding likely wrong labels in a dataset (the worker's side of a LabelReview), and the decisions a
person makes about each suspect (the review page's side).

The worker reads every trainable picture (labelled, not in a label conflict), gives it to a network
(a finished run's, or the offline pretrained EfficientNet-Lite0 when the person chose none), and hands
the features to mlcore/label_issues.py, which ranks the pictures by how likely their label is wrong.
The decisions go through labelling.py, so each lands in the label history like any other change; a
"keep" is recorded there too, and a picture kept with a label is not suspected again with that label.
"""
import logging

import numpy as np
from django.db import transaction
from django.utils import timezone

from dlsite import storage
from mlcore import label_issues
from mlcore.images import load_model_input
from mlcore.words import count

from datasets_app.labelling import LabelError, change_one, undo_one
from datasets_app.models import LabelChange

from .models import LabelReview, LabelSuspect

logger = logging.getLogger(__name__)

BATCH = 64  # pictures decoded and looked at together: 64 at 224 x 224 x 3 is 10 MB
MIN_PER_CLASS = 2  # a class needs two pictures: one to learn from while the other is judged
KEEP_ACTION = "kept after review"
MOVE_ACTION = "moved after label review"
REMOVE_ACTION = "removed after label review"


class ReviewImpossible(Exception):
    """The dataset cannot be searched as it is; the message says why in plain words."""


def runs_to_choose(dataset):
    """The finished runs of this dataset whose network can give features, newest first."""
    return dataset.runs.with_model().order_by("-created_at", "-id")


def features_in_words(run) -> str:
    if run is None:
        return "the pretrained EfficientNet-Lite0 (no run chosen)"
    return f"the network of run {run.id}"


def find(review: LabelReview) -> None:
    """The job: every trainable picture's features, the ranking, the suspects stored."""
    dataset = review.dataset
    rows = list(dataset.trainable_images().order_by("id").values_list("id", "file", "original_name",
                                                                      "image_class__name"))
    class_names = sorted({label for *_, label in rows})
    sizes = {name: 0 for name in class_names}
    for *_, label in rows:
        sizes[label] += 1
    big_enough = [name for name in class_names if sizes[name] >= MIN_PER_CLASS]
    if len(big_enough) < 2:
        raise ReviewImpossible("Looking for wrong labels needs at least two classes with at least two labelled "
                               "pictures each.")
    rows = [row for row in rows if row[3] in big_enough]
    class_names = big_enough

    model, size, channels, resize = _network(review)
    total = len(rows)
    review.record_progress("Looking at each picture", 0, total)
    used = []  # the rows whose picture could be read, in the order of the features

    def batches():
        for start in range(0, total, BATCH):
            pixels = []
            for row in rows[start:start + BATCH]:
                try:
                    pixels.append(load_model_input(storage.read_bytes(row[1]), size, channels, resize=resize))
                except (OSError, ValueError) as exc:  # a file gone from the storage, or no longer readable
                    logger.warning("Label review %s: picture %s skipped: %s", review.id, row[0], exc)
                    continue
                used.append(row)
            if pixels:
                yield np.stack(pixels)

    last = [0.0]

    def on_batch(done):
        # A write a second at most: the page polls, and every write is a fenced update.
        now = timezone.now().timestamp()
        if now - last[0] >= 1.0:
            last[0] = now
            review.record_progress("Looking at each picture", min(done, total), total)

    features = label_issues.features_of(model, batches(), on_batch)
    labels = np.array([class_names.index(row[3]) for row in used], dtype=int)
    if len(labels) < 2 * 2:
        raise ReviewImpossible("Too few of the pictures could be read to compare their labels.")
    review.record_progress("Comparing each picture's label with what pictures like it are labelled", total, total)
    suspects, _ = label_issues.rank(features, labels, class_names, names=[row[2] for row in used])
    kept = set(LabelSuspect.objects.filter(review__dataset=dataset, decision=LabelSuspect.Decision.KEPT)
               .values_list("image_id", "given_label"))
    stored = []
    for suspect in suspects:
        image_id, _, name, label = used[suspect.index]
        if (image_id, label) in kept:
            continue  # its owner looked at it with this label and kept it
        stored.append(LabelSuspect(
            review=review, image_id=image_id, image_name=name, rank=len(stored), kind=suspect.kind,
            given_label=label, suggested_label=class_names[suspect.suggested], reason=suspect.reason,
            score=suspect.score, other_image_id=used[suspect.other][0] if suspect.other is not None else None))
    review.finish(stored, len(used))


def _network(review):
    """(feature model, picture size, channels, resize mode) for the review's run, or the pretrained network."""
    import keras

    run = review.run
    if run is not None:
        if not run.has_model:
            raise ReviewImpossible(f"Run {run.id} has no model any more: choose another run, or none.")
        try:
            path = run.model_path
        except FileNotFoundError:
            raise ReviewImpossible(f"Run {run.id}'s model file is missing from the server: choose another run, "
                                   "or none.") from None
        review.record_progress(f"Loading the network of run {run.id}", 0, 0)
        model = keras.models.load_model(path, safe_mode=True, compile=False)
        return model, (run.image_size, run.image_size), run.channels, run.resize_mode
    from pretrained_app.weights import weights_folder_for

    review.record_progress("Loading the pretrained network", 0, 0)
    channels = review.dataset.channels()
    spec = {"base": {"name": label_issues.PRETRAINED}}
    model = label_issues.pretrained_feature_model(channels, weights_folder_for(spec))
    size = label_issues.PRETRAINED_SIZE
    return model, (size, size), channels, "squash"


# --- the person's decisions ------------------------------------------------------------------------

DECISIONS = ("keep", "move", "remove")


def decide(suspect: LabelSuspect, decision: str, user) -> tuple[str, dict]:
    """Keep the label, move the picture to the suggested class, or remove it; recorded on the suspect and in
    the label history. Returns what happened, in words, and what undo_decision needs to take it back (plain
    values, kept in the session); LabelError when it cannot be done."""
    if decision not in DECISIONS:
        raise LabelError("Choose keep, move or remove.")
    review = suspect.review
    dataset = review.dataset
    with transaction.atomic():
        # Locked and read again: two tabs deciding the same picture at once record one decision.
        suspect = LabelSuspect.objects.select_for_update().get(id=suspect.id)
        if suspect.decision:
            raise LabelError(f"“{suspect.image_name}” was decided on already: {suspect.get_decision_display().lower()}.")
        image = dataset.images.filter(id=suspect.image_id).select_related("image_class").first()
        if image is None:
            raise LabelError(f"“{suspect.image_name}” is no longer in the dataset.")
        label = image.label or ""
        change = None
        if decision == "keep":
            LabelChange.objects.create(dataset=dataset, image=image, image_name=image.original_name, user=user,
                                       from_label=label, to_label=label, action=KEEP_ACTION)
            suspect.given_label = label  # kept with the label it has now: not suspected again with it
            text = f"“{image.original_name}” keeps its label “{label}”." if label else \
                f"“{image.original_name}” stays in the inbox."
            outcome = LabelSuspect.Decision.KEPT
        elif decision == "move":
            target = dataset.classes.filter(name=suspect.suggested_label).first()
            if target is None:
                raise LabelError(f"The class “{suspect.suggested_label}” is gone (renamed or deleted), so the "
                                 "picture cannot be moved there: move it from the gallery instead.")
            change = change_one(dataset, image.id, target, user, actions=(MOVE_ACTION, REMOVE_ACTION))
            if change:
                text = f"“{image.original_name}” moved from “{label}” to “{target.name}”."
            else:  # filed there elsewhere since the search: nothing changed, so the history has no line
                text = f"“{image.original_name}” is in “{target.name}” already."
            outcome = LabelSuspect.Decision.MOVED
        else:
            change = change_one(dataset, image.id, "remove", user, actions=(MOVE_ACTION, REMOVE_ACTION))
            text = f"“{image.original_name}” was removed from the dataset."
            outcome = LabelSuspect.Decision.REMOVED
        suspect.decision, suspect.decided_by, suspect.decided_at = outcome, user, timezone.now()
        suspect.save(update_fields=["decision", "decided_by", "decided_at", "given_label"])
    return text, {"review": review.id, "suspect": suspect.id, "text": text, "change": change}


@transaction.atomic
def undo_decision(review: LabelReview, undo: dict, user) -> tuple[LabelSuspect, str]:
    """Take back the decision `decide` returned `undo` for: the picture goes back to its class or into the
    dataset (datasets_app.labelling.undo_one, written in the history as an undo), and the suspect is open again.
    Returns the suspect and what happened in words; LabelError when it cannot be done."""
    if not undo or undo.get("review") != review.id:
        raise LabelError("There is no decision of this search to undo.")
    suspect = LabelSuspect.objects.select_for_update().filter(id=undo.get("suspect"), review=review).first()
    if suspect is None or not suspect.decision:
        raise LabelError("That decision was undone already.")
    text = f"Undone: “{suspect.image_name}” is open to decide on again."
    if undo.get("change"):
        text = undo_one(review.dataset, undo["change"], user)
        suspect.image_id = undo["change"]["image"]  # a removed picture comes back with its id (its removal cleared it)
    suspect.decision, suspect.decided_by, suspect.decided_at = "", None, None
    suspect.save(update_fields=["decision", "decided_by", "decided_at", "image"])
    return suspect, text


def summary(review: LabelReview) -> str:
    decided = review.suspects.exclude(decision="").count()
    return (f"{count(review.suspects.count(), 'suspect')} among {count(review.pictures, 'labelled picture')}, "
            f"{decided} decided")
