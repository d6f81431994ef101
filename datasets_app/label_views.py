"""Labelling pages: the inbox of unlabelled images, the classes, label conflicts and the label history.

The changes themselves are made by `labelling.py`; these views read the request,
call it, and show its `LabelError` messages as they are.
"""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, F, FilteredRelation, Min, Q, Value, Window
from django.db.models.functions import Coalesce, RowNumber
from django.http import JsonResponse
from django.utils.http import url_has_allowed_host_and_scheme
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST

from mlcore.words import count, page_number, whole_number

from .labelling import (
    LabelError,
    change_one,
    create_class,
    delete_class,
    merge_classes,
    relabel,
    rename_class,
    resolve_conflict,
    undo_one,
)
from .access import get_dataset_for_user

QUEUE_SIZE = 20  # unlabelled images sent to the inbox page at a time
HELD_IDS_READ = 500  # the inbox page sends at most 200; a longer list is cut rather than refused
THUMBNAILS_PER_CLASS = 6
CONFLICTS_PER_PAGE = 50
CHANGES_PER_PAGE = 100

# The actions labelling.py records, as the history page says them.
ACTION_WORDS = {
    "labelled in inbox": "labelled in the inbox",
    "undo": "undone in the inbox",
    "moved": "moved to another class",
    "deleted": "removed from the dataset",
    "class renamed": "class renamed",
    "classes merged": "classes merged",
    "class deleted": "class deleted; image back in the inbox",
    "conflict settled": "label conflict settled",
    "moved in gallery": "moved to another class in the gallery",
    "moved from test results": "moved from a run's test pictures",
    "removed from test results": "removed from the dataset, from a run's test pictures",
    "undone": "change undone",
    "restored": "removed picture put back (undo)",
    "suggestion accepted": "a model's suggestion accepted",
    "kept after review": "label kept after the search for likely wrong labels",
    "moved after label review": "moved to the suggested class, from the search for likely wrong labels",
    "removed after label review": "removed from the dataset, from the search for likely wrong labels",
}


class BadInput(ValueError):
    """A form or query value that is not what the page sends; the message says so in plain words."""


def _id_or_none(value, what):
    """A whole-number id from a form value; an empty value is None."""
    if not (value or "").strip():
        return None
    number = whole_number(value, clamp=True)
    if number is None:
        raise BadInput(f"That is not a valid {what}; reload the page and try again.")
    return number


def _class_of(dataset, class_id):
    """The dataset's class with this id; a class that is gone (or of another dataset) is a plain-words error."""
    image_class = dataset.classes.filter(pk=class_id).first()
    if image_class is None:
        raise BadInput("That class no longer exists; reload the page to see the current classes.")
    return image_class


def _image_json(dataset, image, class_names=()):
    answer = {
        "id": image.id,
        "position": getattr(image, "position", image.id),
        "url": reverse("datasets:image", args=[dataset.pk, image.id]),
        "name": image.original_name,
        "width": image.width,
        "height": image.height,
        "suggested": image.suggested_label,
        "labelUrl": reverse("datasets:inbox_label", args=[dataset.pk, image.id]),
    }
    if getattr(image, "model_label", None):
        # Halves up, as "accept at or above N %" counts (predict_app/assist.py): round() takes 62.5 to 62, and
        # a picture shown "62 % sure" was filed at 63 %.
        answer["model"] = {"label": image.model_label, "percent": int(100 * image.model_confidence + 0.5),
                           "known": image.model_label in class_names}
    return answer


# With a model's suggestions (predict_app/assist.py) the inbox goes from the least sure picture to the surest,
# by the rank each suggestion got when they were made; pictures added since come after, by id. The page's
# cursor is that position, as it is the id without suggestions.
AFTER_RANKED = 10**12


def _unlabelled_after(dataset, after=0, held=(), job=None):
    """The next unlabelled images after the position `after`, leaving out the ones the page already holds."""
    images = dataset.images.filter(image_class__isnull=True).exclude(id__in=held)
    class_names = ()
    if job is not None:
        images = images.annotate(
            chosen=FilteredRelation("suggestions", condition=Q(suggestions__job=job)),
            position=Coalesce(F("chosen__rank"), Value(AFTER_RANKED) + F("id")),
            model_label=F("chosen__label"), model_confidence=F("chosen__confidence"))
        class_names = set(dataset.classes.values_list("name", flat=True))
    else:
        images = images.annotate(position=F("id"))
    images = images.filter(position__gt=after).order_by("position")
    return [_image_json(dataset, image, class_names)
            for image in images.only("id", "original_name", "width", "height", "suggested_label")[:QUEUE_SIZE]]


