"""Loaded models, kept warm in the web process between requests, and classifying uploaded pictures
there with bounded memory."""
import base64
import io
import threading
from collections import OrderedDict

from django.conf import settings

from dlsite import storage
from mlcore import explain
from mlcore.familiarity import doubt_in_words, sure_in_words
from mlcore.images import ImageRejected, ImageTooLarge, decode_reduced, image_to_array
from mlcore.serving import ModelInfo, Predictor
from mlcore.words import file_size

PREVIEW_SIDE = 256

KEEP_LOADED = 4  # models kept loaded in a process

_lock = threading.Lock()
_loaded: OrderedDict[tuple, Predictor] = OrderedDict()  # the least recently used first


# The columns of a run predictor_for reads: a request that loads only these makes one query, where
# each column left out costs a query of its own.
PREDICTOR_COLUMNS = ("id", "model_file", "attempts", "finished_at", "keep_unsure")


def predictor_for(run) -> Predictor:
    """The run's model, loaded once per process. Keyed by its storage name and attempt (a model kept
    is never replaced under the same name: each attempt has its own folder) and the run's end, which
    tells a run apart from an earlier one that had the same number."""
    # FileNotFoundError when the model is not kept any more; with a bucket, its folder is fetched
    # into this host's cache (dlsite/storage.py) when this host has no copy yet.
    path = run.model_path
    trees = _chosen_trees(run)
    key = (run.model_file, run.attempts, run.finished_at, trees)
    with _lock:  # one thread loads a model; the others wait for it instead of loading it too
        if key in _loaded:
            _loaded.move_to_end(key)
            return _loaded[key]
        try:
            trees_path = storage.local_path(trees) if trees else None
        except FileNotFoundError:  # removed from the server by hand: the network answers alone
            trees_path = None
        predictor = Predictor(path, ModelInfo.from_json(path.with_suffix(".json").read_text()), trees_path)
        _loaded[key] = predictor
        while len(_loaded) > KEEP_LOADED:
            _loaded.popitem(last=False)
        return predictor


def _chosen_trees(run) -> str:
    """The storage name of the boosted trees the owner chose to answer for the run (training_app's
    TreesTrial), "" when the network answers alone."""
    from training_app.models import TreesTrial

    trial = TreesTrial.objects.filter(run_id=run.id, chosen=True, status=TreesTrial.Status.READY).first()
    if trial is None or trial.model_file != run.model_file or not trial.file:
        return ""
    return trial.file


class FileTooBig(Exception):
    pass


def classify_uploads(predictor: Predictor, uploads, previews: bool = True, explain: bool = False,
                     keep_unsure=None) -> list[dict]:
    """One result per uploaded file, in order: its class and every probability, or a plain reason
    why it could not be used (the other files are still classified). With `explain`, also "heat_map":
    a PNG of the model's input with what the answer was based on drawn over it (why_png).
    `keep_unsure(result, bytes)`, when given (predict_app/assist.py, with the model owner's consent), is
    called for each "not sure" answer.

    Each picture is decoded small and turned at once into its model input and (for the page, not
    for programs) its preview, so only one decoded picture is alive at a time; the model then sees
    the small inputs in batches."""
    results, inputs, waiting, datas = [], [], [], []
    for upload in uploads:
        result, pixels, data = _prepare(upload, predictor.info, previews)
        results.append(result)
        if pixels is not None:
            inputs.append(pixels)
            waiting.append(result)
            datas.append(data if keep_unsure else None)  # the bytes live on only to be kept
    names = predictor.info.class_names
    probabilities, judgements = predictor.judge_arrays(inputs)
    for result, pixels, row, judgement, data in zip(waiting, inputs, probabilities, judgements, datas):
        if explain:  # only on request: a backward pass a picture, or a few dozen forward ones
            result["heat_map"] = why_png(predictor, pixels, judgement.best)
        ranked = sorted(zip(names, row.tolist()), key=lambda item: -item[1])
        result.update({"label": names[judgement.best], "probability": judgement.confidence,
                       "sure": sure_in_words(judgement.confidence), "doubt": judgement.doubt,
                       "doubt_words": doubt_in_words(judgement, row, names),
                       "probabilities": [{"name": n, "p": p, "percent": round(100 * p, 1)} for n, p in ranked]})
        if keep_unsure and judgement.doubt:
            keep_unsure(result, data)
    return results


def why_png(predictor: Predictor, pixels, class_index: int) -> bytes:
    """The model's input as a PNG with a heat map over it of what its answer `class_index` was based on
    (mlcore/explain.py). When boosted trees answer for the network, the map is of their answer."""
    trees = predictor.trees.probabilities if predictor.trees else None
    return explain.overlay(pixels, explain.heat_map(predictor.model, pixels, class_index, trees))


def png_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _prepare(upload, info: ModelInfo, preview: bool = True):
    """({"name"[, "preview"]}, the model input, the file's bytes) for a usable file, ({"name", "error"}, None,
    None) otherwise."""
    limit = settings.MAX_PREDICT_FILE_BYTES
    try:
        data = read_at_most(upload, limit)
        if not data:
            return {"name": upload.name, "error": "This file is empty."}, None, None
        side = max(*info.image_size, PREVIEW_SIDE if preview else 0)
        image = decode_reduced(data, side, settings.MAX_PREDICT_PIXELS, settings.MAX_IMAGE_PIXELS).image
    except FileTooBig:
        return {"name": upload.name, "error": f"This file is larger than {file_size(limit)}, the limit here. "
                                              "Resize the picture or save it smaller, and try again."}, None, None
    except ImageTooLarge as exc:
        return {"name": upload.name, "error": f"This picture is too large ({exc.width} × {exc.height} pixels); "
                                              f"the limit is {exc.limit:,} pixels. Resize it and try again."}, None, None
    except ImageRejected as exc:
        return {"name": upload.name, "error": f"This file could not be used: {exc}."}, None, None
    pixels = image_to_array(image, info.image_size, info.channels, info.resize)
    return {"name": upload.name, **({"preview": preview_data_url(image)} if preview else {})}, pixels, data


def read_at_most(upload, limit: int) -> bytearray:
    """The file's bytes, read chunk by chunk; FileTooBig as soon as they pass `limit`."""
    if upload.size is not None and upload.size > limit:
        raise FileTooBig
    data = bytearray()
    for chunk in upload.chunks():
        data += chunk
        if len(data) > limit:  # the size a client declares is not to be trusted
            raise FileTooBig
    return data


def preview_data_url(image) -> str:
    """A small PNG of the image as a data URL, so nothing uploaded here is stored."""
    image = image.copy()
    image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
