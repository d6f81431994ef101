"""The work of one training run: load the dataset, fit, evaluate, save.

The Keras side lives in `mlcore`; this module only moves data between it and
the database rows.
"""
import logging
import shutil
import time
from pathlib import Path

import billiard
from django.conf import settings
from django.core.files.storage import default_storage

from datasets_app.versions import manifest_rows
from dlsite.jobs import ClaimLost
from mlcore import devices
from mlcore.budget import AFTER_TRAINING_SHARE
from mlcore.evaluation import evaluate
from mlcore.packing import PackItem, PackSpec, build_pack, load_pack, pack_is_ready
from mlcore.builder import build_model, unfreeze_top
from mlcore.serving import ModelInfo, fit_familiarity, float32_twin, predict_batch, save_model
from mlcore.training import finished_epochs_in_backup, train_model

from .models import TrainingRun

logger = logging.getLogger(__name__)

POOL_MIN_IMAGES = 1000  # fewer images are decoded in this process: starting a pool costs more


def pack_folder(run) -> Path:
    """Where the run's packed images live: one pack per version, input size, colour mode and resize mode."""
    version = run.version
    name = (f"version-{version.id}-{version.fingerprint[:12]}-{run.image_size}x{run.image_size}-{run.channels}ch"
            f"-{run.resize_mode}")
    return Path(settings.PACK_DIR) / name


def load_arrays(run, on_phase=None):
    """uint8 pixels, integer labels and image ids of each split of the run's dataset version,
    from its pack, which is built first if no earlier run with the same input made it; the
    building's progress goes to `on_phase(phase, done, total)` (the run's own, by default)."""
    on_phase = on_phase or run.record_phase
    class_names = run.version.class_names
    folder = pack_folder(run)
    if not pack_is_ready(str(folder)):
        index = {name: i for i, name in enumerate(class_names)}
        items = [PackItem(default_storage.path(row["file"]), index[row["label"]], row["split"], row["image_id"])
                 for row in manifest_rows(run.version)]
        on_phase("Preparing images", 0, len(items))
        build_pack(
            items, PackSpec((run.image_size, run.image_size), run.channels, settings.MAX_IMAGE_PIXELS, run.resize_mode),
            str(folder),
            processes=settings.INGEST_PROCESSES if len(items) >= POOL_MIN_IMAGES else 1,
            # Spawned, not forked, for the reason given in datasets_app.sources.examine_all.
            pool_factory=lambda processes: billiard.get_context("spawn").Pool(processes),
            on_progress=lambda done, total: on_phase("Preparing images", done, total),
        )
    return class_names, load_pack(str(folder))