def _shown_suggestions(dataset):
    """The dataset's newest suggestion job if it is done, whose answers the inbox shows; None otherwise. The jobs
    are predict_app's (assist.py), read here through the relation, as a lower layer does not import a higher one."""
    job = dataset.suggestion_jobs.first()
    return job if job is not None and job.status == "done" else None


def _suggesting(dataset):
    """The address the inbox asks how a suggestion job on its way is doing; "" without one."""
    job = dataset.suggestion_jobs.first()
    return reverse("predict:suggest_progress", args=[dataset.pk]) if job is not None and job.is_active else ""


# The inbox

@login_required
def inbox(request, pk):
    dataset = get_dataset_for_user(request, pk)
    return render(request, "datasets_app/inbox.html", {  # the suggestions' card: predict_app's inbox_assist_card
        "dataset": dataset,
        "inbox_data": {
            "classes": list(dataset.classes.order_by("name").values("id", "name")),
            "queue": _unlabelled_after(dataset, job=_shown_suggestions(dataset)),
            "suggestingUrl": _suggesting(dataset),
            "remaining": dataset.unlabelled_count(),
            "queueUrl": reverse("datasets:inbox_queue", args=[dataset.pk]),
            "createClassUrl": reverse("datasets:inbox_create_class", args=[dataset.pk]),
        },
    })


@login_required
@require_GET
def inbox_queue(request, pk):
    """GET ?after=<id>&held=<id,id,...>: the next unlabelled images after that id, without those held."""
    dataset = get_dataset_for_user(request, pk)
    try:
        after = _id_or_none(request.GET.get("after"), "position") or 0
        held = [_id_or_none(value, "image") for value in request.GET.get("held", "").split(",") if value.strip()]
    except BadInput as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({
        "images": _unlabelled_after(dataset, after, held[:HELD_IDS_READ], _shown_suggestions(dataset)),
        "remaining": dataset.unlabelled_count(),
    })


@login_required
@require_POST
def inbox_label(request, pk, image_pk):
    """POST class_id: file the image under that class; an empty class_id puts it back in the inbox (undo)."""
    dataset = get_dataset_for_user(request, pk)
    image = get_object_or_404(dataset.images, pk=image_pk)
    try:
        class_id = _id_or_none(request.POST.get("class_id"), "class")
        image_class = None if class_id is None else _class_of(dataset, class_id)
        relabel(dataset, [image.id], image_class, request.user,
                action="undo" if image_class is None else "labelled in inbox")
    except (BadInput, LabelError) as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"label": image_class.name if image_class else "", "remaining": dataset.unlabelled_count()})


@login_required
@require_POST
def inbox_create_class(request, pk):
    """POST name: a new class, answered as JSON so the inbox can turn it into a button at once."""
    dataset = get_dataset_for_user(request, pk)
    try:
        image_class = create_class(dataset, request.POST.get("name", ""))
    except LabelError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"id": image_class.id, "name": image_class.name})


# Classes

@login_required
def classes(request, pk):
    dataset = get_dataset_for_user(request, pk)
    class_list = list(dataset.classes.annotate(
        image_count=Count("images"),
        conflict_count=Count("images", filter=Q(images__label_conflict=True)),
    ).order_by("name"))
    # A few thumbnails of every class in one query: the first images of each class by id.
    first_images = (dataset.images.filter(image_class__isnull=False)
                    .annotate(position=Window(RowNumber(), partition_by=F("image_class_id"), order_by=F("id").asc()))
                    .filter(position__lte=THUMBNAILS_PER_CLASS).only("id", "dataset_id", "image_class_id", "original_name"))
    thumbnails = {}
    for image in first_images:
        thumbnails.setdefault(image.image_class_id, []).append(image)
    for image_class in class_list:
        image_class.thumbnails = thumbnails.get(image_class.id, [])
    return render(request, "datasets_app/classes.html", {
        "dataset": dataset, "classes": class_list, "unlabelled": dataset.unlabelled_count(),
    })


def _class_action(request, pk, change):
    """Run `change(dataset)` for a form on the classes page; its message, or the error, is shown there."""
    dataset = get_dataset_for_user(request, pk)
    try:
        messages.info(request, change(dataset))
    except (BadInput, LabelError) as exc:
        messages.error(request, str(exc))
    return redirect("datasets:classes", pk=dataset.pk)


