"""Getting images in: new datasets from a zip or the sample, adding images to a dataset.

(Folder upload from the browser is being written here.)"""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.base import ContentFile
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from .forms import ZipUploadForm
from .ingestion import sample_digits_zip
from .models import Dataset, Upload
from .tasks import ingest


def _start_upload(dataset, name, fileobj):
    upload = Upload(dataset=dataset, original_name=name)
    upload.file.save(name, fileobj, save=False)
    upload.save()
    ingest.delay_on_commit(upload.id)
    return upload


@login_required
def dataset_list(request):
    form = ZipUploadForm()
    if request.method == "POST":
        form = ZipUploadForm(request.POST, request.FILES)
        if form.is_valid():
            with transaction.atomic():
                dataset = Dataset.objects.create(owner=request.user, name=form.dataset_name())
                _start_upload(dataset, form.cleaned_data["file"].name, form.cleaned_data["file"])
            return redirect("datasets:detail", pk=dataset.pk)
    datasets = Dataset.objects.visible_to(request.user).prefetch_related("uploads")
    return render(request, "datasets_app/list.html", {"datasets": datasets, "form": form})


@login_required
@require_POST
def create_sample(request):
    with transaction.atomic():
        dataset = Dataset.objects.create(owner=request.user, name="Handwritten digits (sample)")
        _start_upload(dataset, "digits.zip", ContentFile(sample_digits_zip()))
    messages.info(request, "The sample digits are being read; this takes a few seconds.")
    return redirect("datasets:detail", pk=dataset.pk)


def _placeholder(request, *args, **kwargs):
    return HttpResponse("Coming soon.")


urlpatterns = [
    path("", dataset_list, name="list"),
    path("sample/", create_sample, name="sample"),
    path("<int:pk>/add/", _placeholder, name="add"),
]
