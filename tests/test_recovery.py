"""Surviving faults: heartbeats, the reaper, and continuing a run from its last finished epoch."""
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.utils import timezone

from mlcore.presets import preset_spec
from mlcore.training import TrainingConfig, finished_epochs_in_backup, train_model
from tests.conftest import new_run, wait_for
from training_app.models import TrainingRun
from dlsite.jobs import reap_jobs


def running(run, seconds_since_heartbeat, attempts=1, **fields):
    TrainingRun.objects.filter(id=run.id).update(
        status="running", attempts=attempts, epoch=4, worker_host="gpu-1",
        heartbeat_at=timezone.now() - timedelta(seconds=seconds_since_heartbeat), **fields)
    run.refresh_from_db()
    return run


def test_a_run_whose_worker_went_silent_is_queued_again(shapes, settings):
    settings.HEARTBEAT_STALE_S = 60
    stale, alive = running(new_run(shapes), 120), running(new_run(shapes), 5)
    assert TrainingRun.objects.reap_stale() == [stale.id]
    stale.refresh_from_db()
    alive.refresh_from_db()
    assert (stale.status, stale.worker_host, stale.attempts) == ("queued", "", 1)
    assert "its worker stopped" in stale.phase
    assert alive.status == "running"
    assert TrainingRun.objects.reap_stale() == []  # queued now: nothing more to do


def test_after_the_last_attempt_the_run_fails_with_a_clear_message(shapes, settings):
    settings.HEARTBEAT_STALE_S, settings.MAX_TRAINING_ATTEMPTS = 60, 3
    run = running(new_run(shapes), 120, attempts=3)
    assert TrainingRun.objects.reap_stale() == []
    run.refresh_from_db()
    assert run.status == "failed"
    assert "stopped 3 times" in run.error and "smaller batch size" in run.error


def test_a_silent_run_that_was_being_cancelled_ends_cancelled(shapes, settings):
    settings.HEARTBEAT_STALE_S = 60
    run = running(new_run(shapes), 120, cancel_requested=True)
    assert TrainingRun.objects.reap_stale() == []
    run.refresh_from_db()
    assert run.status == "cancelled"


def test_the_reaper_task_queues_the_run_again(shapes, settings):
    """The whole loop, with real workers and beat, is the last test of this module."""
    settings.HEARTBEAT_STALE_S = 60
    run = running(new_run(shapes), 120)
    reap_jobs()
    run.refresh_from_db()
    assert run.status == "queued"


def test_training_continues_from_the_last_finished_epoch_of_a_backup(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (16, 8, 8, 1), dtype=np.uint8), np.arange(16) % 2
    config = TrainingConfig(spec=preset_spec("dense"), image_size=(8, 8), channels=1, num_classes=2, epochs=4, batch_size=8)
    backup = str(tmp_path / "backup")

    class Crash(Exception):
        pass

    def crash_in_epoch_3(epoch, logs):
        seen.append(epoch)
        if epoch == 3:
            raise Crash  # the process "dies" after recording epoch 3, before its backup

    seen = []
    with pytest.raises(Crash):
        train_model(config, x, y, x[:0], y[:0], on_epoch=crash_in_epoch_3, backup_dir=backup)
    assert seen == [1, 2, 3] and finished_epochs_in_backup(backup) == 2

    seen = []
    train_model(config, x, y, x[:0], y[:0], on_epoch=lambda epoch, logs: seen.append(epoch), backup_dir=backup)
    assert seen == [3, 4]  # epochs 1 and 2 are not trained again
    assert finished_epochs_in_backup(backup) == 0  # the backup is removed once the run is done


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_run_whose_worker_is_killed_continues_on_a_restarted_worker(celery_workers, shapes):
    """SIGKILL to the training worker and everything it started, mid-run, as a crash or a reboot
    does; a new worker is started; the reaper notices the silence and the run continues from its
    last finished epoch, recording every epoch exactly once."""
    from training_app.tasks import train

    run = new_run(shapes, epochs=150, batch_size=8)
    train.delay(run.id)
    wait_for(lambda: run.epoch_metrics.count() >= 3, timeout=120, what="three finished epochs")
    celery_workers.kill("training")
    killed_at = run.epoch_metrics.count()
    assert TrainingRun.objects.get(id=run.id).status == "running"  # nobody knows yet
    celery_workers.start("training")

    run = wait_for(lambda: TrainingRun.objects.filter(id=run.id, status__in=TrainingRun.FINAL).first(),
                   timeout=240, what="the run to finish on the new worker")
    assert run.status == "succeeded", run.error + celery_workers.log("training") + celery_workers.log("beat")
    assert run.attempts == 2
    assert run.resumed_after_epoch is not None and 1 <= run.resumed_after_epoch <= killed_at
    epochs = list(run.epoch_metrics.values_list("epoch", flat=True))
    assert epochs == list(range(1, 151))
    assert run.model_path.exists() and not (run.model_folder / "backup").exists()


def test_the_run_page_says_when_a_run_continued_after_its_worker_stopped(alice, shapes):
    from django.urls import reverse

    run = new_run(shapes)
    TrainingRun.objects.filter(id=run.id).update(status="running", attempts=2, resumed_after_epoch=7)
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert "attempt 2\n  continued after epoch 7" in page


