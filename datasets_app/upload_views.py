"""Getting images in: new datasets from a zip, a folder or the sample; adding images to a dataset.

A folder from the browser arrives in batches (Django takes at most
DATA_UPLOAD_MAX_NUMBER_FILES files per request, and keeps only a file's base name,
so each file's path inside the folder travels in a parallel field):

  start   announces the folder (name, file count, batch count, bytes) and answers the
          upload, with the batches the server already has when the same folder is
          sent again after a page reload or a lost connection;
  batch   stores batch <index> once; sending it again is harmless;
  state   which batches have arrived, asked before retrying after a network error;
  finish  once every batch is there, queues the ingestion.

Refusals are JSON with a plain-words `message` and a 4xx status.
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.base import ContentFile
from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST

from .forms import (
    AddZipForm,
    FolderBatchForm,
    FolderStartForm,
    LooseImagesForm,
    NewFolderDatasetForm,
    ZipUploadForm,
)
from .folder_upload import BatchRefused, discard_receiving, finish_receiving, receive_batch, save_batch
from .sample_data import sample_digits_zip
from .starting import start_zip_upload
from .sources import archive_limits, fit_upload_name
from dlsite.uploads import refusing_too_many_files, too_many_files_message
from housekeeping_app import quotas

from .models import Dataset, Upload
from .tasks import ingest
from .access import datasets_for_user, get_dataset_for_user


def _within_quota(form, user, field):
    """Valid, and within the person's limits (housekeeping_app.quotas); else the form says which limit."""
    if not form.is_valid():
        return False
    sent = form.cleaned_data[field]
    refusal = quotas.upload_refusal(user, sum(f.size for f in sent) if isinstance(sent, list) else sent.size)
    if refusal:
        form.add_error(None, refusal)
    return not refusal


def _limits():
    """What the upload page's JavaScript needs to know to cut a folder into batches the server takes."""
    return {"max_files": settings.DATA_UPLOAD_MAX_NUMBER_FILES, "max_file_bytes": archive_limits().max_entry_bytes}


@login_required
def dataset_list(request):
    form = ZipUploadForm()
    if request.method == "POST":
        form = ZipUploadForm(request.POST, request.FILES)
        if _within_quota(form, request.user, "file"):
            with transaction.atomic():
                dataset = Dataset.objects.create(owner=request.user, name=form.dataset_name(),
                                                 **form.split_fractions())
                start_zip_upload(dataset, form.cleaned_data["file"].name, form.cleaned_data["file"], request.user)
            return redirect("datasets:detail", pk=dataset.pk)
    datasets = datasets_for_user(request).prefetch_related("uploads")
    return render(request, "datasets_app/list.html", {"datasets": datasets, "form": form, "limits": _limits()})


@login_required
@require_POST
def create_sample(request):
    if refusal := quotas.upload_refusal(request.user):
        messages.error(request, refusal)
        return redirect("datasets:list")
    with transaction.atomic():
        dataset = Dataset.objects.create(owner=request.user, name="Handwritten digits (sample)")
        start_zip_upload(dataset, "digits.zip", ContentFile(sample_digits_zip()), request.user)
    messages.info(request, "The sample digits are being read; this takes a few seconds.")
    return redirect("datasets:detail", pk=dataset.pk)


@login_required
def add_images(request, pk):
    """Add a zip, a folder or loose images to a dataset. The zip is posted here; folders and
    loose images go through the folder endpoints (or `add_loose_images` without JavaScript)."""
    dataset = get_dataset_for_user(request, pk)
    form = AddZipForm()
    if request.method == "POST":
        form = AddZipForm(request.POST, request.FILES)
        if _within_quota(form, request.user, "file"):
            with transaction.atomic():
                start_zip_upload(dataset, form.cleaned_data["file"].name, form.cleaned_data["file"], request.user)
            return redirect("datasets:detail", pk=dataset.pk)
    return _add_page(request, dataset, form, LooseImagesForm())