def train_run(run: TrainingRun):
    started = time.monotonic()
    found = devices.configure(threads=settings.TRAINING_THREADS)
    run.record(devices=found.describe(), mixed_precision=found.mixed_precision)
    class_names, data = load_arrays(run)
    (x_train, y_train, _), (x_val, y_val, _), (x_test, y_test, test_ids) = data["train"], data["val"], data["test"]
    if len(set(y_train.tolist())) < 2:
        run.fail("The training split needs images of at least two classes.")
        return
    run.record(class_names=class_names, train_count=len(x_train), val_count=len(x_val), test_count=len(x_test))
    config = run.training_config(len(class_names))
    backup_dir = _backup_for_attempt(run)
    resumed_after = finished_epochs_in_backup(str(backup_dir), run.epochs)
    if resumed_after:
        run.record(resumed_after_epoch=resumed_after)
    epoch_started = [time.monotonic()]

    def on_epoch(epoch, logs):
        now = time.monotonic()
        run.record_epoch(epoch, logs, now - epoch_started[0])
        epoch_started[0] = now

    outcome = train_model(
        config, x_train, y_train, x_val, y_val,
        on_batch=lambda p: run.record_batch(p.epoch, p.batch, p.batches_per_epoch),
        on_epoch=on_epoch,
        should_stop=run.cancel_is_requested,
        backup_dir=str(backup_dir),
        on_phase=run.record_phase,
        # The budget counts from the worker taking the run (the pictures' packing included), and keeps
        # its last twentieth for testing and saving (mlcore/budget.py).
        deadline=started + run.time_budget_s * (1 - AFTER_TRAINING_SHARE) if run.time_budget_s else None,
        on_plan=run.record_plan,
    )

    model = float32_twin(outcome.model, lambda: _rebuild(config))
    run.record_phase("Testing on images it never saw")
    result = evaluate(predict_batch(model, x_test), y_test, class_names) if len(x_test) else None
    info = ModelInfo(class_names, config.image_size, config.channels, run.resize_mode)
    # Each attempt saves into its own folder: a worker that lost its claim never writes over the model
    # of the one that has the run now, and removes its own when finish() finds the claim gone.
    attempt_folder = run.model_folder / f"attempt-{run.attempts}"
    model_path, _ = save_model(model, info, attempt_folder)
    run.record_phase("Noting what its training pictures look like")  # for "not sure" (mlcore/familiarity.py)
    familiarity = fit_familiarity(model, x_train, y_train, x_val if len(x_val) >= 10 else x_test, seed=run.seed)
    if familiarity is not None:
        familiarity.save(attempt_folder)
    try:
        _finish(run, outcome, result, test_ids, model_path)
    except ClaimLost:
        shutil.rmtree(attempt_folder, ignore_errors=True)
        raise
    # Only now: a crash while testing or saving must still find the backup and not start over.
    shutil.rmtree(backup_dir.parent, ignore_errors=True)  # every attempt's backup
    for earlier in run.model_folder.glob("attempt-*"):  # models of attempts that died after saving
        if earlier != attempt_folder:
            shutil.rmtree(earlier, ignore_errors=True)


def _finish(run, outcome, result, test_ids, model_path):
    run.finish(
        TrainingRun.Status.CANCELLED if outcome.stopped else TrainingRun.Status.SUCCEEDED,
        best_epoch=outcome.best_epoch, stopped_early=outcome.stopped_early,
        model_file=str(model_path.relative_to(settings.MEDIA_ROOT)),
        test_accuracy=result.accuracy if result else None,
        test_loss=result.loss if result else None,
        confusion=result.confusion if result else None,
        per_class=result.per_class if result else None,
        wrong=[[int(test_ids[i]), predicted, p] for i, predicted, p in result.wrong] if result else None,
    )


def _rebuild(config):
    """The run's network built again, with the same layers trainable as after its training."""
    model = build_model(config.spec, (*config.image_size, config.channels), config.num_classes, config.weights_dir,
                        augmentation=config.augmentation, seed=config.seed)
    if config.fine_tunes:
        unfreeze_top(model, config.spec["base"]["fine_tune_layers"])
    return model


def _backup_for_attempt(run: TrainingRun) -> Path:
    """This attempt's own backup folder (models/<id>/backup/attempt-N), holding a copy of the earlier
    attempt's backup that got furthest, to continue from. Attempts never write the same files: a
    worker frozen past the stale limit that wakes while the next attempt trains would otherwise hold
    the HDF5 lock of the backup file that attempt is writing, and fail it."""
    backups = run.model_folder / "backup"
    own = backups / f"attempt-{run.attempts}"
    earlier = [folder for folder in backups.glob("attempt-*") if folder != own]
    best = max(earlier, key=lambda folder: finished_epochs_in_backup(str(folder), run.epochs), default=None)
    if best is not None and not own.exists() and finished_epochs_in_backup(str(best), run.epochs):
        try:
            shutil.copytree(best, own)
        except (OSError, shutil.Error):  # a file vanished or broke while it was copied: start over
            logger.warning("Run %s: the backup of an earlier attempt could not be copied; starting over", run.id)
            shutil.rmtree(own, ignore_errors=True)
    return own

