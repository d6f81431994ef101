from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.base import ContentFile
from django.db import transaction
from django.http import FileResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from .forms import ZipUploadForm
from .ingestion import sample_digits_zip
from .models import Dataset, Upload
from .tasks import ingest

SAMPLES_PER_CLASS = 8


def get_dataset_for_user(request, pk):
    """The one way views fetch a dataset: anyone else's is a 404."""
    return get_object_or_404(Dataset.objects.visible_to(request.user), pk=pk)


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


@login_required
def dataset_detail(request, pk):
    dataset = get_dataset_for_user(request, pk)
    classes = list(dataset.classes.all())
    samples = {c.name: list(c.images.order_by("id")[:SAMPLES_PER_CLASS]) for c in classes}
    class_counts = dataset.class_counts()
    return render(request, "datasets_app/detail.html", {
        "dataset": dataset,
        "uploads": dataset.uploads.all(),
        "class_counts": class_counts,
        "chart": {"names": [n for n, _ in class_counts], "counts": [c for _, c in class_counts]},
        "samples": samples,
        "split_counts": dataset.split_counts(),
        "split_table": dataset.split_counts_by_class(),
        "runs": dataset.runs.all()[:20],
        "can_train": dataset.usable_class_count() >= 2 and not dataset.is_busy(),
    })


@login_required
def dataset_progress(request, pk):
    dataset = get_dataset_for_user(request, pk)
    return JsonResponse({"uploads": [
        {"id": u.id, "status": u.status, "status_label": u.get_status_display(), "done": u.done,
         "total": u.total, "percent": u.percent, "error": u.error}
        for u in dataset.uploads.all()
    ]})


@login_required
def image_file(request, pk, image_pk):
    dataset = get_dataset_for_user(request, pk)
    image = get_object_or_404(dataset.images, pk=image_pk)
    response = FileResponse(image.file.open("rb"))
    response["Cache-Control"] = "private, max-age=86400"
    return response


@login_required
@require_POST
def dataset_delete(request, pk):
    dataset = get_dataset_for_user(request, pk)
    if dataset.is_busy() or dataset.runs.filter(status__in=["queued", "running"]).exists():
        messages.error(request, "This dataset is still in use; wait for its uploads and runs to finish.")
        return redirect("datasets:detail", pk=pk)
    dataset.delete()
    messages.info(request, f"The dataset “{dataset.name}” was deleted.")
    return redirect("datasets:list")
