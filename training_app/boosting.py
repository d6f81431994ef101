"""Trying boosted trees on a finished run's features (the task's work; the trees themselves are
mlcore/trees.py): the run's pictures through its model to the layer before the output, trees fitted
on the training features and stopped on the validation ones, and three test accuracies kept on the
TreesTrial row: the trees', the network's own, and trees' on the raw pixels (the baseline). The trees
file is kept under models/<run id>/trees/.
"""
import logging
import shutil
import time

import numpy as np

from dlsite import storage
from mlcore import trees
from mlcore.serving import predict_with_features

from .models import TreesTrial
from .runner import load_arrays

logger = logging.getLogger(__name__)

# How the progress bar is shared out: the features pass, the trees on them, the pixels baseline.
FEATURES_SHARE, TREES_SHARE = 0.5, 0.35
RECORD_EVERY_S = 1.0  # a progress write at most this often


class _Progress:
    def __init__(self, trial):
        self.trial, self.last = trial, 0.0

    def __call__(self, fraction, phase=None, force=False):
        now = time.monotonic()
        if force or now - self.last >= RECORD_EVERY_S:
            self.last = now
            self.trial.record(progress=min(1.0, fraction), **({"phase": phase} if phase else {}))


def _accuracy(probabilities, labels):
    return float(np.mean(probabilities.argmax(1) == labels)) if len(labels) else None


def make(trial: TreesTrial):
    run = trial.run
    try:
        model_path = run.model_path if run.has_model else None
    except FileNotFoundError:
        model_path = None
    if model_path is None:
        trial.fail("This run has no model file any more, so there is nothing to fit trees on.")
        return
    import keras

    progress = _Progress(trial)
    progress(0.0, "Reading the model and its pictures", force=True)
    _, data = load_arrays(run, on_phase=lambda phase, done=0, total=0: trial.record(phase=phase[:64]))
    model = keras.models.load_model(model_path, safe_mode=True, compile=False)
    sizes = {split: len(data[split][0]) for split in ("train", "val", "test")}
    everything = max(1, sum(sizes.values()))

    features, probabilities, before = {}, {}, 0
    for split in ("train", "val", "test"):
        progress(FEATURES_SHARE * before / everything, f"What the network sees: the {split_words(split)}", force=True)

        def step(done, total, before=before):
            progress(FEATURES_SHARE * (before + done) / everything)

        features[split], probabilities[split] = predict_with_features(model, data[split][0], on_progress=step)
        before += sizes[split]
    labels = {split: np.asarray(data[split][1]) for split in data}
    classes = len(run.class_names)

    progress(FEATURES_SHARE, "Fitting boosted trees on what the network sees", force=True)
    fitted = trees.fit(features["train"], labels["train"], features["val"], labels["val"], classes,
                       on_round=lambda done, most: progress(FEATURES_SHARE + TREES_SHARE * done / most))

    progress(FEATURES_SHARE + TREES_SHARE, "Fitting boosted trees on the raw pixels, for comparison", force=True)
    small = {split: trees.small_pixels(data[split][0]) for split in ("train", "val", "test")}
    start = FEATURES_SHARE + TREES_SHARE
    baseline = trees.fit(small["train"], labels["train"], small["val"], labels["val"], classes,
                         on_round=lambda done, most: progress(start + (1 - start) * done / most))

    scratch = storage.host_cache().scratch_folder()
    try:
        name = trial.trees_name
        saved = fitted.save(scratch / trees.FILE_NAME)
        name = storage.save_file(saved, name, move=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    earlier = trial.file
    trial.finish(model_file=run.model_file, file=name, rounds=fitted.rounds, seconds=fitted.seconds,
                 learned_from=fitted.learned_from,
                 test_count=sizes["test"], val_count=sizes["val"],
                 trees_test=fitted.accuracy(features["test"], labels["test"]),
                 network_test=_accuracy(probabilities["test"], labels["test"]),
                 pixels_test=baseline.accuracy(small["test"], labels["test"]),
                 trees_val=fitted.accuracy(features["val"], labels["val"]),
                 network_val=_accuracy(probabilities["val"], labels["val"]))
    if earlier and earlier != name:
        storage.delete(earlier)  # an earlier fitting's trees, no longer named by the row


def split_words(split):
    return {"train": "training pictures", "val": "validation pictures", "test": "test pictures"}[split]