def _add_page(request, dataset, form, images_form):
    unfinished = dataset.uploads.filter(kind=Upload.Kind.FOLDER, status=Upload.Status.RECEIVING)
    val, test = round(dataset.val_fraction * 100), round(dataset.test_fraction * 100)
    return render(request, "datasets_app/add.html", {
        "dataset": dataset, "form": form, "images_form": images_form, "limits": _limits(), "unfinished": unfinished,
        "split": {"train": 100 - val - test, "val": val, "test": test},
    })


def _too_many_loose_images(request, pk):
    messages.error(request, f"{too_many_files_message()} Pick fewer images, or add them as a folder.")
    return redirect("datasets:add", pk=pk)


@refusing_too_many_files(_too_many_loose_images)
@login_required
@require_POST
def add_loose_images(request, pk):
    """The no-JavaScript way to add loose images: one request, so at most DATA_UPLOAD_MAX_NUMBER_FILES."""
    dataset = get_dataset_for_user(request, pk)
    images_form = LooseImagesForm(request.POST, request.FILES)
    if not _within_quota(images_form, request.user, "images"):
        return _add_page(request, dataset, AddZipForm(), images_form)
    files = images_form.cleaned_data["images"]
    with transaction.atomic():
        upload = Upload.objects.create(
            dataset=dataset, kind=Upload.Kind.FOLDER, status=Upload.Status.QUEUED, created_by=request.user,
            original_name=_loose_images_name(files[0].name, len(files)), expected_files=len(files),
            expected_batches=1, received_batches=[0], expected_bytes=sum(f.size for f in files),
            received_bytes=sum(f.size for f in files))
        save_batch(upload, 0, [(f.name, f) for f in files])
        ingest.delay_on_commit(upload.id)
    return redirect("datasets:detail", pk=dataset.pk)


def _loose_images_name(first_name, count):
    return fit_upload_name(first_name if count == 1 else f"{first_name} and {count - 1} more")


def _refuse(message, status=400, **extra):
    return JsonResponse({"message": message, **extra}, status=status)


def _folder_answer(upload, resumed=False, status=200):
    dataset_id = upload.dataset_id
    state_url = reverse("datasets:folder_state", args=[dataset_id, upload.id])
    return JsonResponse({
        "upload": upload.id,
        "resumed": resumed,
        "expected_batches": upload.expected_batches,
        "received_batches": upload.received_batches,
        "dataset_name": upload.dataset.name,
        "state_url": state_url,
        "batch_url_prefix": state_url,  # batch <i> is at <prefix><i>/
        "finish_url": reverse("datasets:folder_finish", args=[dataset_id, upload.id]),
        "dataset_url": reverse("datasets:detail", args=[dataset_id]),
    }, status=status)


def _unfinished_folder(uploads, form):
    """An upload of this same folder that has not finished arriving, to continue instead of starting over."""
    return uploads.filter(
        kind=Upload.Kind.FOLDER, status=Upload.Status.RECEIVING, original_name=form.cleaned_data["folder_name"],
        expected_files=form.cleaned_data["file_count"], expected_batches=form.cleaned_data["batch_count"],
        expected_bytes=form.cleaned_data["total_bytes"], fingerprint=form.cleaned_data["fingerprint"],
    ).select_related("dataset").order_by("-created_at", "-id").first()


def _new_folder_upload(dataset, form, user):
    return Upload.objects.create(
        dataset=dataset, kind=Upload.Kind.FOLDER, status=Upload.Status.RECEIVING, created_by=user,
        original_name=form.cleaned_data["folder_name"], expected_files=form.cleaned_data["file_count"],
        expected_batches=form.cleaned_data["batch_count"], expected_bytes=form.cleaned_data["total_bytes"],
        fingerprint=form.cleaned_data["fingerprint"])


def _refuse_form(form):
    return _refuse(form.message(), 413 if form.is_too_large() else 400)


