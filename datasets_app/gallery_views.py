"""Browsing every image of a dataset, and editing many at once.

The gallery is one page of thumbnails with filters; the bulk view takes the
selected images and hands them to the labelling functions.
"""
from urllib.parse import parse_qsl, urlencode, urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from mlcore.words import count, page_number, whole_number

from .labelling import LabelError, delete_images, move_to_split, relabel
from .models import SPLIT_CHOICES, SPLITS
from .access import get_dataset_for_user
from .label_views import pending_undo

IMAGES_PER_PAGE = 100
# One page is 100 images, so only a hand-made request sends more; the cap keeps one
# request from holding the database for long. (Past about 1,000 fields Django itself
# refuses the request as a bad one: DATA_UPLOAD_MAX_NUMBER_FIELDS.)
MOST_SELECTED = 500
STATUS_CHOICES = [("labelled", "Labelled"), ("unlabelled", "No class yet"), ("conflict", "Label conflict")]
# What the gallery's address may carry; anything else is dropped when going back to it.
GALLERY_PARAMETERS = ("class", "split", "status", "page")
INBOX = "none"  # the `class` value meaning "no class yet"


def _read_filters(query, classes):
    """The filters asked for in the address. A value the dataset does not have means "all",
    so an old bookmark or a deleted class shows every image rather than an error."""
    class_ids = {image_class.pk for image_class in classes}
    chosen = query.get("class", "")
    if chosen == INBOX:
        image_class = INBOX
    elif whole_number(chosen) in class_ids:
        image_class = whole_number(chosen)
    else:
        image_class = None
    split = query.get("split", "")
    status = query.get("status", "")
    return {
        "class": image_class,
        "split": split if split in SPLITS else "",
        "status": status if status in dict(STATUS_CHOICES) else "",
    }


def _filtered_images(dataset, filters):
    images = dataset.images.all()
    if filters["class"] == INBOX:
        images = images.filter(image_class__isnull=True)
    elif filters["class"] is not None:
        images = images.filter(image_class_id=filters["class"])
    if filters["split"]:
        images = images.filter(split=filters["split"])
    if filters["status"] == "labelled":
        images = images.filter(image_class__isnull=False)
    elif filters["status"] == "unlabelled":
        images = images.filter(image_class__isnull=True)
    elif filters["status"] == "conflict":
        images = images.filter(label_conflict=True)
    return images


@login_required
def gallery(request, pk):
    """A page of thumbnails. The number of queries stays the same whatever the page or the
    dataset's size: the classes and their counts in one query, the inbox count in one,
    and the page's images with their classes in one (plus the paginator's count)."""
    dataset = get_dataset_for_user(request, pk)
    classes = list(dataset.classes.annotate(image_count=Count("images")).order_by("name"))
    filters = _read_filters(request.GET, classes)
    # `dataset` stays in: the related manager links each image back to it, which would
    # otherwise load the deferred column once per image.
    images = (_filtered_images(dataset, filters).select_related("image_class").order_by("id")
              .only("dataset", "original_name", "width", "height", "split", "label_conflict", "image_class__name"))
    page = Paginator(images, IMAGES_PER_PAGE).get_page(page_number(request.GET.get("page")))
    return render(request, "datasets_app/gallery.html", {
        "dataset": dataset,
        "classes": classes,
        "unlabelled": dataset.unlabelled_count(),
        "filters": filters,
        "inbox": INBOX,
        "page": page,
        "splits": SPLIT_CHOICES,
        "statuses": STATUS_CHOICES,
        "undo": pending_undo(request, dataset),
        "delete_warning": "Delete the selected images? They leave this dataset for good; "
                          "training runs that already finished keep the images they learned from.",
    })


def _selected_image_ids(values):
    if not values:
        raise LabelError("Select at least one image first.")
    if len(values) > MOST_SELECTED:
        raise LabelError(f"Select at most {MOST_SELECTED:,} images at a time.")
    ids = [whole_number(value) for value in values]
    if None in ids:
        raise LabelError("The selection could not be read. Reload the page and select the images again.")
    return sorted(set(ids))


def _chosen_class(dataset, value):
    """The class picked in "Move to class": None for the inbox."""
    if value == INBOX:
        return None
    class_id = whole_number(value)
    image_class = dataset.classes.filter(pk=class_id).first() if class_id is not None else None
    if image_class is None:
        raise LabelError("That class is not in this dataset any more. Reload the page and choose again.")
    return image_class


def _apply_bulk_action(request, dataset):
    """Do what the action bar asked; returns the message that says what happened."""
    image_ids = _selected_image_ids(request.POST.getlist("image"))
    action = request.POST.get("action")
    if action == "class":
        to_class = _chosen_class(dataset, request.POST.get("to_class"))
        moved = relabel(dataset, image_ids, to_class, request.user, action="moved in gallery")
        where = f"“{to_class.name}”" if to_class else "the inbox (no class)"
        if not moved:
            return f"Nothing changed: the selected images were already in {where}."
        return f"Moved {count(moved, 'image')} to {where}."
    if action == "split":
        split = request.POST.get("to_split")
        moved = move_to_split(dataset, image_ids, split)
        return f"Moved {count(moved, 'image')} to the {dict(SPLIT_CHOICES)[split].lower()} set."
    if action == "delete":
        deleted = delete_images(dataset, image_ids, request.user)
        return (f"Deleted {count(deleted, 'image')} from this dataset. "
                "Training runs that already finished keep the images they learned from.")
    raise LabelError("Choose what to do with the selected images: move them to a class, "
                     "move them to a split, or delete them.")


def _gallery_address(dataset, next_url):
    """The gallery page the person came from, with its filters and page, and never any other
    page: only this dataset's gallery address and its own parameters are kept."""
    gallery_path = reverse("datasets:gallery", args=[dataset.pk])
    try:
        parts = urlsplit(next_url or "")
    except ValueError:  # such as "http://[", which no page of ours sends
        return gallery_path
    if parts.scheme or parts.netloc or parts.path != gallery_path:
        return gallery_path
    kept = [(name, value) for name, value in parse_qsl(parts.query) if name in GALLERY_PARAMETERS]
    return f"{gallery_path}?{urlencode(kept)}" if kept else gallery_path


@login_required
@require_POST
def bulk_edit(request, pk):
    dataset = get_dataset_for_user(request, pk)
    try:
        messages.info(request, _apply_bulk_action(request, dataset))
    except LabelError as error:
        messages.error(request, str(error))
    return redirect(_gallery_address(dataset, request.POST.get("next")))


urlpatterns = [
    path("<int:pk>/gallery/", gallery, name="gallery"),
    path("<int:pk>/gallery/bulk/", bulk_edit, name="bulk"),
]
