"""Fitting a model on in-memory uint8 arrays, with progress and cooperative cancel."""
from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .options import BALANCES, default, loss_call, make_optimizer, make_schedule, normalise_augmentation, refit_schedule


@dataclass
class TrainingConfig:
    """A run's settings as the worker trains with them; each is described in mlcore/options.py."""

    spec: dict  # the network, as builder.py describes it
    image_size: tuple[int, int]
    channels: int
    num_classes: int
    epochs: int = default("epochs")
    batch_size: int = default("batch_size")
    optimizer: str = default("optimizer")  # options.OPTIMIZERS
    learning_rate: float = default("learning_rate")
    lr_schedule: str = default("lr_schedule")  # options.SCHEDULES
    early_stopping_patience: int = default("early_stopping_patience")  # 0 never stops early
    class_weighting: str = default("class_weighting")  # options.BALANCES
    label_smoothing: float = default("label_smoothing")
    augmentation: dict | None = None  # options.AUGMENTATIONS
    fine_tune_epochs: int = default("fine_tune_epochs")  # after the first phase, with the base's top unfrozen
    fine_tune_learning_rate: float = default("fine_tune_learning_rate")
    seed: int = default("seed")
    weights_dir: str | None = None  # pretrained weights (builder.weights_path)
    all_gpus: bool = False  # MirroredStrategy over every GPU of the host
    # Few photos (defaults.few_photos_plan, worked out from the run's settings and training photos): the frozen
    # top also learns from five crops of each training picture, and learns again on training + validation.
    crop_views: bool = False
    # Also for fine-tuning with a time budget: once the validation pictures kept it, learn again with them.
    refit_with_validation: bool = False

    @property
    def fine_tunes(self) -> bool:
        base = self.spec.get("base")
        return bool(base and base.get("fine_tune_layers") and self.fine_tune_epochs)

    @property
    def total_epochs(self) -> int:
        return self.epochs + (self.fine_tune_epochs if self.fine_tunes else 0)


@dataclass
class BatchProgress:
    epoch: int  # 1-based
    batch: int  # 1-based, within the epoch
    batches_per_epoch: int
    loss: float
    accuracy: float


@dataclass
class TrainingOutcome:
    model: object
    stopped: bool  # cancelled by the person
    stopped_early: bool  # early stopping: validation stopped improving
    best_epoch: int | None  # the epoch whose weights the model has, when it went back to the best one
    # What each phase gave on the validation pictures, in order, for the run page (runs that fine-tune):
    # {"phase": "top" or "fine_tune", "val_accuracy", "val_loss", and for fine-tuning "kept" (False: it went
    # back to the top alone, which did as well or better) or "skipped" (why it did not run: "time",
    # "stopped")}, then {"phase": "mirrors", ...} (PartialTrunk.mirror_check) or its "skipped".
    phases: list | None = None
    # The pooled features the output layer reads, for each training picture, when the pretrained base stayed
    # frozen throughout (FrozenTrunk, no fine-tuning): kept for mlcore/familiarity.py, which would otherwise
    # look at the training pictures again. None otherwise.
    features: np.ndarray | None = None

    @property
    def averages_mirrors(self) -> bool:
        """Whether the saved model should answer from each picture and its mirror image together
        (serving.with_mirror_average): the validation pictures said so (PartialTrunk.mirror_check)."""
        return any(phase.get("phase") == "mirrors" and phase.get("kept") for phase in self.phases or [])


# Prefetched batches. A fixed depth, because tf.data's autotuning is off (see make_dataset); two keep the
# next batches ready while a step runs: producing a batch here is a gather of one slice of memory.
PREFETCH_BATCHES = 2


def make_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, *, training: bool, seed: int,
                 num_classes: int | None = None):
    """A tf.data pipeline over arrays already in memory: one pass over them, in batches.

    Indices are shuffled (for training) and batched, and each batch of images is one `tf.gather`
    from the arrays, rather than every image going through the pipeline on its own: about half the
    CPU (0.08 s against 0.14 s per epoch of 54,000 MNIST images, CPU that the training step wants
    on a small machine), and a new epoch's first batch in 16 to 25 ms rather than 60 to 90 ms,
    since the shuffle buffer holds numbers, not images (docs/benchmarks.md).

    The dataset ends after one epoch, so that a call of `steps_per_execution` steps stops at the
    epoch's end (train_model). `fit` then makes a new iterator every epoch, which, with tf.data's
    autotuning on, sometimes stalls for seconds while the autotune thread shuts down (see
    docs/architecture.md): autotuning is off, and the prefetch depth fixed. With `num_classes`, labels become
    one-hot rows (label smoothing needs them).
    """
    import tensorflow as tf

    pixels, labels = tf.constant(x), tf.constant(y)
    dataset = tf.data.Dataset.range(len(x))
    if training:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(lambda indices: (tf.gather(pixels, indices), tf.gather(labels, indices)))
    if num_classes:
        dataset = dataset.map(lambda batch, batch_labels: (batch, tf.one_hot(batch_labels, num_classes)))
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(PREFETCH_BATCHES).with_options(options)


EAGER_PIXELS = 16 * 224 * 224  # pixels timed eagerly by steps_per_execution: all of MNIST's 128, 16 big photos