@login_required
@require_POST
def class_create(request, pk):
    def change(dataset):
        image_class = create_class(dataset, request.POST.get("name", ""))
        return f"The class “{image_class.name}” was added. Give it images in the inbox or the gallery."
    return _class_action(request, pk, change)


@login_required
@require_POST
def class_rename(request, pk, class_pk):
    def change(dataset):
        image_class = get_object_or_404(dataset.classes, pk=class_pk)
        old_name = image_class.name
        rename_class(image_class, request.POST.get("name", ""), request.user)
        if image_class.name == old_name:
            return f"“{old_name}” kept its name."
        return f"“{old_name}” is now called “{image_class.name}”."
    return _class_action(request, pk, change)


@login_required
@require_POST
def class_merge(request, pk, class_pk):
    def change(dataset):
        source = get_object_or_404(dataset.classes, pk=class_pk)
        target_id = _id_or_none(request.POST.get("into"), "class")
        if target_id is None:
            raise BadInput("Choose the class to merge into.")
        target = _class_of(dataset, target_id)
        moved = merge_classes(source, target, request.user)
        return f"“{source.name}” was merged into “{target.name}”: {count(moved, 'image')} moved."
    return _class_action(request, pk, change)


@login_required
@require_POST
def class_delete(request, pk, class_pk):
    def change(dataset):
        image_class = get_object_or_404(dataset.classes, pk=class_pk)
        moved = delete_class(image_class, request.user)
        return f"The class “{image_class.name}” was removed; its {count(moved, 'image')} went back to the inbox."
    return _class_action(request, pk, change)


# Label conflicts

def conflict_groups(dataset, page_number):
    """One page of conflicted pictures, oldest first, each as {sha256, images, classes}; three queries."""
    pictures = (dataset.images.filter(label_conflict=True).values("sha256")
                .annotate(first_id=Min("id")).order_by("first_id", "sha256"))
    page = Paginator(pictures, CONFLICTS_PER_PAGE).get_page(page_number)
    shas = [picture["sha256"] for picture in page.object_list]
    copies = {sha: [] for sha in shas}
    for image in dataset.images.filter(sha256__in=shas, image_class__isnull=False).select_related("image_class"):
        copies[image.sha256].append(image)
    groups = []
    for sha, images in copies.items():
        classes = {image.image_class_id: image.image_class for image in images}
        groups.append({"sha256": sha, "images": images, "classes": sorted(classes.values(), key=lambda c: c.name)})
    return page, groups


@login_required
def conflicts(request, pk):
    dataset = get_dataset_for_user(request, pk)
    page, groups = conflict_groups(dataset, page_number(request.GET.get("page")))
    return render(request, "datasets_app/conflicts.html", {"dataset": dataset, "page": page, "groups": groups})


@login_required
@require_POST
def conflict_resolve(request, pk):
    """POST sha256 with class_id (keep one copy there) or remove (drop every copy)."""
    dataset = get_dataset_for_user(request, pk)
    try:
        if request.POST.get("remove"):
            image_class = None
        else:
            class_id = _id_or_none(request.POST.get("class_id"), "class")
            if class_id is None:
                raise BadInput("Choose the class this picture belongs to.")
            image_class = _class_of(dataset, class_id)
        resolve_conflict(dataset, request.POST.get("sha256", ""), image_class, request.user)
    except (BadInput, LabelError) as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, f"Settled: the picture is now only in “{image_class.name}”." if image_class
                      else "Settled: the picture was removed from the dataset.")
    url = reverse("datasets:conflicts", args=[dataset.pk])
    page = whole_number(request.POST.get("page"), 1, clamp=True)
    return redirect(f"{url}?page={page}" if page else url)


# One picture at a time, from wherever it is shown (a run's test pictures, the gallery's large view): move
# it, send it to the inbox or remove it, then go back to that page, which offers to undo the last change
# (kept in the session, so an undo can only take back what this person just did).

UNDO_KEY = "picture_undo"
INBOX_CHOICE, REMOVE_CHOICE = "none", "remove"
# Where the change was made (the form's `from`), as the history records a move and a removal: the
# gallery's large view as the gallery's own bulk actions, a run's test pictures as such.
PLACES = {"results": ("moved from test results", "removed from test results"),
          "gallery": ("moved in gallery", "deleted")}