def test_a_backup_cut_short_by_a_kill_falls_back_to_the_one_before(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (16, 8, 8, 1), dtype=np.uint8), np.arange(16) % 2
    config = TrainingConfig(spec=preset_spec("dense"), image_size=(8, 8), channels=1, num_classes=2, epochs=5, batch_size=8)
    backup = tmp_path / "backup"

    def crash_after_epoch_3(epoch, logs):
        if epoch == 4:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        train_model(config, x, y, x[:0], y[:0], on_epoch=crash_after_epoch_3, backup_dir=str(backup))
    # The kill came while the latest weights were being written: half a file.
    latest = backup / "first-phase" / "latest.weights.h5"
    latest.write_bytes(latest.read_bytes()[:200])
    seen = []
    train_model(config, x, y, x[:0], y[:0], on_epoch=lambda epoch, logs: seen.append(epoch), backup_dir=str(backup))
    assert seen == [3, 4, 5]  # the backup of epoch 2 was read instead of the broken one of epoch 3


def test_a_backup_whose_epoch_file_was_cut_short_by_a_kill_falls_back_to_the_one_before(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (16, 8, 8, 1), dtype=np.uint8), np.arange(16) % 2
    config = TrainingConfig(spec=preset_spec("dense"), image_size=(8, 8), channels=1, num_classes=2, epochs=5,
                            batch_size=8)
    backup = tmp_path / "backup"

    def crash_after_epoch_3(epoch, logs):
        if epoch == 4:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        train_model(config, x, y, x[:0], y[:0], on_epoch=crash_after_epoch_3, backup_dir=str(backup))
    # The kill came while the small file that says which epoch the backup holds was being rewritten.
    (backup / "first-phase" / "training_metadata.json").write_text("")
    assert finished_epochs_in_backup(str(backup)) == 2
    seen = []
    train_model(config, x, y, x[:0], y[:0], on_epoch=lambda epoch, logs: seen.append(epoch), backup_dir=str(backup))
    assert seen == [3, 4, 5]  # the backup of epoch 2 was read, rather than starting over


def test_the_keras_internals_the_safe_backup_relies_on(tmp_path):
    """SafeBackupAndRestore (mlcore/training.py) reads BackupAndRestore's private `_weights_path`
    and `_training_metadata_path`, and the ".bkp" copies `double_checkpoint` keeps: a Keras version
    that renames them fails here, not in a worker after a kill."""
    from mlcore.training import _make_backup_callback

    backup = tmp_path / "backup"
    callback = _make_backup_callback(str(backup))
    assert Path(callback._weights_path) == backup / "latest.weights.h5"
    assert Path(callback._training_metadata_path) == backup / "training_metadata.json"
    assert Path(callback.backup_dir) == backup

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (16, 8, 8, 1), dtype=np.uint8), np.arange(16) % 2
    config = TrainingConfig(spec=preset_spec("dense"), image_size=(8, 8), channels=1, num_classes=2, epochs=4,
                            batch_size=8)

    def crash_after_epoch_2(epoch, logs):
        if epoch == 3:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        train_model(config, x, y, x[:0], y[:0], on_epoch=crash_after_epoch_2, backup_dir=str(backup))
    phase = backup / "first-phase"
    for name in ("latest.weights.h5", "training_metadata.json"):
        assert (phase / name).is_file() and (phase / f"{name}.bkp").is_file(), sorted(p.name for p in phase.iterdir())


@pytest.mark.parametrize("error, expected", [
    ("OOM when allocating tensor with shape[512,64,112,112] on /job:localhost/device:GPU:0", "The GPU ran out of memory"),
    ("failed to allocate memory: out of memory", "The worker ran out of memory"),
])
def test_running_out_of_memory_says_so_and_suggests_a_smaller_batch(error, expected):
    import tensorflow as tf

    from training_app.tasks import _explain

    message = _explain(tf.errors.ResourceExhaustedError(None, None, error))
    assert message.startswith(expected) and "smaller batch size" in message
    assert _explain(ValueError("something else")).startswith("Training stopped with an error: ValueError")


def test_each_attempt_writes_its_own_backup_starting_from_the_furthest_earlier_one(shapes, settings, tmp_path):
    """A worker frozen past the stale limit may wake and write its backup while the next attempt
    trains: they must never write the same file (HDF5 locks it), so each attempt has its own copy."""
    import json

    from training_app.runner import _backup_for_attempt

    settings.MEDIA_ROOT = tmp_path / "media"  # the run's files, for this test alone
    run = new_run(shapes)
    for attempt, epoch in ((1, 3), (2, 1)):
        phase = run.model_folder / "backup" / f"attempt-{attempt}" / "first-phase"
        phase.mkdir(parents=True)
        (phase / "training_metadata.json").write_text(json.dumps({"epoch": epoch}))
    run.attempts = 3
    own = _backup_for_attempt(run)
    assert own == run.model_folder / "backup" / "attempt-3"
    assert json.loads((own / "first-phase" / "training_metadata.json").read_text()) == {"epoch": 3}
    assert (run.model_folder / "backup" / "attempt-1" / "first-phase").is_dir()  # the earlier one is left as it was