def steps_per_execution(model, sample: np.ndarray, interval_s: float, steps: int) -> int:
    """How many training steps Keras runs in one call (`compile(steps_per_execution=...)`), so that
    progress is still reported about every `interval_s`: at least 1, at most an epoch.

    Each call returns to Python, runs the batch-end callbacks and synchronises, a fixed cost per call
    that matters for small networks on a CPU (5 to 13 % of MNIST's training time here,
    docs/benchmarks.md). A training step is estimated as two forward passes over `sample` (one batch)
    called eagerly, timed after one call that warms the model up: measured here, a step took 1.7 and
    2.1 times such a pass for the small and the deeper convolutional network, and 0.8 times for the
    tiny dense one, whose eager pass is mostly Python. Calls in inference mode change nothing in the
    model. With `interval_s` 0 (a report after every step), or a network so slow that one pass takes
    the whole interval, it is 1. Big pictures are timed on part of the batch and the time scaled up:
    an eager pass keeps every layer's output alive (80 MB a picture for EfficientNet-Lite0 at 224).
    """
    if interval_s <= 0 or steps <= 1:
        return 1
    part = max(1, min(len(sample), EAGER_PIXELS // max(1, int(np.prod(sample.shape[1:3])))))
    interval_s *= part / len(sample)  # timing `part` pictures of the batch stands for the whole
    sample = sample[:part]
    started = time.perf_counter()
    np.asarray(model(sample, training=False))
    if time.perf_counter() - started > interval_s:  # a big network: one step per call, and no second pass
        return 1
    started = time.perf_counter()
    np.asarray(model(sample, training=False))
    step_s = 2 * (time.perf_counter() - started)
    # Random changes act only while training, so the pass above skipped them; time them on their own
    # (they hold no weights, so running them in training mode changes nothing in the model).
    augmentation = next((layer for layer in model.layers if layer.name == "augmentation"), None)
    if augmentation is not None:
        started = time.perf_counter()
        np.asarray(augmentation(sample, training=True))
        step_s += time.perf_counter() - started
    return int(max(1, min(steps, interval_s // max(step_s, 1e-6))))


# Batch normalisation's moving statistics count as settled once less than this share of their
# starting values (mean 0, variance 1) is left in them.
SETTLED_SHARE = 0.01


def settled_epoch(model, steps_per_epoch: int) -> int:
    """The first epoch (1-based) at whose end the moving statistics of the model's trainable
    BatchNormalization layers have settled; 1 for a model without any.

    Until then the model in inference mode (validation, testing, predicting) sees statistics still
    near their starting values and can be at chance while it learns well in training mode, so
    early stopping and the best-epoch choice must not judge those epochs (docs/benchmarks.md,
    "Batch normalisation"). Layers of a frozen pretrained base never move and are settled.
    """
    import keras

    momenta = [layer.momentum for layer in _all_layers(model)
               if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable and 0 < layer.momentum < 1]
    if not momenta:
        return 1
    steps = math.ceil(math.log(SETTLED_SHARE) / math.log(max(momenta)))
    return max(1, math.ceil(steps / max(1, steps_per_epoch)))


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def train_model(config: TrainingConfig, x_train: np.ndarray, y_train: np.ndarray,
                x_val: np.ndarray, y_val: np.ndarray, *,
                on_batch: Callable[[BatchProgress], None] | None = None,
                on_epoch: Callable[[int, dict], None] | None = None,
                should_stop: Callable[[], bool] | None = None,
                progress_interval_s: float = 0.5,
                backup_dir: str | None = None,
                on_phase: Callable[[str, int, int], None] | None = None,
                deadline: float | None = None,
                on_plan: Callable[[int], None] | None = None,
                on_backup: Callable[[], None] | None = None) -> TrainingOutcome:
    """Build and fit the model of `config.spec`, then fine-tune it if the config asks.

    `on_epoch(epoch, logs)` gets the epoch's metrics and its "learning_rate". With `backup_dir`,
    Keras' BackupAndRestore saves the model, optimizer and epoch at the end of every epoch, and a
    later call with the same folder (after the process died) continues from the last finished epoch
    instead of starting over. A cancel (`should_stop`) stops within about `progress_interval_s` (at the
    end of the current call of steps, see steps_per_execution) and, like early stopping, goes back to
    the weights of the best epoch so far. `on_batch` gets at most one report per `progress_interval_s`.

    A frozen pretrained base with nothing random before it but left-right flips is run once over the
    pictures (and their mirror images), and the new top learns from what it saw: the same training
    as fitting the whole model, minus a pass of the base per epoch (see FrozenTrunk); `on_phase(text,
    done, total)` reports that pass, counted in pictures (a picture with its mirror image is one). With
    `deadline` (a time.monotonic() value: the time budget), the first epoch's duration sets how many
    epochs fit before it, the step-size schedule is stretched or shrunk to that many, `on_plan(epochs)`
    is told, and no epoch starts that would end after it.
    `on_backup()` is called each time `backup_dir` has changed (after each epoch's backup is written,
    and when the first phase's end is marked), for a caller that keeps a copy elsewhere.
    """
    import keras
    import tensorflow as tf

    from .builder import build_model, unfreeze_top

    keras.utils.set_random_seed(config.seed)
    gpus = tf.config.list_physical_devices("GPU")
    strategy = (tf.distribute.MirroredStrategy() if config.all_gpus and len(gpus) > 1
                else tf.distribute.get_strategy())
    smoothing = config.label_smoothing > 0
    has_validation = len(x_val) > 0
    monitor = "val_loss" if has_validation else "loss"
    labels = config.num_classes if smoothing else None
    balance = BALANCES[config.class_weighting].weights
    weights = balance(y_train, config.num_classes) if balance else None

    with strategy.scope():
        model = build_model(config.spec, (*config.image_size, config.channels), config.num_classes,
                            config.weights_dir, augmentation=config.augmentation, seed=config.seed)

    def datasets(x, y, xv, yv):
        train = make_dataset(x, y, config.batch_size, training=True, seed=config.seed, num_classes=labels)
        val = make_dataset(xv, yv, config.batch_size, training=False, seed=config.seed, num_classes=labels)
        return train, (val if has_validation else None), max(1, math.ceil(len(x) / config.batch_size))

    def compile_for(fitted, learning_rate, epochs, steps):
        loss = loss_call(config.label_smoothing).build()
        schedule = make_schedule(config.lr_schedule, learning_rate, epochs * steps)
        per_call = steps_per_execution(fitted, sample, progress_interval_s, steps)
        # XLA (jit_compile) stays as Keras decides: off on a CPU, where it made MNIST training six times
        # slower here (docs/benchmarks.md), and on for a GPU.
        with strategy.scope():
            fitted.compile(optimizer=make_optimizer(config.optimizer, schedule), loss=loss, metrics=["accuracy"],
                           steps_per_execution=per_call)
        return schedule

    trunk = FrozenTrunk.of(model, config)
    refit = None  # (training features, labels, validation features, labels) for the refit of few photos
    partial = PartialTrunk.of(model, config, trunk) if trunk and config.fine_tunes else None
    if partial:
        # One look at the pictures serves both phases: the activations where fine-tuning starts are kept,
        # and the frozen top's features are what the frozen rest of the base makes of them.
        cut_train, cut_val = partial.features(x_train, x_val, on_phase, mirrored=trunk.mirrors)
        fitted = trunk.head
        x_fit = partial.pooled(cut_train)
        y_fit = np.concatenate([y_train, y_train]) if trunk.mirrors else y_train
        train_data, val_data, steps = datasets(x_fit, y_fit, partial.pooled(cut_val), y_val)
        sample = x_fit[:config.batch_size]
    elif trunk and trunk.mirrors and (config.crop_views or config.refit_with_validation) and not config.fine_tunes:
        # Few photos (defaults.few_photos_plan): 12 views of each training picture with crops, else 2; the
        # validation pictures in as many views too, for the refit on them below (checked on the whole ones).
        fitted = trunk.head
        looks = (2 * (1 + len(CROP_CORNERS))) if config.crop_views else 2
        both = np.concatenate([x_train, x_val])  # one pass, one traced function
        if config.crop_views:
            found = trunk.views(both, on_phase)
        else:
            found = look_at_pictures(trunk.trunk, both, x_val[:0], True, on_phase, "float32")[0]
        x_fit, x_val_views = _split_views(found, len(x_train), len(x_val), looks)
        x_val_features = x_val_views[:len(x_val)]
        y_fit = np.tile(y_train, looks)
        train_data, val_data, steps = datasets(x_fit, y_fit, x_val_features, y_val)
        sample = x_fit[:config.batch_size]
        refit = (x_fit, y_fit, x_val_views, np.tile(y_val, looks)) if config.refit_with_validation and len(x_val) else None
    elif trunk:
        fitted = trunk.head
        x_fit, x_val_features = trunk.features(x_train, x_val, on_phase)
        y_fit = np.concatenate([y_train, y_train]) if trunk.mirrors else y_train
        train_data, val_data, steps = datasets(x_fit, y_fit, x_val_features, y_val)
        sample = x_fit[:config.batch_size]
    else:
        fitted = model
        train_data, val_data, steps = datasets(x_train, y_train, x_val, y_val)
        sample = x_train[:config.batch_size]
    # The refit (of few photos, or of a fine-tuned model with time left) starts again from where training started.
    start_weights = (fitted.get_weights() if refit else
                     model.get_weights() if partial and config.refit_with_validation and len(x_val) else None)
    training_started = time.monotonic()
    schedule = compile_for(fitted, config.learning_rate, config.epochs, steps)
    progress = _make_progress_callback(steps, on_batch, on_epoch, should_stop, progress_interval_s)
    first_judged = settled_epoch(fitted, steps)
    best = _make_best_weights_callback(monitor, first_judged)
    asks_mirrors = not trunk and has_validation and _flips_left_right(config)  # whole_mirror_check at the end
    # Its two passes over the validation pictures, forward only, take at most what training on as many takes.
    mirror_check_epochs = 2 * len(x_val) / max(1, len(x_train)) if asks_mirrors else 0.0
    budget = _make_budget_callback(deadline, on_plan, config.lr_schedule, after_last_epoch=mirror_check_epochs)

    def fit(first_epoch, last_epoch, phase_backup):
        # Progress first: an epoch is recorded before its backup is written, so an epoch is
        # never skipped, and one run again after a crash is recorded again over itself.
        callbacks = [progress, best]
        if config.early_stopping_patience and not tuning_whole_schedule:
            # Keras counts epochs from 0 here: it ignores the epochs before the statistics settled.
            callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=config.early_stopping_patience,
                                                           start_from_epoch=first_judged - 1))
        if deadline is not None:
            budget.start_phase(schedule, steps, first_epoch, last_epoch)
            callbacks.append(budget)
        if phase_backup:
            callbacks.append(_make_backup_callback(phase_backup))
            if on_backup:  # after the backup callback: Keras calls them in order, so the epoch's backup is written
                callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: on_backup()))
        # steps_per_epoch is the dataset's own length: with `per_call` steps per call, the epoch's last call
        # runs only the steps left (Keras stops a call when the dataset ends), so an epoch is always `steps`.
        fitted.fit(train_data, initial_epoch=first_epoch, epochs=last_epoch, steps_per_epoch=steps,
                   validation_data=val_data, class_weight=weights, callbacks=callbacks,
                   shuffle=False,  # the dataset shuffles itself
                   verbose=0)

    def refit_tuned(top_epochs):
        """A fine-tuned model kept on the validation pictures (PartialTrunk) learns again from where training
        started, on the training and validation pictures together (their mirror images too, when it mirrors):
        the new top for the epochs its first phase kept, then fine-tuning for all of its epochs, with the same
        settings. The validation figures stay those from before, when those pictures were still unseen."""
        if on_phase:
            on_phase(REFIT_PHASE, 0, 0)
        views = [cut_val, partial.mirrored_val] if trunk.mirrors and partial.mirrored_val is not None else [cut_val]
        cut_all = np.concatenate([cut_train, *views])
        y_all = np.concatenate([y_fit, *[y_val] * len(views)])
        all_steps = max(1, math.ceil(len(y_all) / config.batch_size))
        stopper = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: setattr(phase_model, "stop_training", bool(should_stop and should_stop())))
        nonlocal sample  # compile_for times a batch of what the model being compiled reads
        model.set_weights(start_weights)
        keras.utils.set_random_seed(config.seed)
        for phase_model, inputs, learning_rate, epochs in (
                (trunk.head, partial.pooled(cut_all), config.learning_rate, top_epochs),
                (partial.tail, cut_all, config.fine_tune_learning_rate, config.fine_tune_epochs)):
            sample = inputs[:config.batch_size]
            compile_for(phase_model, learning_rate, epochs, all_steps)
            data = make_dataset(inputs, y_all, config.batch_size, training=True, seed=config.seed, num_classes=labels)
            phase_model.fit(data, epochs=epochs, steps_per_epoch=all_steps, callbacks=[stopper], shuffle=False,
                            class_weight=weights, verbose=0)
            if should_stop and should_stop():
                progress.stopped = True
                return

    tuning_whole_schedule = False  # set for fine-tuning on a PartialTrunk's activations (see below)
    # The first phase's end is marked on disk, so a run that dies while fine-tuning does not repeat it.
    first_phase_done = os.path.join(backup_dir, "first-phase.weights.h5") if backup_dir else None
    if first_phase_done and config.fine_tunes and os.path.exists(first_phase_done):
        with warnings.catch_warnings():
            # The file also holds the first phase's optimizer state, which Keras skips ("Skipping variable
            # loading for optimizer") because this model's optimizer has not run yet. Nothing is lost:
            # fine-tuning compiles a fresh optimizer, whose own state comes from the fine-tuning backup.
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model.load_weights(first_phase_done)
    else:
        fit(0, config.epochs, os.path.join(backup_dir, "first-phase") if backup_dir else None)
        if config.fine_tunes and first_phase_done and not progress.stopped:
            model.save_weights(first_phase_done)
            if on_backup:
                on_backup()

    stopped_early = fitted.stop_training and not progress.stopped and not budget.ran_out
    phases = None
    # No early stopping here (defaults.few_photos_plan): a budget's last epoch also sets stop_training.
    refit_fits = deadline is None or time.monotonic() + sum(budget.epoch_seconds) * 1.2 < deadline
    if refit and not progress.stopped and not budget.ran_out and refit_fits:
        # The top has been checked on the validation pictures (the epochs' figures); now it learns again, from
        # the same start and with the same settings, on the training and validation pictures together: about
        # as long again as its epochs took (a fifth more pictures), so only when that fits the budget.
        x_all, y_all = np.concatenate(refit[::2]), np.concatenate(refit[1::2])
        if on_phase:
            on_phase(REFIT_PHASE, 0, 0)
        fitted.set_weights(start_weights)
        keras.utils.set_random_seed(config.seed)
        all_data = make_dataset(x_all, y_all, config.batch_size, training=True, seed=config.seed, num_classes=labels)
        all_steps = max(1, math.ceil(len(x_all) / config.batch_size))
        compile_for(fitted, config.learning_rate, config.epochs, all_steps)
        stopper = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: setattr(fitted, "stop_training", bool(should_stop and should_stop())))
        fitted.fit(all_data, epochs=config.epochs, steps_per_epoch=all_steps, callbacks=[stopper], shuffle=False,
                   class_weight=weights, verbose=0)
        if should_stop and should_stop():
            progress.stopped = True
        return TrainingOutcome(model, progress.stopped, False, None,
                               [{"phase": "refit", "train": len(y_train), "val": len(y_val),
                                 "crops": bool(config.crop_views)}])
    if config.fine_tunes and has_validation:
        # The top alone, at its best epoch: what fine-tuning must beat on the validation pictures.
        best_epoch = best.restore() if (progress.stopped or stopped_early) else None
        best_epoch_of_top = best_epoch
        top_weights = model.get_weights()
        phases = [{"phase": "top", **_validation(fitted, val_data)}]
        skipped = "stopped" if progress.stopped else "time" if budget.ran_out else None
        if not skipped:
            if partial:
                fitted = partial.tail
                train_data, val_data, steps = datasets(cut_train, y_fit, cut_val, y_val)
                sample = cut_train[:config.batch_size]
            else:
                fitted = model
                train_data, val_data, steps = datasets(x_train, y_train, x_val, y_val)
                sample = x_train[:config.batch_size]
            with strategy.scope():
                unfreeze_top(model, config.spec["base"]["fine_tune_layers"])
            if deadline is not None and not _phase_fits(fitted, sample, steps, len(x_val), config.batch_size, deadline):
                skipped = "time"
        if skipped:
            phases.append({"phase": "fine_tune", "skipped": skipped})
        else:
            schedule = compile_for(fitted, config.fine_tune_learning_rate, config.fine_tune_epochs, steps)
            progress.steps = steps
            # Fine-tuning runs its whole cosine and keeps its last epoch, which the schedule settles: on the
            # flower photos its validation loss was lowest after the first epoch (0.373, 89.8 % right) while
            # accuracy went on rising to 91.2 % (the model grows surer of its answers), so a choice by loss
            # or early stopping on it would throw most of the gain away. A cancel still goes back (best).
            tuning_whole_schedule = True
            best = _make_best_weights_callback(monitor)
            fit(config.epochs, config.total_epochs, os.path.join(backup_dir, "fine-tune") if backup_dir else None)
            stopped_early = False
            tuned_epoch = best.restore() if progress.stopped else None
            tuned = _validation(fitted, val_data)
            # Kept only if it beats the top alone: more right, or as many right and surer of them.
            kept = (tuned["val_accuracy"], -tuned["val_loss"]) > (phases[0]["val_accuracy"], -phases[0]["val_loss"])
            phases.append({"phase": "fine_tune", **tuned, "kept": kept})
            if kept:
                best_epoch = tuned_epoch
            else:
                model.set_weights(top_weights)
        if partial and not progress.stopped:
            # One more look at the validation pictures, at the pace the first look went: only inside the budget.
            if deadline is not None and time.monotonic() + len(x_val) * partial.seconds_per_picture > deadline:
                phases.append({"phase": "mirrors", "skipped": "time"})
            else:
                phases.append(partial.mirror_check(x_val, y_val, cut_val, on_phase))
        tuned_kept = len(phases) > 1 and phases[1].get("kept")
        took = time.monotonic() - training_started
        # About as long again as both phases took (a seventh more pictures), so only when that fits the budget.
        if (start_weights is not None and tuned_kept and not progress.stopped
                and (deadline is None or time.monotonic() + took * 1.2 < deadline)):
            refit_tuned(top_epochs=best_epoch_of_top or config.epochs)
            phases.append({"phase": "refit", "train": len(y_train), "val": len(y_val), "crops": False})
            best_epoch = None  # the model has the refit's last epoch
        return TrainingOutcome(model, progress.stopped, stopped_early, best_epoch, phases)
    if config.fine_tunes and not progress.stopped and not stopped_early and not budget.ran_out:
        fitted = model
        with strategy.scope():
            unfreeze_top(model, config.spec["base"]["fine_tune_layers"])
        train_data, val_data, steps = datasets(x_train, y_train, x_val, y_val)
        sample = x_train[:config.batch_size]
        schedule = compile_for(model, config.fine_tune_learning_rate, config.fine_tune_epochs, steps)
        progress.steps = steps
        best.reset()  # fine-tuning starts from the best of the first phase; compare within it
        fit(config.epochs, config.total_epochs, os.path.join(backup_dir, "fine-tune") if backup_dir else None)
        stopped_early = model.stop_training and not progress.stopped and not budget.ran_out

    best_epoch = best.restore() if (progress.stopped or stopped_early) else None
    # x_fit holds the training pictures first (their mirror images after them).
    features = x_fit[:len(x_train)] if trunk and not partial and not config.fine_tunes else None
    if asks_mirrors and not progress.stopped:
        # A network trained whole, with mirror images among its random changes: two passes over the
        # validation pictures, as they are and mirrored, say whether answering from both does better. The
        # budget kept time for them. (Frozen pretrained tops are not asked: with EfficientNet-Lite0 it did
        # worse, and their pace over whole pictures is not known here.)
        epoch_s = statistics.median(budget.epoch_seconds) if deadline is not None and budget.epoch_seconds else 0
        if deadline is not None and time.monotonic() + mirror_check_epochs * epoch_s > deadline:
            phases = [{"phase": "mirrors", "skipped": "time"}]
        else:
            phases = [whole_mirror_check(model, x_val, y_val, on_phase)]
    return TrainingOutcome(model, progress.stopped, stopped_early, best_epoch, phases, features)