@login_required
@require_POST
def start_folder_dataset(request):
    """A new dataset from a folder; or, for a folder whose sending was cut off, that dataset's upload again."""
    form = NewFolderDatasetForm(request.POST)
    if not form.is_valid():
        return _refuse_form(form)
    upload = _unfinished_folder(Upload.objects.filter(dataset__in=Dataset.objects.visible_to(request.user)), form)
    if upload is not None:
        return _folder_answer(upload, resumed=True)
    if refusal := quotas.upload_refusal(request.user, form.cleaned_data["total_bytes"]):
        return _refuse(refusal, 413)
    with transaction.atomic():
        dataset = Dataset.objects.create(owner=request.user, name=form.dataset_name(), **form.split_fractions())
        upload = _new_folder_upload(dataset, form, request.user)
    return _folder_answer(upload, status=201)


@login_required
@require_POST
def start_folder(request, pk):
    """Add a folder (or loose images, sent the same way) to a dataset."""
    dataset = get_dataset_for_user(request, pk)
    form = FolderStartForm(request.POST)
    if not form.is_valid():
        return _refuse_form(form)
    upload = _unfinished_folder(dataset.uploads.all(), form)
    if upload is not None:
        return _folder_answer(upload, resumed=True)
    if refusal := quotas.upload_refusal(request.user, form.cleaned_data["total_bytes"]):
        return _refuse(refusal, 413)
    return _folder_answer(_new_folder_upload(dataset, form, request.user), status=201)


def _folder_upload(request, pk, upload_pk):
    dataset = get_dataset_for_user(request, pk)
    return get_object_or_404(dataset.uploads, pk=upload_pk, kind=Upload.Kind.FOLDER)


@login_required
@require_GET
def folder_state(request, pk, upload_pk):
    upload = _folder_upload(request, pk, upload_pk)
    return JsonResponse({"status": upload.status, "expected_batches": upload.expected_batches,
                         "received_batches": upload.received_batches})


def _too_many_files_in_batch(request, *args, **kwargs):
    return _refuse(too_many_files_message())


@refusing_too_many_files(_too_many_files_in_batch)
@login_required
@require_POST
def folder_batch(request, pk, upload_pk, index):
    upload = _folder_upload(request, pk, upload_pk)
    form = FolderBatchForm(upload, index, request.POST, request.FILES)
    if not form.is_valid():
        return _refuse_form(form)
    try:
        stored, upload = receive_batch(upload, index, form.batch)
    except BatchRefused as refused:
        return _refuse(str(refused), refused.status)
    return JsonResponse({"stored": stored, "received_batches": upload.received_batches})


@login_required
@require_POST
def folder_finish(request, pk, upload_pk):
    try:
        upload, ready_now = finish_receiving(_folder_upload(request, pk, upload_pk))
    except BatchRefused as refused:
        upload = _folder_upload(request, pk, upload_pk)
        return _refuse(str(refused), refused.status, missing_batches=upload.missing_batches())
    # Finishing twice (the answer to the first was lost) is harmless: the images are read once.
    if ready_now:
        ingest.delay_on_commit(upload.id)
    return JsonResponse({"status": upload.status, "url": reverse("datasets:detail", args=[upload.dataset_id])})


@login_required
@require_POST
def folder_discard(request, pk, upload_pk):
    if discard_receiving(_folder_upload(request, pk, upload_pk)):
        messages.info(request, "The unfinished folder was removed; nothing from it was added.")
    return redirect("datasets:detail", pk=pk)


urlpatterns = [
    path("", dataset_list, name="list"),
    path("sample/", create_sample, name="sample"),
    path("folder/start/", start_folder_dataset, name="folder_start_new"),
    path("<int:pk>/add/", add_images, name="add"),
    path("<int:pk>/add/images/", add_loose_images, name="add_loose_images"),
    path("<int:pk>/add/folder/start/", start_folder, name="folder_start"),
    path("<int:pk>/uploads/<int:upload_pk>/folder/", folder_state, name="folder_state"),
    path("<int:pk>/uploads/<int:upload_pk>/folder/<int:index>/", folder_batch, name="folder_batch"),
    path("<int:pk>/uploads/<int:upload_pk>/folder/finish/", folder_finish, name="folder_finish"),
    path("<int:pk>/uploads/<int:upload_pk>/folder/discard/", folder_discard, name="folder_discard"),
]
