from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from dlsite.spreadsheets import csv_download
from mlcore.words import count, whole_number

from .access import get_dataset_for_user, images_for_user
from .labelling import LabelError, delete_upload, resplit
from .models import SPLITS, UploadOutcome
from .tasks import ingest

UPLOADS_SHOWN = 10
SIZES_CHARTED = 200  # distinct width x height pairs drawn in the size chart
REPORT_ROWS = 500  # rows per table on the report page; the CSV has them all


@login_required
def dataset_detail(request, pk):
    dataset = get_dataset_for_user(request, pk)
    busy = dataset.is_busy()
    split_table = dataset.split_counts_by_class()
    sizes = dataset.size_distribution()
    charted = sizes[:SIZES_CHARTED]
    return render(request, "datasets_app/detail.html", {
        "dataset": dataset,
        "uploads": dataset.uploads.all()[:UPLOADS_SHOWN],
        # While images are still being read, warnings such as "0 classes" would only alarm.
        "busy": busy,
        "warnings": [] if busy else dataset.warnings(),
        "split_table": split_table,
        "split_counts": dataset.split_counts(),
        "chart": {
            "names": list(split_table),
            "splits": {split: [row[split] for row in split_table.values()] for split in SPLITS},
            "sizes": {"width": [w for w, _, _ in charted], "height": [h for _, h, _ in charted],
                      "count": [n for _, _, n in charted]},
        },
        "common_sizes": sizes[:5],
        "distinct_sizes": len(sizes),
        # The tutorial's first look at the data: 25 training images with their labels.
        "grid": dataset.trainable_images().filter(split="train").select_related("image_class").order_by("?")[:25],
        "unlabelled": dataset.unlabelled_count(),
        "conflicts": dataset.conflict_count(),
        "versions": dataset.versions.all()[:5],
        "runs": dataset.runs.select_related("version")[:20],
        # Likely wrong labels (label_review.py): the runs whose network can be used, and the last search.
        "review_runs": dataset.runs.with_model().order_by("-created_at", "-id")[:20],
        "last_review": dataset.label_reviews.first(),
        "can_train": dataset.usable_class_count() >= 2 and not busy,
        "split_percent": {"val": round(dataset.val_fraction * 100), "test": round(dataset.test_fraction * 100)},
    })


@login_required
@require_POST
def dataset_resplit(request, pk):
    dataset = get_dataset_for_user(request, pk)
    val, test = (whole_number(request.POST.get(name), 0, 90) for name in ("val_percent", "test_percent"))
    try:
        if val is None or test is None:
            raise LabelError("Enter the shares as whole numbers from 0 to 90, such as 10 and 10.")
        resplit(dataset, val / 100, test / 100)
    except LabelError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, f"Split again: {100 - val - test} % training, {val:g} % validation, {test:g} % test. "
                               "Images in train/val/test folders, or moved by hand, kept their split.")
    return redirect("datasets:detail", pk=pk)


@login_required
def dataset_progress(request, pk):
    dataset = get_dataset_for_user(request, pk)
    return JsonResponse({"uploads": [
        {"id": u.id, "status": u.status, "status_label": u.get_status_display(), "done": u.done,
         "total": u.total, "percent": u.percent, "error": u.error}
        for u in dataset.uploads.all()[:UPLOADS_SHOWN]
    ]})


def _image_response(request, pk, image_pk, thumbnail):
    """An image's file, only for its owner. Image files never change, so browsers may keep them."""
    names = images_for_user(request).filter(pk=image_pk, dataset_id=pk).values_list(
        "file", "thumbnail").first()
    if names is None:
        raise Http404("No such image.")
    file_name, thumbnail_name = names
    try:
        handle = default_storage.open((thumbnail and thumbnail_name) or file_name, "rb")
    except FileNotFoundError:
        raise Http404("The image file is missing.") from None
    response = FileResponse(handle)
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


@login_required
def image_file(request, pk, image_pk):
    return _image_response(request, pk, image_pk, thumbnail=False)


@login_required
def image_thumbnail(request, pk, image_pk):
    return _image_response(request, pk, image_pk, thumbnail=True)


def get_upload_for_user(request, pk, upload_pk):
    dataset = get_dataset_for_user(request, pk)
    return get_object_or_404(dataset.uploads.select_related("dataset"), pk=upload_pk)