def _flips_left_right(config) -> bool:
    return normalise_augmentation(config.augmentation).get("flip") in ("horizontal", "horizontal_and_vertical")


def whole_mirror_check(model, x_val, y_val, on_phase=None) -> dict:
    """PartialTrunk.mirror_check for a network trained whole: its answers on the validation pictures, then
    on their mirror images (mirror_verdict). `on_phase` counts both passes as one."""
    from .serving import predict_batch

    def passes(first):
        return on_phase and (lambda done, total: on_phase(MIRROR_PHASE, first + done, 2 * len(x_val)))

    if on_phase:
        on_phase(MIRROR_PHASE, 0, 2 * len(x_val))
    alone = predict_batch(model, x_val, on_progress=passes(0))
    mirrored = predict_batch(model, np.ascontiguousarray(x_val[:, :, ::-1]), on_progress=passes(len(x_val)))
    return mirror_verdict(alone, mirrored, y_val)


def _validation(model, val_data) -> dict:
    """Accuracy and loss of a compiled model on the validation dataset, as plain floats."""
    loss, accuracy = model.evaluate(val_data, verbose=0)[:2]
    return {"val_accuracy": float(accuracy), "val_loss": float(loss)}


# Fine-tuning starts only if this many of its epochs fit before the deadline: one epoch at a
# step size still high would change the weights without settling them.
MIN_FINE_TUNE_EPOCHS = 2


