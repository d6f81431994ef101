"""Changing labels, splits and classes, with a record of every label change.

Views call these functions and show `LabelError` messages as they are.
"""
from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import Count

from dlsite import storage
from mlcore.archive import without_control_characters
from mlcore.splits import stratified_split

from .models import SPLITS, Dataset, Image, ImageClass, LabelChange, Upload

CHUNK = 500  # ids per IN (...) clause: well under SQLite's limit on parameters


class LabelError(ValueError):
    """A change that cannot be made; the message says why in plain words."""


def _chunks(items, size=CHUNK):
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start:start + size]


def clean_class_name(name: str) -> str:
    # Control characters (NUL among them, which PostgreSQL refuses) have no place in a label.
    name = " ".join(without_control_characters(name or "").split())
    if not name:
        raise LabelError("Give the class a name.")
    if len(name) > 200:
        raise LabelError("Class names can be at most 200 characters long.")
    if "/" in name or "\\" in name:
        raise LabelError("Class names cannot contain / or \\, since they become folder names when exported.")
    return name


def create_class(dataset: Dataset, name: str) -> ImageClass:
    name = clean_class_name(name)
    if dataset.classes.filter(name__iexact=name).exists():
        raise LabelError(f"There is already a class called “{name}”.")
    return ImageClass.objects.create(dataset=dataset, name=name)


@transaction.atomic
def relabel(dataset: Dataset, image_ids, to_class: ImageClass | None, user, action="moved") -> int:
    """Give these images a new class (None: back to the inbox). Returns how many changed."""
    if to_class is not None and to_class.dataset_id != dataset.id:
        raise LabelError("That class belongs to another dataset.")
    to_label = to_class.name if to_class else ""
    changes, changed_ids, shas = [], [], set()
    for chunk in _chunks(image_ids):
        rows = dataset.images.filter(id__in=chunk).values_list("id", "original_name", "image_class__name", "sha256")
        for image_id, name, from_label, sha in rows:
            if (from_label or "") == to_label:
                continue
            changes.append(LabelChange(dataset=dataset, image_id=image_id, image_name=name, user=user,
                                       from_label=from_label or "", to_label=to_label, action=action))
            changed_ids.append(image_id)
            shas.add(sha)
    for chunk in _chunks(changed_ids):
        Image.objects.filter(id__in=chunk).update(image_class=to_class)
    LabelChange.objects.bulk_create(changes, batch_size=1000)
    _remove_copies(dataset, shas, user)
    refresh_conflicts(dataset, shas)
    return len(changed_ids)


def _remove_copies(dataset: Dataset, shas, user) -> None:
    """After a move, copies of one picture that now share a class are one image: the oldest
    stays. Otherwise a settled conflict could leave the same picture in training and in test."""
    extra = []
    for chunk in _chunks(shas):
        kept = set()
        for image_id, sha, class_id in dataset.images.filter(sha256__in=chunk).order_by("id").values_list(
                "id", "sha256", "image_class_id"):
            if (sha, class_id) in kept:
                extra.append(image_id)
            kept.add((sha, class_id))
    if extra:
        delete_images(dataset, extra, user, action="copy removed")


def delete_upload(upload: Upload) -> None:
    """Remove the upload, the images it added and its source file (after the commit)."""
    with transaction.atomic():
        shas = set(upload.images.values_list("sha256", flat=True))
        upload.images.all().delete()
        refresh_conflicts(upload.dataset, shas)
        upload.delete()


def refresh_conflicts(dataset: Dataset, shas) -> None:
    """Flag each picture (by hash) filed under more than one class; clear the flag where that ended."""
    for chunk in _chunks(shas):
        labelled = dataset.images.filter(sha256__in=chunk, image_class__isnull=False)
        conflicted = set(
            labelled.values("sha256").annotate(classes=Count("image_class", distinct=True))
            .filter(classes__gt=1).values_list("sha256", flat=True)
        )
        dataset.images.filter(sha256__in=chunk).exclude(sha256__in=conflicted).update(label_conflict=False)
        if conflicted:
            labelled.filter(sha256__in=conflicted).update(label_conflict=True)