@login_required
def upload_report(request, pk, upload_pk):
    upload = get_upload_for_user(request, pk, upload_pk)
    outcomes = upload.outcomes.all()
    return render(request, "datasets_app/report.html", {
        "dataset": upload.dataset, "upload": upload,
        "rejected": outcomes.filter(kind=UploadOutcome.Kind.REJECTED)[:REPORT_ROWS],
        "duplicates": outcomes.filter(kind=UploadOutcome.Kind.DUPLICATE)[:REPORT_ROWS],
        "conflicts": outcomes.filter(kind=UploadOutcome.Kind.CONFLICT)[:REPORT_ROWS],
        "report_rows": REPORT_ROWS,
    })


@login_required
def upload_report_csv(request, pk, upload_pk):
    """Every file of the upload, one row each: accepted ones from its images, the rest from its outcomes."""
    upload = get_upload_for_user(request, pk, upload_pk)

    def rows():
        yield ["file", "outcome", "detail", "class", "split", "width", "height", "sha256"]
        conflicts = dict(upload.outcomes.filter(kind=UploadOutcome.Kind.CONFLICT).values_list("file_name", "detail"))
        images = upload.images.order_by("id").values_list(
            "original_name", "image_class__name", "split", "width", "height", "sha256")
        for name, label, split, width, height, sha in images.iterator(chunk_size=2000):
            if name in conflicts:
                outcome, detail = "label conflict", conflicts[name]
            else:
                outcome, detail = ("accepted" if label else "accepted, unlabelled"), ""
            yield [name, outcome, detail, label or "", split, width, height, sha]
        for outcome in upload.outcomes.exclude(kind=UploadOutcome.Kind.CONFLICT).iterator(chunk_size=2000):
            yield [outcome.file_name, outcome.get_kind_display().lower(), outcome.detail, "", "", "", "", ""]

    stem = slugify(upload.original_name.rsplit(".", 1)[0]) or "upload"
    return csv_download(rows(), f"report-{upload.id}-{stem}.csv")


@login_required
@require_POST
def dataset_delete(request, pk):
    """Delete the dataset, its images, runs and files; refused (saying what) while something still works on it."""
    dataset = get_dataset_for_user(request, pk)
    in_use = dataset.in_use()
    if in_use:
        messages.error(request, f"This dataset cannot be deleted yet: {'; '.join(in_use)}. "
                                "Wait for these to finish, or cancel them, then delete it.")
        return redirect("datasets:detail", pk=pk)
    dataset.delete_with_runs()
    messages.info(request, f"The dataset “{dataset.name}” was deleted, with its images and models.")
    return redirect("datasets:list")


@login_required
@require_POST
def upload_retry(request, pk, upload_pk):
    upload = get_upload_for_user(request, pk, upload_pk)
    if upload.can_retry and upload.retry():
        ingest.delay_on_commit(upload.id)
        messages.info(request, f"“{upload.original_name}” will be read again.")
    else:
        messages.error(request, f"“{upload.original_name}” cannot be read again: only a failed or cancelled "
                                "upload whose files are still here can.")
    return redirect("datasets:detail", pk=pk)


@login_required
@require_POST
def upload_cancel(request, pk, upload_pk):
    upload = get_upload_for_user(request, pk, upload_pk)
    if upload.cancel():
        messages.info(request, f"“{upload.original_name}” was cancelled; nothing from it was added.")
    else:
        messages.error(request, f"“{upload.original_name}” is no longer waiting, so it cannot be cancelled.")
    return redirect("datasets:detail", pk=pk)


@login_required
@require_POST
def upload_delete(request, pk, upload_pk):
    upload = get_upload_for_user(request, pk, upload_pk)
    if not upload.can_delete or upload.dataset.is_busy():
        # While another upload is read, it compares its files with these images: they stay until it ends.
        messages.error(request, f"“{upload.original_name}” cannot be deleted while images are being read into "
                                "this dataset; wait until that ends, then delete it.")
        return redirect("datasets:detail", pk=pk)
    images = upload.images.count()
    delete_upload(upload)
    messages.info(request, f"The upload “{upload.original_name}” was deleted, with the {count(images, 'image')} "
                           "it added.")
    return redirect("datasets:detail", pk=pk)