def _phase_fits(model, sample, steps: int, val_count: int, batch_size: int, deadline: float) -> bool:
    """Whether MIN_FINE_TUNE_EPOCHS epochs of training `model` likely end before `deadline`
    (time.monotonic()), estimated before starting: a training step as three forward passes over a
    batch (forward, and a backward pass that costs about two), plus a forward pass per validation batch.
    The budget callback then keeps the epochs that do start inside the deadline, at the pace it measures."""
    # Timed on a few pictures and scaled to the batch: an eager pass of a whole base keeps every layer's
    # output alive (80 MB a picture for EfficientNet-Lite0 at 224, see steps_per_execution).
    part = np.ascontiguousarray(sample[:min(batch_size, 8)])
    np.asarray(model(part, training=False))  # the first call traces
    started = time.monotonic()
    np.asarray(model(part, training=False))
    forward_s = (time.monotonic() - started) * batch_size / max(1, len(part))
    epoch_s = forward_s * (3 * steps + math.ceil(val_count / max(1, batch_size)))
    return time.monotonic() + MIN_FINE_TUNE_EPOCHS * epoch_s <= deadline


class FrozenTrunk:
    """The part of a transfer network that training never changes, run once instead of every epoch.

    In the first phase a pretrained base is frozen and in inference mode, and the global average
    pooling after it has no weights: for each picture they give the same 1,280 or so numbers every
    epoch. Only the layers after them (the "head": dropout, dense layers, the output) learn. So the
    trunk reads every picture once, and the head, which shares its layers with the whole model,
    learns from those numbers in milliseconds per epoch instead of a pass of the base (about a
    minute per epoch for 2,300 photos on two cores). Left-right flips are the one random change
    that can be read ahead: the trunk also reads each picture mirrored, so the head sees both.
    Any other random change (turns, zooms, ...) is different every epoch, so those networks train
    whole.
    """

    def __init__(self, trunk, head, mirrors):
        self.trunk, self.head, self.mirrors = trunk, head, mirrors

    @classmethod
    def of(cls, model, config) -> "FrozenTrunk | None":
        import keras

        from .builder import BASES

        if not config.spec.get("base"):
            return None
        changes = {name: value for name, value in normalise_augmentation(config.augmentation).items()
                   if value not in (0, "none")}
        if set(changes) - {"flip"} or changes.get("flip", "horizontal") != "horizontal":
            return None
        names = [layer.name for layer in model.layers]
        base_at = next(i for i, name in enumerate(names) if name in BASES)
        if base_at + 1 >= len(names) or not isinstance(model.layers[base_at + 1], keras.layers.GlobalAveragePooling2D):
            return None  # image-shaped features would be too big to keep
        pooled = model.layers[base_at + 1]
        trunk = keras.Model(model.input, pooled.output, name="frozen_trunk")
        head_input = keras.Input(shape=tuple(pooled.output.shape[1:]), name="features")
        x = head_input
        for layer in model.layers[base_at + 2:]:
            x = layer(x)
        return cls(trunk, keras.Model(head_input, x, name="head"), mirrors=changes.get("flip") == "horizontal")

    def features(self, x_train: np.ndarray, x_val: np.ndarray, on_phase=None) -> tuple[np.ndarray, np.ndarray]:
        """The trunk's output for each training picture (then for each mirrored one, when it mirrors) and
        for each validation picture, as float32 (see `look_at_pictures`)."""
        return look_at_pictures(self.trunk, x_train, x_val, self.mirrors, on_phase, "float32")

    def views(self, pixels: np.ndarray, on_phase=None) -> np.ndarray:
        """The trunk's output for 12 views of each picture, view after view (each view `len(pixels)` rows):
        the whole picture, mirrored, then each of `crops`, then mirrored. `on_phase` counts pictures (a
        picture is done once all its views are)."""
        import tensorflow as tf

        from .serving import batch_size_for

        call = tf.function(lambda x: self.trunk(x, training=False), reduce_retracing=True)
        size = batch_size_for(pixels)
        found = [[] for _ in range(2 * (1 + len(CROP_CORNERS)))]
        if on_phase:
            on_phase(FEATURES_PHASE, 0, len(pixels))
        for start in range(0, len(pixels), size):
            batch = pixels[start:start + size]
            for number, view in enumerate([batch, *crops(batch)]):
                found[2 * number].append(np.asarray(call(np.ascontiguousarray(view))).astype("float32"))
                found[2 * number + 1].append(np.asarray(call(np.ascontiguousarray(view[:, :, ::-1]))).astype("float32"))
            if on_phase:
                on_phase(FEATURES_PHASE, min(start + size, len(pixels)), len(pixels))
        shape = tuple(int(n) for n in self.trunk.output_shape[1:])
        return np.concatenate([part for view in found for part in view]) if len(pixels) else np.zeros((0, *shape), "float32")


