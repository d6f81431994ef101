"""Getting images in: new datasets from a zip, a folder or the sample; adding images to a dataset.

A folder from the browser arrives in parts, as dlsite/uploads.py describes; the start views here make
(or find again) the upload, the receiver in folder_upload.py stores the parts.
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.base import ContentFile
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from .forms import AddZipForm, LooseImagesForm, NewFolderDatasetForm, ZipUploadForm
from .folder_upload import receiver, save_batch
from .sample_data import sample_digits_zip
from .starting import start_zip_upload
from .sources import fit_upload_name
from dlsite.uploads import (
    FolderStartForm,
    archive_limits,
    folder_answer,
    refuse,
    refuse_form,
    refusing_too_many_files,
    too_many_files_message,
)
from dlsite import quotas

from .models import Dataset, Upload
from .tasks import ingest
from .access import datasets_for_user, get_dataset_for_user


def _within_quota(form, user, field):
    """Valid, and within the person's limits (dlsite/quotas.py); else the form says which limit."""
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


def _folder_answer(upload, resumed=False, status=200):
    dataset_id = upload.dataset_id
    return folder_answer(
        upload, reverse("datasets:folder_state", args=[dataset_id, upload.id]),
        reverse("datasets:folder_finish", args=[dataset_id, upload.id]), resumed, status,
        dataset_name=upload.dataset.name, dataset_url=reverse("datasets:detail", args=[dataset_id]))


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


@login_required
@require_POST
def start_folder_dataset(request):
    """A new dataset from a folder; or, for a folder whose sending was cut off, that dataset's upload again."""
    form = NewFolderDatasetForm(request.POST)
    if not form.is_valid():
        return refuse_form(form)
    upload = _unfinished_folder(Upload.objects.filter(dataset__in=Dataset.objects.visible_to(request.user)), form)
    if upload is not None:
        return _folder_answer(upload, resumed=True)
    if refusal := quotas.upload_refusal(request.user, form.cleaned_data["total_bytes"]):
        return refuse(refusal, 413)
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
        return refuse_form(form)
    upload = _unfinished_folder(dataset.uploads.all(), form)
    if upload is not None:
        return _folder_answer(upload, resumed=True)
    if refusal := quotas.upload_refusal(request.user, form.cleaned_data["total_bytes"]):
        return refuse(refusal, 413)
    return _folder_answer(_new_folder_upload(dataset, form, request.user), status=201)


def _folder_upload(request, pk, upload_pk):
    dataset = get_dataset_for_user(request, pk)
    return get_object_or_404(dataset.uploads, pk=upload_pk, kind=Upload.Kind.FOLDER)


def _queue(upload):
    ingest.delay_on_commit(upload.id)


folder_state, folder_batch, folder_finish = receiver.views(
    _folder_upload, _queue, lambda upload: reverse("datasets:detail", args=[upload.dataset_id]))


@login_required
@require_POST
def folder_discard(request, pk, upload_pk):
    if receiver.discard(_folder_upload(request, pk, upload_pk)):
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
