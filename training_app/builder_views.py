"""The layer-by-layer network builder: its page, and the check it asks for as the person edits.

The checking (mlcore.builder.summarise) works the shapes and parameters out without Keras, so a check
leaves nothing behind in the web process; these views only read the request, fetch the dataset
through the one ownership check, and answer.
"""
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.http import require_POST

from datasets_app.access import get_dataset_for_user
from mlcore.builder import SpecError, summarise
from mlcore.json_input import TooDeep, UnreadableJson, read_json
from mlcore.options import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, whole
from mlcore.words import LARGEST_WHOLE

from .forms import builder_options

MAX_CLASSES = 1000


@login_required
def builder_page(request, dataset_pk):
    dataset = get_dataset_for_user(request, dataset_pk)
    return render(request, "training_app/builder.html", {
        "dataset": dataset, "options": builder_options(dataset),
        "min_size": MIN_IMAGE_SIZE, "max_size": MAX_IMAGE_SIZE,
    })


@login_required
@require_POST
def builder_check(request):
    """Check a spec for an input size: the summary Keras would show, or the plain reason it cannot be built.

    A spec that cannot be built is an answer (200, "ok": false), not a failed request; only a body
    that is not a JSON object is a 400.
    """
    try:
        body = read_json(request.body)
    except TooDeep as error:
        return JsonResponse({"ok": False, "message": str(error)}, status=400)
    except UnreadableJson:
        body = None
    if not isinstance(body, dict):
        return JsonResponse({"ok": False, "message": "The request must be a JSON object."}, status=400)

    num_classes = body.get("num_classes", 2)
    if body.get("dataset") is not None:
        dataset_id = whole(body["dataset"], 0, LARGEST_WHOLE)
        if dataset_id is None:
            return JsonResponse({"ok": False, "message": "“dataset” must be a dataset's number."}, status=400)
        dataset = get_dataset_for_user(request, dataset_id)  # someone else's: 404
        # A dataset with fewer than two classes cannot be trained yet; its network is still worth drawing.
        num_classes = max(dataset.usable_class_count(), 2)
    image_size = whole(body.get("image_size", 32), MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    channels, num_classes = whole(body.get("channels", 3), 1, 3), whole(num_classes, 2, MAX_CLASSES)
    if image_size is None:
        return _answer(f"The image size must be a whole number from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels.")
    if channels not in (1, 3):
        return _answer("Images must be grayscale (1 channel) or colour (3 channels).")
    if num_classes is None:
        return _answer(f"The number of classes must be a whole number from 2 to {MAX_CLASSES}.")

    try:
        summary = summarise(body.get("spec"), (image_size, image_size, channels), num_classes)
    except SpecError as error:
        return _answer(error.message, error.layer)
    return JsonResponse({"ok": True, **summary})


def _answer(message, layer=None):
    return JsonResponse({"ok": False, "message": message, "layer": layer})


urlpatterns = [
    path("builder/check/", builder_check, name="builder_check"),
    path("builder/<int:dataset_pk>/", builder_page, name="builder"),
]
