"""The training form's previews: a few of the dataset's training images as the model will see them
(size, colour, how a picture that is not square is made square), and the random changes training
will make to them (augmentation).

The pixel work is in mlcore.preview, with the functions training itself uses; these views read
the query, fetch the dataset through the one ownership check and a few of its images, and answer
JSON with PNG data URLs. A bad setting is a 400 with a plain message, never a 500.
"""
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.http import require_GET

from datasets_app.access import get_dataset_for_user
from mlcore.images import ImageRejected, decode_image
from mlcore.options import (AUGMENTATIONS, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, RESIZE_MODES, SpecError,
                            normalise_augmentation)
from mlcore.preview import augment, model_inputs, png_data_url
from mlcore.words import whole_number

INPUT_SAMPLES = 6
AUGMENT_SAMPLES, AUGMENT_VARIANTS = 2, 4
MAX_PREVIEW_SEED = 1_000_000
NO_IMAGES = "This dataset has no training images yet, so there is nothing to show."


class BadParameter(ValueError):
    pass


def _whole(request, name, low, high, default=None, label=None):
    text = request.GET.get(name, "").strip()
    if text == "" and default is not None:
        return default
    label = label or name
    number = whole_number(text, low, high)
    if number is None:
        raise BadParameter(f"{label} must be a whole number from {low} to {high}.")
    return number


def _input_settings(request):
    size = _whole(request, "size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE, label="The image size")
    channels = whole_number(request.GET.get("channels", "3"))
    if channels not in (1, 3):
        raise BadParameter("The colour must be 1 (grayscale) or 3 (colour).")
    resize = request.GET.get("resize", "squash")
    if resize not in RESIZE_MODES:
        raise BadParameter(f"The way to make pictures square must be one of {', '.join(RESIZE_MODES)}.")
    return size, channels, resize


def _augmentation(request):
    found = {}
    for name, change in AUGMENTATIONS.items():
        param = change.param
        if param["kind"] == "choice":
            found[name] = request.GET.get(name, param["default"])
        else:
            found[name] = _whole(request, name, param["min"], param["max"], default=param["default"],
                                 label=f"“{param['label']}”")
    try:
        return normalise_augmentation(found)
    except SpecError as error:
        raise BadParameter(error.message) from None


def sample_images(dataset, count):
    """[(PIL image, class name)]: the first training images of each class in turn (one of every class,
    then a second of every class, ...), always the same ones for the same dataset."""
    rows = (dataset.trainable_images().filter(split="train")
            .annotate(nth=Window(RowNumber(), partition_by=[F("image_class_id")], order_by=F("id").asc()))
            .filter(nth__lte=count).order_by("nth", "image_class__name", "id")
            .values_list("file", "image_class__name"))
    found = []
    for name, label in rows[:count + 4]:  # a few spare, in case a file no longer reads
        try:
            with default_storage.open(name, "rb") as handle:
                found.append((decode_image(handle.read(), settings.MAX_IMAGE_PIXELS).image, label))
        except (OSError, ImageRejected):
            continue
        if len(found) == count:
            break
    return found


def _preview(view):
    """The dataset for the person asking (404 for anyone else's), and a 400 for a bad setting."""
    @login_required
    @require_GET
    def wrapped(request, dataset_pk):
        dataset = get_dataset_for_user(request, dataset_pk)
        try:
            return JsonResponse({"ok": True, **view(request, dataset)})
        except BadParameter as error:
            return JsonResponse({"ok": False, "message": str(error)}, status=400)
    wrapped.__name__ = view.__name__
    return wrapped


@_preview
def preview_input(request, dataset):
    size, channels, resize = _input_settings(request)
    samples = sample_images(dataset, INPUT_SAMPLES)
    arrays = model_inputs([image for image, _ in samples], size, channels, resize) if samples else []
    return {
        "size": size, "channels": channels, "resize": resize, "message": "" if samples else NO_IMAGES,
        "images": [{"src": png_data_url(array), "label": label} for array, (_, label) in zip(arrays, samples)],
    }


@_preview
def preview_augmentation(request, dataset):
    size, channels, resize = _input_settings(request)
    augmentation = _augmentation(request)
    seed = _whole(request, "variant", 0, MAX_PREVIEW_SEED, default=0, label="The variant")
    samples = sample_images(dataset, AUGMENT_SAMPLES)
    rows = []
    if samples:
        batch = model_inputs([image for image, _ in samples], size, channels, resize)
        changed = augment(batch, augmentation, AUGMENT_VARIANTS, seed=seed)
        rows = [{"label": label, "original": png_data_url(original),
                 "variants": [png_data_url(variant) for variant in variants]}
                for original, variants, (_, label) in zip(batch, changed, samples)]
    return {
        "size": size, "channels": channels, "resize": resize, "augmentation": augmentation,
        "on": any(value not in (0, "none") for value in augmentation.values()),
        "message": "" if samples else NO_IMAGES, "rows": rows,
    }


urlpatterns = [
    path("preview/<int:dataset_pk>/input/", preview_input, name="preview_input"),
    path("preview/<int:dataset_pk>/augment/", preview_augmentation, name="preview_augmentation"),
]
