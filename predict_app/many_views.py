"""Classifying many pictures: a zip or a folder in, a job on the default worker, and the results to look
through and download. A folder arrives in parts exactly as a dataset's folder does (dlsite/uploads.py
describes the start / part / state / finish steps; static/js/upload.js sends both).
"""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST

from datasets_app.sources import fit_upload_name
from dlsite.spreadsheets import csv_download
from dlsite.uploads import folder_answer, refuse, refuse_form
from dlsite import quotas
from mlcore.familiarity import doubt_rule_in_words
from mlcore.explain import COLOURS_IN_WORDS
from mlcore.words import count, duration, page_number

from .forms import ManyFolderStartForm, ManyZipForm, ToInboxForm, UnsureForm
from .many import Refused, receiver, results_rows, send_to_inbox, sorted_zip
from .models import Classification
from .tasks import classify_many
from .views import predict_page
from .why import why_response, words_404

PAGE_SIZE = 120  # pictures on one page of results


def get_classification_for_user(request, pk) -> Classification:
    return get_object_or_404(Classification.objects.visible_to(request.user).select_related("run"), pk=pk)


@login_required
@require_POST
def start_zip(request):
    """A zip to classify; refused, the page comes back with the form saying why (as a dataset's zip does),
    at this address, so that the page's script shows that form in place."""
    form = ManyZipForm(request.POST, request.FILES, user=request.user)
    if form.is_valid() and (refusal := quotas.upload_refusal(request.user, form.cleaned_data["file"].size)):
        form.add_error(None, refusal)
    if not form.is_valid():
        return predict_page(request, many_form=form)
    upload = form.cleaned_data["file"]
    with transaction.atomic():
        job = Classification(owner=request.user, run=form.cleaned_data["run"], name=fit_upload_name(upload.name))
        job.zip_file.save(f"{slugify(upload.name.rsplit('.', 1)[0])[:60] or 'pictures'}.zip", upload, save=False)
        job.save()
        classify_many.delay_on_commit(job.id)
    return redirect("predict:classification", pk=job.pk)


def _folder_answer(job, resumed=False, status=200):
    return folder_answer(job, reverse("predict:folder_state", args=[job.id]),
                         reverse("predict:folder_finish", args=[job.id]), resumed, status)


@login_required
@require_POST
def start_folder(request):
    """A new classification of a folder; or, for a folder whose sending was cut off, that one again."""
    form = ManyFolderStartForm(request.POST, user=request.user)
    if not form.is_valid():
        return refuse_form(form)
    data = form.cleaned_data
    job = (Classification.objects.visible_to(request.user)
           .filter(status=Classification.Status.RECEIVING, run=data["run"], name=data["folder_name"],
                   expected_batches=data["batch_count"], fingerprint=data["fingerprint"]).first())
    if job is not None:
        return _folder_answer(job, resumed=True)
    if refusal := quotas.upload_refusal(request.user, data["total_bytes"]):
        return refuse(refusal, 413)
    job = Classification.objects.create(
        owner=request.user, run=data["run"], name=data["folder_name"], status=Classification.Status.RECEIVING,
        expected_batches=data["batch_count"], fingerprint=data["fingerprint"])
    return _folder_answer(job, status=201)


def _receiving(request, pk) -> Classification:
    job = get_classification_for_user(request, pk)
    if not job.expected_batches:
        raise Http404("This classification was not sent as a folder.")
    return job


def _queue(job):
    classify_many.delay_on_commit(job.id)


folder_state, folder_batch, folder_finish = receiver.views(
    _receiving, _queue, lambda job: reverse("predict:classification", args=[job.id]))


# ---------------------------------------------------------------------------------------------
# Results


def _status(job: Classification) -> dict:
    if job.status == job.Status.RECEIVING:
        text = "The pictures are still being sent from the browser that picked them."
    elif job.status == job.Status.QUEUED:
        text = "Waiting for a worker…"
    elif job.status == job.Status.RUNNING:
        text = (f"Classified {job.done:,} of {count(job.total, 'picture')}" if job.total
                else "Reading the pictures…")
        left = job.seconds_left()
        if left is not None:
            text += f", about {duration(left)} left"
    elif job.status == job.Status.DONE:
        text = f"Done: {job.summary()}."
    else:
        text = job.error or "It stopped."
    return {"status": job.status, "done": job.done, "total": job.total, "percent": job.percent, "text": text,
            "finished": job.is_finished}


@login_required
@require_GET
def classification_status(request, pk):
    return JsonResponse(_status(get_classification_for_user(request, pk)))


SORTS = {"unsure": ("confidence", "id"), "sure": ("-confidence", "id"), "name": ("name", "id")}


@login_required
@require_GET
def classification_detail(request, pk):
    job = get_classification_for_user(request, pk)
    shown_class = request.GET.get("class", "")
    if shown_class not in job.run.class_names:  # only a class of the model filters (NUL, or a stale link: all)
        shown_class = ""
    only_unsure = request.GET.get("unsure") == "1"
    sort = request.GET.get("sort") if request.GET.get("sort") in SORTS else "unsure"
    pictures = job.images.exclude(label="")
    if shown_class:
        pictures = pictures.filter(label=shown_class)
    if only_unsure:
        pictures = pictures & job.unsure_pictures()
    page = Paginator(pictures.order_by(*SORTS[sort]), PAGE_SIZE).get_page(
        page_number(request.GET.get("page")))
    counts = job.class_counts() if job.is_finished else []
    most = max((n for _, n in counts), default=0) or 1
    return render(request, "predict_app/classification.html", {
        "job": job, "status": _status(job), "page": page, "sort": sort, "shown_class": shown_class,
        "only_unsure": only_unsure, "unsure_form": UnsureForm(instance=job), "inbox_form": ToInboxForm(user=request.user),
        "unsure_count": job.unsure_pictures().count(),
        "counts": [(name, n, round(100 * n / most)) for name, n in counts],
        "problems": job.images.exclude(error="")[:200],
        "doubt_rule": doubt_rule_in_words(job.unsure_below),
        "colours_in_words": COLOURS_IN_WORDS,
    })