def _page_to_go_back_to(request, dataset):
    back = request.POST.get("next", "")
    if back.startswith("/") and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return back
    return reverse("datasets:gallery", args=[dataset.pk])


def pending_undo(request, dataset):
    """The last one-picture change in this dataset that can be undone, as {name, text}; None when there is none."""
    undo = request.session.get(UNDO_KEY)
    if not undo or undo.get("dataset") != dataset.id:
        return None
    if undo.get("removed"):
        done = f"“{undo['name']}” was removed from the dataset."
    else:
        done = (f"“{undo['name']}” was moved from {_label_words(undo['from_label'])} "
                f"to {_label_words(undo['to_label'])}.")
    return {"name": undo["name"], "text": done}


def _label_words(label):
    return f"“{label}”" if label else "the inbox"


@login_required
@require_POST
def picture_change(request, pk, image_pk):
    """POST to = a class id, "none" (the inbox) or "remove"; next = the page to go back to; from = "results"
    or "gallery" (PLACES)."""
    dataset = get_dataset_for_user(request, pk)
    choice = request.POST.get("to", "")
    try:
        if choice == REMOVE_CHOICE:
            to = REMOVE_CHOICE
        elif choice == INBOX_CHOICE:
            to = None
        else:
            class_id = _id_or_none(choice, "class")
            if class_id is None:
                raise BadInput("Choose a class, the inbox, or removing the picture.")
            to = _class_of(dataset, class_id)
        actions = PLACES.get(request.POST.get("from"), PLACES["results"])
        undo = change_one(dataset, image_pk, to, request.user, actions)
    except (BadInput, LabelError) as exc:
        messages.error(request, str(exc))
    else:
        if undo is None:
            where = _label_words(to.name if to else "")
            messages.info(request, f"Nothing changed: the picture was already in {where}.")
        else:
            request.session[UNDO_KEY] = undo
            messages.info(request, pending_undo(request, dataset)["text"] + " Runs already trained keep the labels "
                          "they learned from; the next one learns from the change.")
    return redirect(_page_to_go_back_to(request, dataset))


@login_required
@require_POST
def picture_undo(request, pk):
    """Take back the last one-picture change in this dataset (at most once)."""
    dataset = get_dataset_for_user(request, pk)
    undo = request.session.get(UNDO_KEY)
    try:
        if not undo or undo.get("dataset") != dataset.id:
            raise LabelError("There is nothing to undo: the last change was undone already, or made elsewhere.")
        request.session.pop(UNDO_KEY)  # once: a second press finds nothing to undo
        messages.info(request, undo_one(dataset, undo, request.user))
    except LabelError as exc:
        messages.error(request, str(exc))
    return redirect(_page_to_go_back_to(request, dataset))


# History

@login_required
def history(request, pk):
    dataset = get_dataset_for_user(request, pk)
    changes = dataset.label_changes.select_related("user").order_by("-at", "-id")
    page = Paginator(changes, CHANGES_PER_PAGE).get_page(page_number(request.GET.get("page")))
    for change in page.object_list:
        change.action_words = ACTION_WORDS.get(change.action, change.action)
    return render(request, "datasets_app/history.html", {"dataset": dataset, "page": page})


urlpatterns = [
    path("<int:pk>/inbox/", inbox, name="inbox"),
    path("<int:pk>/inbox/queue/", inbox_queue, name="inbox_queue"),
    path("<int:pk>/inbox/<int:image_pk>/label/", inbox_label, name="inbox_label"),
    path("<int:pk>/inbox/classes/", inbox_create_class, name="inbox_create_class"),
    path("<int:pk>/classes/", classes, name="classes"),
    path("<int:pk>/classes/new/", class_create, name="class_create"),
    path("<int:pk>/classes/<int:class_pk>/rename/", class_rename, name="class_rename"),
    path("<int:pk>/classes/<int:class_pk>/merge/", class_merge, name="class_merge"),
    path("<int:pk>/classes/<int:class_pk>/delete/", class_delete, name="class_delete"),
    path("<int:pk>/conflicts/", conflicts, name="conflicts"),
    path("<int:pk>/conflicts/resolve/", conflict_resolve, name="conflict_resolve"),
    path("<int:pk>/history/", history, name="history"),
    path("<int:pk>/images/<int:image_pk>/change/", picture_change, name="picture_change"),
    path("<int:pk>/images/undo/", picture_undo, name="picture_undo"),
]
