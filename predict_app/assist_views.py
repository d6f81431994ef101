"""Model-assisted labelling, the pages (predict_app/assist.py does the work): suggesting classes for a
dataset's inbox with a trained model and accepting them in one step, and the pictures a model was not
sure about, kept with its owner's consent and sent to an inbox from their own page."""
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, FileResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST

from datasets_app.access import datasets_for_user, get_dataset_for_user
from mlcore.words import count, page_number, whole_number
from training_app.access import get_run_for_user
from training_app.models import TrainingRun

from .assist import AssistError, accept_at_or_above, current_job, send_unsure_to_inbox, start_suggesting, undo_accept
from .many import Refused
from .models import SuggestionJob

UNDO_KEY = "suggestions_undo"
DEFAULT_LINE = 90  # the percentage the accept form offers first
MODELS_LISTED = 50
UNSURE_PER_PAGE = 60


def _models_for(request, dataset):
    """The person's runs with a model that know at least one of the dataset's classes (all of them while
    the dataset has none), its own runs first, newest first: [(run, classes in common)]."""
    names = set(dataset.classes.values_list("name", flat=True))
    runs = (TrainingRun.objects.visible_to(request.user).with_model().select_related("dataset")
            .order_by("-created_at", "-id")[:MODELS_LISTED])
    found = [(run, len(names & set(run.class_names or ()))) for run in runs]
    if names:
        found = [(run, shared) for run, shared in found if shared or run.dataset_id == dataset.id]
    return sorted(found, key=lambda item: item[0].dataset_id != dataset.id)


def inbox_assist(request, dataset) -> dict:
    """What the inbox shows of the model's suggestions: the job, the models to choose from, the counts."""
    job = current_job(dataset)
    shown = job if job is not None and job.status == SuggestionJob.Status.DONE else None
    assist = {"job": job, "shown": shown, "models": _models_for(request, dataset), "line": DEFAULT_LINE,
              "progress_url": reverse("predict:suggest_progress", args=[dataset.pk]) if job and job.is_active else "",
              "undo": None}
    if shown is not None:
        waiting = shown.suggestions.filter(image__image_class__isnull=True)
        names = set(dataset.classes.values_list("name", flat=True))
        assist["waiting"] = waiting.count()
        assist["missing"] = sorted(set(waiting.exclude(label__in=names).values_list("label", flat=True)))
        assist["unseen"] = dataset.unlabelled_count() - assist["waiting"]
    undo = request.session.get(UNDO_KEY)
    if undo and undo.get("dataset") == dataset.id:
        assist["undo"] = sum(len(ids) for ids in undo["moved"].values())
    return assist


def _back_to_inbox(dataset):
    return redirect("datasets:inbox", pk=dataset.pk)


@login_required
@require_POST
def suggest_start(request, dataset_pk):
    """POST run: that model suggests a class for every picture of the inbox, on a worker."""
    dataset = get_dataset_for_user(request, dataset_pk)
    run_id = whole_number(request.POST.get("run"))
    run = TrainingRun.objects.visible_to(request.user).filter(pk=run_id).first() if run_id is not None else None
    try:
        if run is None:
            raise AssistError("Choose one of your trained models.")
        start_suggesting(dataset, run, request.user)
    except AssistError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, f"Run {run.id}'s model is looking at the pictures of the inbox; its suggestions "
                               "show here when it is done.")
    return _back_to_inbox(dataset)


@login_required
@require_GET
def suggest_progress(request, dataset_pk):
    """How far the dataset's suggestion job is, for the inbox's progress bar."""
    dataset = get_dataset_for_user(request, dataset_pk)
    job = current_job(dataset)
    if job is None:
        raise Http404("No suggestions here.")
    return JsonResponse({"status": job.status, "statusWords": job.get_status_display(), "done": job.done,
                         "total": job.total, "percent": job.percent, "active": job.is_active, "error": job.error})


@login_required
@require_POST
def suggest_accept(request, dataset_pk):
    """POST at_least (a percentage): every inbox picture the model is at least that sure of is filed under
    its suggested class, each recorded in the label history; the page offers to undo it."""
    dataset = get_dataset_for_user(request, dataset_pk)
    job = current_job(dataset)
    percent = whole_number(request.POST.get("at_least"), 0, 100)
    try:
        if job is None or job.status != SuggestionJob.Status.DONE:
            raise AssistError("There are no finished suggestions for this inbox: choose a model to suggest first.")
        if percent is None:
            raise AssistError("Give a whole percentage from 0 to 100.")
        outcome = accept_at_or_above(dataset, job, percent, request.user)
    except AssistError as exc:
        messages.error(request, str(exc))
        return _back_to_inbox(dataset)
    moved = sum(len(ids) for ids in outcome["moved"].values())
    words = [f"{count(moved, 'picture')} filed under the model's suggestion (at least {percent} % sure)."]
    if outcome["moved"]:
        request.session[UNDO_KEY] = {"dataset": dataset.id, "moved": outcome["moved"]}
        words.append("Each is in the label history; you can undo this below.")
    if outcome["missing"]:
        lacking = ", ".join(f"“{label}” ({n})" for label, n in sorted(outcome["missing"].items()))
        words.append(f"Not accepted, since this dataset has no such class: {lacking}. Add the class to accept them.")
    messages.info(request, " ".join(words))
    return _back_to_inbox(dataset)