@transaction.atomic
def move_to_split(dataset: Dataset, image_ids, split: str) -> int:
    """Put images in a split by hand; a later re-split leaves them there."""
    if split not in SPLITS:
        raise LabelError("Choose training, validation or test.")
    moved = 0
    for chunk in _chunks(image_ids):
        moved += dataset.images.filter(id__in=chunk).update(split=split, split_fixed=True)
    return moved


@transaction.atomic
def delete_images(dataset: Dataset, image_ids, user, action="deleted") -> int:
    """Remove images from the dataset. Their files stay, since dataset versions may use them."""
    changes, shas, ids = [], set(), []
    for chunk in _chunks(image_ids):
        for image_id, name, label, sha in dataset.images.filter(id__in=chunk).values_list(
                "id", "original_name", "image_class__name", "sha256"):
            changes.append(LabelChange(dataset=dataset, image_name=name, user=user, from_label=label or "",
                                       to_label="", action=action))
            shas.add(sha)
            ids.append(image_id)
    for chunk in _chunks(ids):
        Image.objects.filter(id__in=chunk).delete()
    LabelChange.objects.bulk_create(changes, batch_size=1000)
    refresh_conflicts(dataset, shas)
    return len(ids)


# One picture at a time, with the last change kept so it can be undone (a run's test pictures, the
# gallery's large view). The change itself is relabel() or delete_images(), recorded in the history as
# everywhere else; `undo_one` takes it back with the same functions, or puts a removed picture back.

# The columns that make a picture: what a removal keeps to put it back as it was, with the same id (a run's
# kept answers name pictures by id). The file itself stays when its row goes (see delete_images).
RESTORED_COLUMNS = ("id", "image_class_id", "upload_id", "file", "thumbnail", "original_name", "split",
                    "folder_split", "split_fixed", "suggested_label", "width", "height", "channels", "sha256")


def change_one(dataset: Dataset, image_id: int, to, user,
               actions=("moved from test results", "removed from test results")) -> dict | None:
    """Move one picture to the class `to` (an ImageClass), to the inbox (None), or out of the dataset
    ("remove"), recorded in the history as `actions` (a move, a removal) say. Returns what undo_one needs
    to take it back (plain values, kept in the session), or None when nothing changed (it was in that
    class already)."""
    row = dataset.images.filter(id=image_id).values(*RESTORED_COLUMNS, "image_class__name").first()
    if row is None:
        raise LabelError("That picture is no longer in the dataset: it was removed, or it is not one of yours.")
    from_label = row.pop("image_class__name") or ""
    undo = {"dataset": dataset.id, "image": image_id, "name": row["original_name"],
            "from_class": row["image_class_id"], "from_label": from_label}
    if to == "remove":
        delete_images(dataset, [image_id], user, action=actions[1])
        return {**undo, "removed": row}
    if not relabel(dataset, [image_id], to, user, action=actions[0]):
        return None
    return {**undo, "to_label": to.name if to else ""}


@transaction.atomic
def undo_one(dataset: Dataset, undo: dict, user) -> str:
    """Take back a change_one: the picture goes back to its class (the inbox when that class is gone), a
    removed picture comes back as it was. Recorded in the history as an undo; the message says what happened."""
    if undo.get("dataset") != dataset.id:
        raise LabelError("There is nothing to undo in this dataset.")
    name = undo.get("name", "the picture")
    back_to = dataset.classes.filter(id=undo.get("from_class")).first() if undo.get("from_class") else None
    where = f"“{back_to.name}”" if back_to else "the inbox"
    removed = undo.get("removed")
    if removed:
        if Image.objects.filter(id=removed["id"]).exists():
            raise LabelError(f"“{name}” is back already.")
        # The clean-up keeps a removed picture's file while a run's version names it, not its thumbnail.
        if not storage.exists(removed["file"]):
            raise LabelError(f"“{name}” cannot come back: its file was cleaned up from the server since.")
        upload_kept = dataset.uploads.filter(id=removed["upload_id"]).exists()
        thumbnail_kept = bool(removed["thumbnail"]) and storage.exists(removed["thumbnail"])
        fields = {**removed, "image_class_id": back_to.id if back_to else None,
                  "upload_id": removed["upload_id"] if upload_kept else None,
                  "thumbnail": removed["thumbnail"] if thumbnail_kept else ""}
        Image.objects.create(dataset=dataset, **fields)
        LabelChange.objects.create(dataset=dataset, image_id=removed["id"], image_name=name, user=user,
                                   from_label="", to_label=back_to.name if back_to else "", action="restored")
        refresh_conflicts(dataset, {removed["sha256"]})
        _remove_copies(dataset, {removed["sha256"]}, user)
        return f"“{name}” is back in the dataset, in {where}."
    if not dataset.images.filter(id=undo.get("image")).exists():
        raise LabelError(f"“{name}” is no longer in the dataset, so its move cannot be undone.")
    relabel(dataset, [undo["image"]], back_to, user, action="undone")
    return f"Undone: “{name}” is back in {where}."


