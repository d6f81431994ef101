"""“Why this answer?” for a picture kept on the server (a test picture a run got wrong, a picture of a
classification): a PNG of it with a heat map of what the answer was based on (mlcore/explain.py), worked
out when asked. Addresses opened on their own: what is gone is said in plain text with a 404, never a 500."""
import logging

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import HttpResponse

from mlcore.images import ImageRejected, decode_reduced, image_to_array

from .services import predictor_for, why_png

logger = logging.getLogger(__name__)


def words_404(words: str) -> HttpResponse:
    return HttpResponse(words + "\n", status=404, content_type="text/plain; charset=utf-8")


def why_response(run, file_name: str, class_index: int) -> HttpResponse:
    """The heat map of `run`'s answer `class_index` for the kept picture `file_name`, decoded as the
    classify page and the classifying worker decode pictures (predict_app.services, predict_app.many)."""
    if not run.has_model:
        return words_404("This run has no model any more.")
    try:
        predictor = predictor_for(run)
    except FileNotFoundError:
        return words_404("The model file of this run is missing from the server.")
    except Exception:  # a damaged file (Keras, JSON and zip each raise their own): logged, and said in words
        logger.exception("The model of run %s could not be loaded to explain an answer", run.pk)
        return words_404("The model of this run cannot be loaded.")
    info = predictor.info
    if not isinstance(class_index, int) or not 0 <= class_index < len(info.class_names):
        return words_404("This run's model does not have the class it answered.")
    try:
        with default_storage.open(file_name, "rb") as handle:
            data = handle.read()
    except OSError:
        return words_404("The picture's file is missing from the server.")
    try:
        image = decode_reduced(data, max(info.image_size), settings.MAX_PREDICT_PIXELS, settings.MAX_IMAGE_PIXELS).image
    except ImageRejected:
        return words_404("The picture's file cannot be read any more.")
    pixels = image_to_array(image, info.image_size, info.channels, info.resize)
    response = HttpResponse(why_png(predictor, pixels, class_index), content_type="image/png")
    # Worked out again when asked after an hour: cheap enough, and nothing to invalidate.
    response["Cache-Control"] = "private, max-age=3600"
    return response
