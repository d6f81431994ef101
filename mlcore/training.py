"""Fitting a model on in-memory uint8 arrays, with progress and cooperative cancel."""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class TrainingConfig:
    preset: str
    image_size: tuple[int, int]
    channels: int
    num_classes: int
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 0.001
    seed: int = 1337


@dataclass
class BatchProgress:
    epoch: int  # 1-based
    batch: int  # 1-based, within the epoch
    batches_per_epoch: int
    loss: float
    accuracy: float


def make_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, *, training: bool, seed: int):
    """A tf.data pipeline over arrays already in memory.

    The training set repeats and `fit` gets `steps_per_epoch`: a fresh iterator
    every epoch sometimes stalls for seconds while tf.data's autotune thread
    shuts down (see GUIDE.md). Autotune is off on the validation set for the
    same reason.
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if training:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat()
    dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    if not training:
        options = tf.data.Options()
        options.autotune.enabled = False
        dataset = dataset.with_options(options)
    return dataset


def train_model(config: TrainingConfig, x_train: np.ndarray, y_train: np.ndarray,
                x_val: np.ndarray, y_val: np.ndarray, *,
                on_batch: Callable[[BatchProgress], None] | None = None,
                on_epoch: Callable[[int, dict], None] | None = None,
                should_stop: Callable[[], bool] | None = None,
                progress_interval_s: float = 0.5,
                backup_dir: str | None = None):
    """Build and fit the preset model; returns (model, stopped_early).

    With `backup_dir`, Keras' BackupAndRestore saves the model, optimizer and epoch at
    the end of every epoch, and a later call with the same folder (after the process
    died) continues from the last finished epoch instead of starting over.
    """
    import keras

    from .models import make_model

    keras.utils.set_random_seed(config.seed)
    model = make_model(config.preset, (*config.image_size, config.channels), config.num_classes)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    steps = max(1, math.ceil(len(x_train) / config.batch_size))
    callback = _make_progress_callback(steps, on_batch, on_epoch, should_stop, progress_interval_s)
    # Progress first: an epoch is recorded before its backup is written, so an epoch is
    # never skipped, and one run again after a crash is recorded again over itself.
    callbacks = [callback]
    if backup_dir:
        callbacks.append(_make_backup_callback(backup_dir))
    has_validation = len(x_val) > 0
    model.fit(
        make_dataset(x_train, y_train, config.batch_size, training=True, seed=config.seed),
        epochs=config.epochs,
        steps_per_epoch=steps,
        validation_data=(make_dataset(x_val, y_val, config.batch_size, training=False, seed=config.seed)
                         if has_validation else None),
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself
        verbose=0,
    )
    return model, callback.stopped


def _make_backup_callback(backup_dir: str):
    """Keras' BackupAndRestore, made safe against a kill in the middle of writing a backup.

    A SIGKILL while the weights file is being written leaves it unreadable (seen in the
    recovery test: "bad object header version number"). `double_checkpoint` keeps the
    previous epoch's backup to fall back on; if nothing reads, the run starts over rather
    than failing.
    """
    import keras

    class SafeBackupAndRestore(keras.callbacks.BackupAndRestore):
        def on_train_begin(self, logs=None):
            try:
                super().on_train_begin(logs)
            except (OSError, ValueError, KeyError):
                shutil.rmtree(self.backup_dir, ignore_errors=True)

    return SafeBackupAndRestore(backup_dir, save_freq="epoch", delete_checkpoint=True, double_checkpoint=True)


def finished_epochs_in_backup(backup_dir: str) -> int:
    """How many epochs an earlier attempt finished, from the metadata BackupAndRestore keeps
    beside its checkpoint (0 when there is no backup)."""
    path = os.path.join(backup_dir, "training_metadata.json")
    try:
        with open(path) as f:
            return int(json.load(f).get("epoch", 0))
    except (OSError, ValueError, TypeError):
        return 0


def _make_progress_callback(steps, on_batch, on_epoch, should_stop, interval_s):
    """Reports batch progress at most every `interval_s` and every finished epoch.

    Cancel is cooperative: `should_stop` is asked at the same pace, and a yes
    stops training at the end of the current batch, keeping the weights.
    (Defined in a function so that importing this module does not import Keras.)
    """
    import keras

    class ProgressCallback(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self.last_report = 0.0
            self.stopped = False

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch, logs=None):
            now = time.monotonic()
            if now - self.last_report < interval_s and batch + 1 < steps:
                return
            self.last_report = now
            logs = logs or {}
            if on_batch:
                on_batch(BatchProgress(self.epoch, batch + 1, steps,
                                       float(logs.get("loss", math.nan)),
                                       float(logs.get("accuracy", math.nan))))
            if should_stop and should_stop():
                self.stopped = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            if on_epoch:
                on_epoch(epoch + 1, {key: float(value) for key, value in (logs or {}).items()})

    return ProgressCallback()
