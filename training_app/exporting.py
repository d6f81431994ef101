"""Making one export of a run's model (the task's work): the run's pictures and model handed to
mlcore/formats.py, which writes the format and checks it in a fresh process; the outcome is stored
on the ModelExport row. The format is written and checked in a local scratch folder; only its zip
is kept (dlsite/storage.py), under models/<run id>/exports/<format>.zip."""
import logging
import shutil

import numpy as np

from dlsite import storage

from mlcore import formats
from mlcore.builder import build_without_weights
from mlcore.serving import ModelInfo, predict_batch

from .models import ModelExport
from .runner import load_arrays

logger = logging.getLogger(__name__)

CHECK_PICTURES = 200  # test pictures each format's answers are compared on
INT8_CHECK_PICTURES = 2000  # the 8-bit format's accuracy is measured on up to this many
REPRESENTATIVE_PICTURES = 200  # training pictures the 8-bit format chooses its scales from


def make(export: ModelExport):
    run = export.run
    try:
        model_path = run.model_path if run.has_model else None  # fetched into this host's cache with a bucket
    except FileNotFoundError:
        model_path = None
    if model_path is None:
        export.fail("This run has no model file any more, so it cannot be exported.")
        return
    import keras

    export.record(phase="Reading the model and its test pictures")
    size, channels, class_names = (run.image_size, run.image_size), run.channels, run.class_names
    info = ModelInfo(class_names, size, channels, run.resize_mode)
    _, data = load_arrays(run, on_phase=lambda phase, done=0, total=0: export.record(phase=phase))
    model = keras.models.load_model(model_path, safe_mode=True, compile=False)
    model = formats.without_augmentation(
        model, lambda: build_without_weights(run.model_spec, (*size, channels), len(class_names)))
    pictures, labels = _check_pictures(data, export.kind)

    scratch = storage.host_cache().scratch_folder()
    try:
        folder = scratch / export.kind
        export.record(phase=f"Making the {formats.FORMATS[export.kind].label} file")
        try:
            archive = formats.write(export.kind, model, info, folder, _spread(data["train"][0]))
            export.record(phase=f"Loading it with {formats.FORMATS[export.kind].runtime} to check it")
            answers = formats.check_in_fresh_process(export.kind, folder, pictures)
        except formats.ExportFailed as failure:
            logger.warning("Export %s (%s of run %s) failed: %s", export.id, export.kind, run.id, failure)
            export.fail(str(failure))
            return
        original = predict_batch(model, pictures)
        size = archive.stat().st_size
        name = storage.save_file(archive, export.name, move=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if export.kind == "tflite_int8":
        export.finish(name, size, len(pictures), accuracy=float(np.mean(answers.argmax(1) == labels)),
                      original_accuracy=float(np.mean(original.argmax(1) == labels)))
    else:
        export.finish(name, size, len(pictures), max_difference=float(np.abs(answers - original).max()))


def _check_pictures(data, kind):
    """Pictures the model never learned from (the test split; validation or training ones when a
    dataset has none), with their labels."""
    for split in ("test", "val", "train"):
        x, y, _ = data[split]
        if len(x):
            count = INT8_CHECK_PICTURES if kind == "tflite_int8" else CHECK_PICTURES
            return x[:count], y[:count]
    raise ValueError("a trained run has pictures")


def _spread(x_train):
    """Up to REPRESENTATIVE_PICTURES training pictures spread over the whole split (its classes are
    stored in order in some packs)."""
    if len(x_train) <= REPRESENTATIVE_PICTURES:
        return x_train
    return x_train[np.linspace(0, len(x_train) - 1, REPRESENTATIVE_PICTURES).astype(int)]