REFIT_PHASE = "Learning again from the training and validation images together"


# Where the five crops of a picture start, as shares of the room left around a crop: the four corners and
# the centre (defaults.FEW_PHOTOS_CROPS).
CROP_CORNERS = [(0, 0), (0, 1), (1, 0), (1, 1), (0.5, 0.5)]


def crops(pixels: np.ndarray, share: float | None = None) -> list[np.ndarray]:
    """Five crops of each picture (the four corners and the centre), `share` of its side (defaults.CROP_SHARE),
    each resized back to the picture's size: uint8 arrays shaped like `pixels`."""
    import cv2

    from .defaults import CROP_SHARE

    height, width = pixels.shape[1:3]
    crop_h, crop_w = round(height * (share or CROP_SHARE)), round(width * (share or CROP_SHARE))
    views = []
    for down, across in CROP_CORNERS:
        top, left = int((height - crop_h) * down), int((width - crop_w) * across)
        views.append(np.stack([cv2.resize(picture[top:top + crop_h, left:left + crop_w], (width, height),
                                          interpolation=cv2.INTER_LINEAR).reshape(picture.shape)
                               for picture in pixels]))
    return views


def _split_views(found: np.ndarray, first: int, second: int, looks: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `looks` views of `first` + `second` pictures (view after view) as two such arrays."""
    per_view = found.reshape(looks, first + second, *found.shape[1:])
    return (per_view[:, :first].reshape(-1, *found.shape[1:]), per_view[:, first:].reshape(-1, *found.shape[1:]))


def look_at_pictures(network, x_train: np.ndarray, x_val: np.ndarray, mirrors: bool, on_phase=None,
                     dtype="float32") -> tuple[np.ndarray, np.ndarray]:
    """`network`'s output for each training picture (then for each mirrored one, with `mirrors`) and for
    each validation picture.

    One phase, counted in the person's pictures: `on_phase(FEATURES_PHASE, done, total)` with `total`
    the training and validation pictures, and a training picture done once both it and its mirror
    image were looked at (so the count never reads 3,943 of 4,686 for 2,343 photos). Batch by batch
    through one compiled function (serving.predict_batch would trace a new one for each call); each
    batch's output is cast to `dtype` at once, so float16 activations never sit in memory as float32."""
    import tensorflow as tf

    from .serving import batch_size_for

    call = tf.function(lambda x: network(x, training=False), reduce_retracing=True)
    size = batch_size_for(x_train if len(x_train) else x_val)
    total = len(x_train) + len(x_val)
    plain, mirrored, val = [], [], []
    if on_phase:
        on_phase(FEATURES_PHASE, 0, total)
    for before, pixels, found in ((0, x_train, plain), (len(x_train), x_val, val)):
        for start in range(0, len(pixels), size):
            batch = pixels[start:start + size]
            found.append(np.asarray(call(np.ascontiguousarray(batch))).astype(dtype))
            if mirrors and found is plain:
                mirrored.append(np.asarray(call(np.ascontiguousarray(batch[:, :, ::-1]))).astype(dtype))
            if on_phase:
                on_phase(FEATURES_PHASE, before + min(start + size, len(pixels)), total)
    shape = tuple(int(n) for n in network.output_shape[1:])

    def joined(parts):
        return np.concatenate(parts) if parts else np.zeros((0, *shape), dtype)

    return joined(plain + mirrored), joined(val)


FEATURES_PHASE = "Looking at the pictures with the pretrained network"
MIRROR_PHASE = "Trying the validation pictures mirrored"


def mirror_verdict(alone: np.ndarray, mirrored: np.ndarray, y_val: np.ndarray) -> dict:
    """PartialTrunk.mirror_check's figures and choice from the class probabilities of each validation
    picture (`alone`) and of its mirror image. The scores before the softmax are averaged, as the saved
    model would (serving.with_mirror_average): the sum of the log probabilities ranks the classes as their
    sum does, the softmax's constant being the same for every class. Kept only with more pictures right."""
    tiny = np.finfo(np.float32).tiny  # a probability the softmax rounded to 0
    averaged = np.log(np.maximum(alone, tiny)) + np.log(np.maximum(mirrored, tiny))
    right_alone, right_averaged = np.sum(alone.argmax(1) == y_val), np.sum(averaged.argmax(1) == y_val)
    return {"phase": "mirrors", "val_accuracy": float(right_alone / len(y_val)),
            "mirrored_val_accuracy": float(right_averaged / len(y_val)), "kept": bool(right_averaged > right_alone)}


class PartialTrunk:
    """FrozenTrunk's idea for the fine-tuning phase: the part of the base that stays frozen, run once.

    Fine-tuning the top `fine_tune_layers` of a base changes only them; every layer below gives the
    same numbers for a picture in every epoch. So the pictures (and their mirror images) go through
    the lower part once, its output (the activations where the unfrozen layers start: 7 x 7 x 192
    numbers a photo for EfficientNet-Lite0's last block, kept as float16, 19 KB) is kept, and the
    `tail` (the unfrozen layers, the pooling and the new top) learns from it: on 2 cores an epoch
    over 4,100 flower photos and mirror images takes seconds instead of a pass of the whole base.
    The frozen top's features are the tail run in inference mode before fine-tuning (`pooled`).

    The tail calls the base's top in inference mode (training=False, as builder._add_base does), so its
    BatchNormalization layers keep their ImageNet statistics; unfreeze_top keeps their weights frozen too.
    None where the unfrozen layers do not start at one tensor (a residual connection crossing the cut).
    """

    def __init__(self, lower, pool, tail):
        self.lower, self.pool, self.tail = lower, pool, tail
        self.seconds_per_picture = 0.0  # the pace of the last look at pictures (features)
        self.mirrored_val = None  # the validation pictures' mirror images' activations, once mirror_check ran

    @classmethod
    def of(cls, model, config, frozen: FrozenTrunk) -> "PartialTrunk | None":
        import keras

        from .builder import BASES

        count = config.spec["base"]["fine_tune_layers"]
        base_at = next(i for i, layer in enumerate(model.layers) if layer.name in BASES)
        base = model.layers[base_at]
        if not 0 < count < len(base.layers) - 1:
            return None
        cut = base.layers[-count].input
        if isinstance(cut, (list, tuple, dict)):
            return None
        try:
            upper = keras.Model(cut, base.output, name="fine_tuned_top")
        except ValueError:  # the top layers also read something from below the cut
            return None
        lower = keras.Model(base.input, cut, name="frozen_lower")
        fed = base._inbound_nodes[0].input_tensors[0]  # what the model gives the base (rescaled pixels)
        pixels = keras.Input(shape=tuple(model.input.shape[1:]), name="pixels")
        prefix = keras.Model(model.input, fed, name="before_base")
        lower_model = keras.Model(pixels, lower(prefix(pixels), training=False), name="frozen_trunk")
        pooling = model.layers[base_at + 1]
        activations = keras.Input(shape=tuple(cut.shape[1:]), name="activations")
        pooled = pooling(upper(activations, training=False))
        pool = keras.Model(activations, pooled, name="pooled")
        tail = keras.Model(activations, frozen.head(pooled), name="tail")
        return cls(lower_model, pool, tail)

    def features(self, x_train: np.ndarray, x_val: np.ndarray, on_phase=None,
                 mirrored=False) -> tuple[np.ndarray, np.ndarray]:
        """The lower part's output for each training picture (then each mirrored one) and each validation
        picture, as float16, in one counted phase (see `look_at_pictures`)."""
        started = time.monotonic()
        found = look_at_pictures(self.lower, x_train, x_val, mirrored, on_phase, "float16")
        looked = len(x_train) * (2 if mirrored else 1) + len(x_val)
        if looked:
            self.seconds_per_picture = (time.monotonic() - started) / looked
        return found

    def mirror_check(self, x_val, y_val, activations, on_phase=None) -> dict:
        """Whether averaging each validation picture's answer with its mirror image's does better than the
        picture alone, with the model as it ends: {"phase": "mirrors", "val_accuracy",
        "mirrored_val_accuracy", "kept"}. Kept only when more validation pictures come out right; the saved
        model then does it itself (serving.with_mirror_average). Measured on the flower photos it did worse
        with EfficientNet-Lite0 (91.2 % alone against 90.5 % fine-tuned) and better by a photo or two with
        Lite2 (mirror_verdict says how the two are compared)."""
        from .serving import predict_batch

        if on_phase:
            on_phase(MIRROR_PHASE, 0, len(x_val))
        alone = predict_batch(self.tail, activations)
        self.mirrored_val = predict_batch(self.lower, x_val[:, :, ::-1]).astype("float16")
        mirrored = predict_batch(self.tail, self.mirrored_val)
        if on_phase:
            on_phase(MIRROR_PHASE, len(x_val), len(x_val))
        return mirror_verdict(alone, mirrored, y_val)

    def pooled(self, activations: np.ndarray) -> np.ndarray:
        """The frozen top's features (what FrozenTrunk.features gives) from the kept activations."""
        from .serving import predict_batch

        return predict_batch(self.pool, activations, batch_size=256).astype("float32")


def _make_budget_callback(deadline, on_plan, schedule_name: str, after_last_epoch: float = 0.0):
    """Keeps training inside a time budget that ends at `deadline` (time.monotonic()), less
    `after_last_epoch` epochs' time for what follows the last one.

    After each epoch, the pace so far (the median epoch after the first, which also traced the
    training function) says how many epochs fit before the deadline. When that number changes, the
    step-size schedule is fitted to it (so a cosine still glides to its end, a little steeper or
    gentler from there on), Keras' training function is traced again to take the new length, and
    `on_plan(epochs)` is told. So no epoch starts that would end after the deadline at that pace.
    (Defined in a function so that importing this module does not import Keras.)
    """
    import keras

    class Budget(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ran_out = False

        def start_phase(self, schedule, steps, first_epoch, last_epoch):
            self.schedule, self.steps, self.first_epoch, self.last_epoch = schedule, steps, first_epoch, last_epoch
            self.planned, self.epoch_seconds = None, []
            self.reports_plan = first_epoch == 0  # on_plan speaks of the first phase's epochs

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_started = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            now = time.monotonic()
            self.epoch_seconds.append(max(now - self.epoch_started, 1e-3))
            # The pace: the median epoch after the first, which also traced the training function.
            epoch_s = statistics.median(self.epoch_seconds[1:] or self.epoch_seconds)
            left = deadline - now - after_last_epoch * epoch_s
            planned = max(epoch + 1, min(self.last_epoch, epoch + 1 + int(left // epoch_s)))
            if planned != self.planned:  # the first plan, or the pace changed by a whole epoch or more
                self.planned = planned
                refit_schedule(schedule_name, self.schedule, (self.planned - self.first_epoch) * self.steps)
                self.model.make_train_function(force=True)
                if on_plan and self.reports_plan:
                    on_plan(self.planned)
            if epoch + 1 >= self.planned:
                self.ran_out = epoch + 1 < self.last_epoch
                self.model.stop_training = True

    return Budget()


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
                return
            except (OSError, ValueError, KeyError):
                pass
            # Keras falls back to the previous backup only when the weights do not read; a kill while
            # it rewrote the small metadata file leaves that file empty, so fall back for that too.
            previous = [(f"{path}.bkp", path) for path in (self._weights_path, self._training_metadata_path)]
            if all(os.path.exists(old) for old, _ in previous):
                for old, path in previous:
                    shutil.copyfile(old, path)
                try:
                    super().on_train_begin(logs)
                    return
                except (OSError, ValueError, KeyError):
                    pass
            shutil.rmtree(self.backup_dir, ignore_errors=True)

    return SafeBackupAndRestore(backup_dir, save_freq="epoch", delete_checkpoint=True, double_checkpoint=True)


def finished_epochs_in_backup(backup_dir: str, first_phase_epochs: int = 0) -> int:
    """How many epochs an earlier attempt finished, from the metadata BackupAndRestore keeps
    beside its checkpoint (0 when there is no backup). A finished first phase counts as
    `first_phase_epochs` when the fine-tuning phase has no backup yet."""
    for phase in ("fine-tune", "first-phase"):
        # The previous backup's metadata is what SafeBackupAndRestore falls back to when the latest is unreadable.
        for name in ("training_metadata.json", "training_metadata.json.bkp"):
            try:
                with open(os.path.join(backup_dir, phase, name)) as f:
                    # Keras counts epochs from the start of the whole run, fine-tuning included.
                    return int(json.load(f).get("epoch", 0))
            except (OSError, ValueError, TypeError):
                continue
    return first_phase_epochs if os.path.exists(os.path.join(backup_dir, "first-phase.weights.h5")) else 0


def _make_progress_callback(steps, on_batch, on_epoch, should_stop, interval_s):
    """Reports batch progress at most every `interval_s` and every finished epoch.

    Cancel is cooperative: `should_stop` is asked at the same pace, and a yes
    stops training at the end of the current call of `steps_per_execution` steps (about
    `interval_s`; train_model then goes back to the best epoch's weights).
    Keras calls `on_train_batch_end` once per call, with the call's last step.
    (Defined in a function so that importing this module does not import Keras.)
    """
    import keras

    class ProgressCallback(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.steps = steps  # per epoch; fine-tuning a frozen trunk's network has other steps
            self.epoch = 0
            self.last_report = 0.0
            self.stopped = False

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch, logs=None):
            batch = min(batch, self.steps - 1)  # an epoch's last call may run fewer steps than it names
            now = time.monotonic()
            if now - self.last_report < interval_s and batch + 1 < self.steps:
                return
            self.last_report = now
            logs = logs or {}
            if on_batch:
                on_batch(BatchProgress(self.epoch, batch + 1, self.steps,
                                       float(logs.get("loss", math.nan)),
                                       float(logs.get("accuracy", math.nan))))
            if should_stop and should_stop():
                self.stopped = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            if on_epoch:
                values = {key: float(value) for key, value in (logs or {}).items()}
                # The step size the epoch ended with: the live page draws it, schedules make it change.
                values["learning_rate"] = float(np.asarray(self.model.optimizer.learning_rate))
                on_epoch(epoch + 1, values)

    return ProgressCallback()


def _make_best_weights_callback(monitor: str, first_epoch: int = 1):
    """Keeps a copy of the weights of the epoch with the lowest `monitor` so far, so that a
    cancelled or early-stopped run ends with its best model rather than its last one. Epochs
    before `first_epoch` (1-based; see settled_epoch) are not candidates.

    The copy is in memory and taken only when an epoch improves (a few MB for these networks).
    Keras' EarlyStopping(restore_best_weights=True) does the same only when it stops the run itself.
    """
    import keras

    class BestWeights(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.reset()

        def reset(self):
            self.best_value, self.best_epoch, self.best_weights = math.inf, None, None

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(monitor)
            if epoch + 1 < first_epoch:
                return
            if value is not None and math.isfinite(value) and value < self.best_value:
                self.best_value, self.best_epoch, self.best_weights = value, epoch + 1, self.model.get_weights()

        def restore(self):
            """Put the best epoch's weights back; returns that epoch, or None if none was kept."""
            if self.best_weights is None:
                return None
            self.model.set_weights(self.best_weights)
            return self.best_epoch

    return BestWeights()