def rename_class(image_class: ImageClass, new_name: str, user) -> ImageClass:
    new_name = clean_class_name(new_name)
    dataset = image_class.dataset
    if new_name == image_class.name:
        return image_class
    if dataset.classes.filter(name__iexact=new_name).exclude(id=image_class.id).exists():
        raise LabelError(f"There is already a class called “{new_name}”; merge into it instead.")
    old_name = image_class.name
    try:
        with transaction.atomic():
            image_class.name = new_name
            image_class.save(update_fields=["name"])
            LabelChange.objects.create(dataset=dataset, user=user, from_label=old_name, to_label=new_name,
                                       action="class renamed")
    except IntegrityError:
        raise LabelError(f"There is already a class called “{new_name}”.") from None
    return image_class


@transaction.atomic
def merge_classes(source: ImageClass, target: ImageClass, user) -> int:
    """Move every image of `source` into `target`, then remove `source`."""
    if source.dataset_id != target.dataset_id:
        raise LabelError("Both classes must belong to the same dataset.")
    if source.id == target.id:
        raise LabelError("Choose a different class to merge into.")
    moved = relabel(source.dataset, source.images.values_list("id", flat=True), target, user, action="classes merged")
    source.delete()
    return moved


@transaction.atomic
def delete_class(image_class: ImageClass, user) -> int:
    """Remove a class; its images are kept and go back to the unlabelled inbox."""
    moved = relabel(image_class.dataset, image_class.images.values_list("id", flat=True), None, user,
                    action="class deleted")
    image_class.delete()
    return moved


@transaction.atomic
def resolve_conflict(dataset: Dataset, sha256: str, to_class: ImageClass | None, user) -> None:
    """Settle a picture filed under several classes: keep one copy in `to_class`, or none at all."""
    copies = list(dataset.images.filter(sha256=sha256, image_class__isnull=False).order_by("id"))
    if not copies:
        raise LabelError("That picture is no longer in the dataset.")
    if to_class is None:
        delete_images(dataset, [image.id for image in copies], user)
        return
    keep = next((image for image in copies if image.image_class_id == to_class.id), copies[0])
    relabel(dataset, [keep.id], to_class, user, action="conflict settled")
    delete_images(dataset, [image.id for image in copies if image.id != keep.id], user)


@transaction.atomic
def resplit(dataset: Dataset, val_fraction: float, test_fraction: float) -> None:
    """New split percentages, applied as at upload: test/ and val/ folders keep their images, a
    train/ folder gives up validation images when there is no val/ folder, the rest is split
    stratified and seeded. Images the person moved by hand keep their split."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise LabelError("The validation and test shares must be between 0 % and 100 % together.")
    dataset.val_fraction, dataset.test_fraction = val_fraction, test_fraction
    dataset.save(update_fields=["val_fraction", "test_fraction"])
    rows = list(dataset.images.filter(split_fixed=False).order_by("id").values_list(
        "id", "image_class__name", "folder_split"))
    splits = stratified_split([label or "" for _, label, _ in rows], [folder or None for _, _, folder in rows],
                              val_fraction, test_fraction, dataset.split_seed)
    by_split = {split: [] for split in SPLITS}
    for (image_id, _, _), split in zip(rows, splits):
        by_split[split].append(image_id)
    for split, ids in by_split.items():
        for chunk in _chunks(ids):
            Image.objects.filter(id__in=chunk).update(split=split)