@login_required
@require_POST
def classification_unsure(request, pk):
    job = get_classification_for_user(request, pk)
    form = UnsureForm(request.POST, instance=job)
    if form.is_valid():
        form.save()
    else:
        messages.error(request, " ".join(form.errors.get("percent", [])))
    return redirect("predict:classification", pk=pk)


@login_required
@require_GET
def classification_csv(request, pk):
    job = get_classification_for_user(request, pk)
    return csv_download(results_rows(job), f"classification-{job.id}.csv")


@login_required
@require_GET
def classification_zip(request, pk):
    job = get_classification_for_user(request, pk)
    return FileResponse(sorted_zip(job), as_attachment=True, filename=f"classification-{job.id}-sorted.zip")


@login_required
@require_GET
def classification_picture(request, pk, picture_pk, thumbnail=False):
    job = get_classification_for_user(request, pk)
    picture = get_object_or_404(job.images, pk=picture_pk)
    name = (thumbnail and picture.thumbnail) or picture.file.name
    if not name:
        raise Http404("This file could not be used.")
    try:
        response = FileResponse(picture.file.storage.open(name, "rb"))
    except FileNotFoundError:
        raise Http404("The picture is missing.") from None
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


@login_required
@require_GET
def classification_why(request, pk, picture_pk):
    """The picture with a heat map of what the model's answer was based on (predict_app/why.py)."""
    job = get_classification_for_user(request, pk)
    picture = job.images.filter(pk=picture_pk).only("file", "label").first()
    if picture is None:
        return words_404("This picture is not in this classification.")
    if not picture.label or picture.label not in job.run.class_names:
        return words_404("The model gave this picture no answer.")
    return why_response(job.run, picture.file.name, job.run.class_names.index(picture.label))


@login_required
@require_POST
def classification_to_inbox(request, pk):
    """Send chosen pictures (or all those the model was not sure of) to a dataset's inbox, each with the
    model's class as a suggestion, so that they can be labelled and used in the next training."""
    job = get_classification_for_user(request, pk)
    form = ToInboxForm(request.POST, user=request.user)
    if not form.is_valid():
        messages.error(request, form.message())
        return redirect("predict:classification", pk=pk)
    if form.cleaned_data["which"] == "unsure":
        pictures = job.unsure_pictures()
    else:
        pictures = job.images.filter(id__in=form.cleaned_data["pictures"])
    dataset = form.cleaned_data["dataset"]
    try:
        upload = send_to_inbox(pictures, dataset, request.user,
                               f"from the classification “{job.name}”")
    except Refused as refused:
        messages.error(request, str(refused))
        return redirect("predict:classification", pk=pk)
    messages.info(request, f"{count(upload.expected_files, 'picture')} are being added to the inbox of “{dataset.name}”, "
                           "each with the class the model gave it, to accept with one key.")
    return redirect("datasets:detail", pk=dataset.pk)


@login_required
@require_POST
def classification_retry(request, pk):
    job = get_classification_for_user(request, pk)
    if job.retry():
        classify_many.delay_on_commit(job.id)
        messages.info(request, "Going on with the pictures not classified yet.")
    return redirect("predict:classification", pk=pk)


@login_required
@require_POST
def classification_delete(request, pk):
    job = get_classification_for_user(request, pk)
    if job.status == job.Status.RUNNING:
        messages.error(request, "A worker is classifying these pictures now; delete them once it has finished.")
        return redirect("predict:classification", pk=pk)
    name = job.name
    job.delete()
    messages.info(request, f"The classification “{name}” was deleted, with its pictures.")
    return redirect(reverse("predict:index") + "#many")



urlpatterns = [
    path("many/zip/", start_zip, name="many_zip"),
    path("many/folder/start/", start_folder, name="folder_start"),
    path("many/<int:pk>/folder/", folder_state, name="folder_state"),
    path("many/<int:pk>/folder/<int:index>/", folder_batch, name="folder_batch"),
    path("many/<int:pk>/folder/finish/", folder_finish, name="folder_finish"),
    path("many/<int:pk>/", classification_detail, name="classification"),
    path("many/<int:pk>/status/", classification_status, name="classification_status"),
    path("many/<int:pk>/unsure/", classification_unsure, name="classification_unsure"),
    path("many/<int:pk>/results.csv", classification_csv, name="classification_csv"),
    path("many/<int:pk>/sorted.zip", classification_zip, name="classification_zip"),
    path("many/<int:pk>/pictures/<int:picture_pk>/", classification_picture, name="classification_picture"),
    path("many/<int:pk>/pictures/<int:picture_pk>/thumbnail/", classification_picture, {"thumbnail": True},
         name="classification_thumbnail"),
    path("many/<int:pk>/pictures/<int:picture_pk>/why.png", classification_why, name="classification_why"),
    path("many/<int:pk>/to-inbox/", classification_to_inbox, name="classification_to_inbox"),
    path("many/<int:pk>/retry/", classification_retry, name="classification_retry"),
    path("many/<int:pk>/delete/", classification_delete, name="classification_delete"),
]
