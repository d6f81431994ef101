"""Boosted trees (XGBoost) on what a trained network sees: the features of the layer before its output
(familiarity.features_and_probabilities), in place of that output layer. The tutorials call it
"fine tuning with XGBoost": the network's trunk finds the features, the trees draw the lines between
the classes. Sometimes a little better than the network's own last layer, often not; so it is measured
(on the validation pictures, which choose, and on the test pictures, which report) before anyone uses it.

Also the plain baseline: trees on the raw pixels, made small, which says how much the network's
features are worth.

The trees are kept in XGBoost's own UBJSON format, never pickled: loading a pickle can run code.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Rounds of boosting at most; early stopping ends far sooner on features a network already separates.
MAX_ROUNDS = 300
# Rounds without a better validation loss before it stops (and keeps the best round).
PATIENCE = 20
LEARNING_RATE = 0.3  # XGBoost's own default: fewer rounds than 0.1, which matters on a CPU
# Shallower than XGBoost's 6, and coarser histograms than its 256 bins: the small network's features are its
# flattened last block (7 x 7 x 64 = 3,136 numbers for MNIST), and each round grows one tree per class over
# all of them. On two cores shared with other work (load 8 to 10), 1,780 rows of random features of that shape
# took about 3 to 9 s a round (10 classes) whatever the column sampling, depth 4 with 64 bins on the quicker
# side; 890 real MNIST pictures then took about 2 s a round (docs/benchmarks.md, "Boosted trees").
MAX_DEPTH = 4
MAX_BIN = 64
# The trees learn from at most this many training pictures, picked at random class by class. Each round costs
# about the pictures times the features: 10,000 MNIST pictures of the small network's 3,136 features took
# about 8 s a round on two busy cores, so all 54,000 would have taken hours for the few rounds the trees
# need. The network's features already separate the classes; a sample is enough to draw the lines again.
LEARNS_FROM_AT_MOST = 10_000
# Without validation pictures, this share of the training ones is held out to tell when to stop.
HELD_OUT_SHARE = 0.15
# The raw-pixels baseline sees pictures this small (each side), flattened: 16 x 16 x 3 = 768 numbers.
PIXELS_SIDE = 16
FILE_NAME = "trees.ubj"


def threads() -> int:
    """The cores this process may use (a container or `taskset` may allow fewer than the machine has)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class Trees:
    """Fitted trees and what they say about themselves."""
    booster: object  # xgboost.Booster, cut to its best round
    num_classes: int
    rounds: int  # the rounds kept (the best on the stopping pictures)
    seconds: float = 0.0
    learned_from: int = 0  # the training pictures the trees learned from (see LEARNS_FROM_AT_MOST)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities, (pictures, classes), float32, for features of the network's kind."""
        import xgboost

        features = np.asarray(features, np.float32).reshape(len(features), -1)
        if not len(features):
            return np.zeros((0, self.num_classes), np.float32)
        answers = self.booster.predict(xgboost.DMatrix(features), validate_features=False)
        return np.asarray(answers, np.float32).reshape(len(features), self.num_classes)

    def accuracy(self, features: np.ndarray, labels: np.ndarray) -> float | None:
        """How often the trees are right; None without pictures."""
        if not len(labels):
            return None
        return float(np.mean(self.probabilities(features).argmax(1) == np.asarray(labels)))

    def save(self, path: Path) -> Path:
        """Write the trees in XGBoost's UBJSON format (.ubj; a .json name writes JSON)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.booster.set_attr(num_classes=str(self.num_classes), rounds=str(self.rounds))
        self.booster.save_model(str(path))
        return path


def load(path: Path) -> Trees:
    """Trees written by Trees.save."""
    import xgboost

    booster = xgboost.Booster()
    booster.load_model(str(path))
    booster.set_param({"nthread": threads()})
    return Trees(booster, int(booster.attr("num_classes")), int(booster.attr("rounds") or 0))


class _Progress:
    """Says each round to `on_round(done, most)`; as an XGBoost callback, built on first use (so that
    importing this module does not import XGBoost)."""

    @staticmethod
    def callback(on_round, most):
        import xgboost

        class Report(xgboost.callback.TrainingCallback):
            def after_iteration(self, model, epoch, evals_log):
                on_round(epoch + 1, most)
                return False  # go on

        return Report()


def some_of_each_class(labels: np.ndarray, at_most: int, seed: int = 0) -> np.ndarray:
    """The places of at most `at_most` labels, each class keeping its share (at least one picture), in order."""
    labels = np.asarray(labels)
    if len(labels) <= at_most:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    kept = []
    for label in np.unique(labels):
        places = np.flatnonzero(labels == label)
        share = max(1, round(at_most * len(places) / len(labels)))
        kept.append(rng.choice(places, min(share, len(places)), replace=False))
    return np.sort(np.concatenate(kept))


def fit(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, num_classes: int,
        max_rounds: int = MAX_ROUNDS, patience: int = PATIENCE, seed: int = 0, on_round=None,
        at_most: int = LEARNS_FROM_AT_MOST) -> Trees:
    """Boosted trees from features (or any numbers a picture), stopping when the validation pictures'
    loss has not improved for `patience` rounds and keeping the best round. Without validation
    pictures, HELD_OUT_SHARE of the training ones stand in for them. Learns from at most `at_most`
    training pictures (some_of_each_class; LEARNS_FROM_AT_MOST says why).

    XGBoost's own `train`, not XGBClassifier: the classifier takes the classes from the labels it is
    given, and a training split that lacks a class (a tiny dataset) would make it fail or number the
    classes differently from the network. `multi:softprob` with num_class fixes them to the network's."""
    import xgboost

    x_train = np.asarray(x_train, np.float32).reshape(len(x_train), -1)
    x_val = np.asarray(x_val, np.float32).reshape(len(x_val), x_train.shape[1])
    y_train, y_val = np.asarray(y_train, np.int64), np.asarray(y_val, np.int64)
    if not len(x_train):
        raise ValueError("Boosted trees need training pictures")
    if not len(x_val):
        if len(x_train) == 1:  # nothing to hold out: it stops on the one picture it learns from
            x_val, y_val = x_train, y_train
        else:
            order = np.random.default_rng(seed).permutation(len(x_train))
            held = max(1, round(HELD_OUT_SHARE * len(x_train)))
            x_val, y_val = x_train[order[:held]], y_train[order[:held]]
            x_train, y_train = x_train[order[held:]], y_train[order[held:]]
    kept = some_of_each_class(y_train, at_most, seed)
    x_train, y_train = x_train[kept], y_train[kept]
    started = time.monotonic()
    params = {"objective": "multi:softprob", "num_class": max(2, int(num_classes)), "tree_method": "hist",
              "eta": LEARNING_RATE, "max_depth": MAX_DEPTH, "max_bin": MAX_BIN, "subsample": 0.9,
              "colsample_bytree": 0.8, "eval_metric": "mlogloss", "nthread": threads(), "seed": seed}
    train = xgboost.DMatrix(x_train, label=y_train)
    stopping = xgboost.DMatrix(x_val, label=y_val)
    callbacks = [_Progress.callback(on_round, max_rounds)] if on_round else []
    booster = xgboost.train(params, train, num_boost_round=max_rounds, evals=[(stopping, "validation")],
                            early_stopping_rounds=patience, verbose_eval=False, callbacks=callbacks)
    best = booster.best_iteration + 1 if booster.attr("best_iteration") is not None else booster.num_boosted_rounds()
    # Only the best rounds are kept: what is saved and served is what the validation pictures chose.
    booster = booster[:best]
    return Trees(booster, max(2, int(num_classes)), best, time.monotonic() - started, len(y_train))


def small_pixels(pixels: np.ndarray, side: int = PIXELS_SIDE) -> np.ndarray:
    """uint8 pictures (n, height, width, channels) made `side` x `side` (averaging the pixels each new one
    covers) and flattened to numbers from 0 to 1: the raw-pixels baseline's input."""
    from PIL import Image

    pixels = np.asarray(pixels)
    count, height, width, channels = pixels.shape
    if height <= side and width <= side:
        return pixels.reshape(count, -1).astype(np.float32) / 255.0
    small = np.empty((count, side, side, channels), np.uint8)
    for i in range(count):
        for c in range(channels):
            small[i, :, :, c] = np.asarray(Image.fromarray(pixels[i, :, :, c]).resize((side, side), Image.BOX))
    return small.reshape(count, -1).astype(np.float32) / 255.0