@login_required
@require_POST
def suggest_undo(request, dataset_pk):
    """Put the pictures of the last bulk accept in this dataset back in the inbox (once)."""
    dataset = get_dataset_for_user(request, dataset_pk)
    undo = request.session.get(UNDO_KEY)
    if not undo or undo.get("dataset") != dataset.id:
        messages.error(request, "There is nothing to undo: the last accept was undone already, or made elsewhere.")
    else:
        request.session.pop(UNDO_KEY)
        back = undo_accept(dataset, undo["moved"], request.user)
        messages.info(request, f"Undone: {count(back, 'picture')} back in the inbox.")
    return _back_to_inbox(dataset)


# Pictures a model was not sure about

def _model_run(request, run_pk):
    run = get_run_for_user(request, run_pk)
    if not run.has_model:
        raise Http404("This run has no trained model.")
    return run


@login_required
@require_POST
def unsure_setting(request, run_pk):
    """POST keep = "on" or nothing: the owner's consent to keep the pictures this model was not sure about."""
    run = _model_run(request, run_pk)
    keep = request.POST.get("keep") == "on"
    TrainingRun.objects.filter(pk=run.pk).update(keep_unsure=keep)
    if keep:
        messages.info(request, f"From now on, pictures this model is not sure about are kept for "
                               f"{settings.UNSURE_KEEP_DAYS} days, so you can label them.")
    else:
        messages.info(request, "Pictures this model is not sure about are no longer kept. Those kept already stay "
                               "until you send or remove them, or their time is up.")
    return redirect("training:detail", pk=run.pk)


@login_required
def unsure_list(request, run_pk):
    run = _model_run(request, run_pk)
    page = Paginator(run.unsure_pictures.all(), UNSURE_PER_PAGE).get_page(page_number(request.GET.get("page")))
    return render(request, "predict_app/unsure.html", {
        "run": run, "page": page, "keep_days": settings.UNSURE_KEEP_DAYS,
        "datasets": datasets_for_user(request).order_by("name"),
    })


@login_required
def unsure_picture(request, run_pk, unsure_pk):
    run = _model_run(request, run_pk)
    picture = get_object_or_404(run.unsure_pictures, pk=unsure_pk)
    try:
        handle = picture.file.storage.open(picture.file.name, "rb")
    except FileNotFoundError:
        raise Http404("The picture's file is missing.") from None
    response = FileResponse(handle)
    response["Cache-Control"] = "private, max-age=3600"
    return response


@login_required
@require_POST
def unsure_send(request, run_pk):
    """POST picture (one id) or all, and dataset: those kept pictures go to that dataset's inbox; with remove,
    they are removed instead."""
    run = _model_run(request, run_pk)
    back = redirect("predict:unsure", run_pk=run.pk)
    if request.POST.get("all"):
        pictures = run.unsure_pictures.all()
    else:
        picture_id = whole_number(request.POST.get("picture"))
        pictures = run.unsure_pictures.filter(pk=picture_id) if picture_id is not None else run.unsure_pictures.none()
    if request.POST.get("remove"):
        removed = len(pictures)
        for picture in pictures:  # one by one, so that each file goes too (models.py)
            picture.delete()
        messages.info(request, f"{count(removed, 'picture')} removed.")
        return back
    dataset_id = whole_number(request.POST.get("dataset"))
    dataset = datasets_for_user(request).filter(pk=dataset_id).first() if dataset_id is not None else None
    if dataset is None:
        messages.error(request, "Choose one of your datasets to send the pictures to.")
        return back
    try:
        upload = send_unsure_to_inbox(run, pictures, dataset, request.user)
    except Refused as refused:
        messages.error(request, str(refused) if pictures.exists() else
                       "There is no such picture any more: it was sent, removed, or its time was up.")
        return back
    messages.info(request, f"{count(upload.expected_files, 'picture')} are being added to the inbox of "
                           f"“{dataset.name}”, each with the class the model would have given it.")
    return back


urlpatterns = [
    path("inbox/<int:dataset_pk>/suggest/", suggest_start, name="suggest"),
    path("inbox/<int:dataset_pk>/suggest/progress/", suggest_progress, name="suggest_progress"),
    path("inbox/<int:dataset_pk>/suggest/accept/", suggest_accept, name="suggest_accept"),
    path("inbox/<int:dataset_pk>/suggest/undo/", suggest_undo, name="suggest_undo"),
    path("models/<int:run_pk>/unsure/", unsure_list, name="unsure"),
    path("models/<int:run_pk>/unsure/keep/", unsure_setting, name="unsure_setting"),
    path("models/<int:run_pk>/unsure/send/", unsure_send, name="unsure_send"),
    path("models/<int:run_pk>/unsure/<int:unsure_pk>/", unsure_picture, name="unsure_picture"),
]
