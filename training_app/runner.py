"""The work of one training run: load the dataset, fit, evaluate, save.

The Keras side lives in `mlcore`; this module only moves data between it and
the database rows and the kept files (dlsite/storage.py): a worker may start on an empty disk
on another machine, so what it reads comes from storage (through this host's cache) and what it
makes is written in a local scratch folder and then kept.
"""
import logging
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import billiard
from django.conf import settings
from django.core.cache import caches
from django.db import transaction

from datasets_app.versions import manifest_rows
from dlsite import storage
from dlsite.jobs import ClaimLost
from mlcore import devices
from mlcore.budget import AFTER_TRAINING_SHARE
from mlcore.evaluation import evaluate
from mlcore.packing import PackItem, PackSpec, build_pack, load_pack, pack_is_ready
from mlcore.progress import TESTING_PHASE
from mlcore.builder import build_model, build_without_weights, unfreeze_top
from mlcore.serving import (ModelInfo, fit_familiarity, float32_twin, predict_batch, predict_with_features, save_model,
                            with_mirror_average)
from mlcore.training import finished_epochs_in_backup, train_model

from .models import PictureAnswer, TrainingRun

logger = logging.getLogger(__name__)

POOL_MIN_IMAGES = 1000  # fewer images are decoded in this process: starting a pool costs more
# Images fetched at once from a bucket to build a pack (each a small GET): as many as boto3's pool
# of connections holds (max_pool_connections, 10 by default), which more threads would only queue for.
FETCH_THREADS = 10
PACK_READY = "ready"  # kept last in a pack's storage folder: a reader never fetches half a pack
# How long a pack's builder holds the "shared" cache's lock without renewing it (a thread renews it
# every third of that): a worker killed while building keeps the others waiting at most this long.
PACK_LOCK_S = 30
PACK_WAIT_POLL_S = 2


def pack_name(run) -> str:
    """One pack per version, input size, colour mode and resize mode."""
    version = run.version
    return (f"version-{version.id}-{version.fingerprint[:12]}-{run.image_size}x{run.image_size}-{run.channels}ch"
            f"-{run.resize_mode}")


def pack_folder(run) -> Path:
    """Where the run's packed images live with the local folder (PACK_DIR, shared by every process of
    the machine). With a bucket they are kept under packs/<name>/ and read from this host's cache."""
    return Path(settings.PACK_DIR) / pack_name(run)


def load_arrays(run, on_phase=None):
    """uint8 pixels, integer labels and image ids of each split of the run's dataset version,
    from its pack, which is built first if no earlier run with the same input made it; the
    building's progress goes to `on_phase(phase, done, total)` (the run's own, by default)."""
    on_phase = on_phase or run.record_phase
    class_names = run.version.class_names
    if storage.is_local():
        folder = pack_folder(run)
        if not pack_is_ready(str(folder)):
            _build(run, _kept_images(run), folder, on_phase)
    else:
        folder = _pack_from_bucket(run, on_phase)
    return class_names, load_pack(str(folder))


def _kept_images(run) -> list[tuple[dict, Path]]:
    """(manifest row, path) of each image of the version that is still kept, read where it is."""
    found = []
    for row in manifest_rows(run.version):
        try:
            found.append((row, storage.local_path(row["file"])))
        except FileNotFoundError:  # removed since the version was frozen: packed without it
            continue
    return found


def _build(run, images, folder: Path, on_phase):
    index = {name: i for i, name in enumerate(run.version.class_names)}
    items = [PackItem(str(path), index[row["label"]], row["split"], row["image_id"]) for row, path in images]
    on_phase("Preparing images", 0, len(items))
    build_pack(
        items, PackSpec((run.image_size, run.image_size), run.channels, settings.MAX_IMAGE_PIXELS, run.resize_mode),
        str(folder),
        processes=settings.INGEST_PROCESSES if len(items) >= POOL_MIN_IMAGES else 1,
        # Spawned, not forked, for the reason given in datasets_app.sources.examine_all.
        pool_factory=lambda processes: billiard.get_context("spawn").Pool(processes),
        on_progress=lambda done, total: on_phase("Preparing images", done, total),
    )


def _pack_from_bucket(run, on_phase) -> Path:
    """The run's pack on this host: from its cache, else fetched from the bucket, else built here and
    kept in the bucket for every other worker. One worker builds a missing pack (a lock in the
    "shared" cache, Redis when the broker is); the others wait for it to appear in the bucket."""
    prefix = f"packs/{pack_name(run)}"
    key = f"pack-building:{prefix}"
    waiting = False
    while True:
        if storage.exists(f"{prefix}/{PACK_READY}"):
            return storage.local_folder(prefix)
        with _lock(key) as holding:
            if holding:
                if storage.exists(f"{prefix}/{PACK_READY}"):  # finished between the look and the lock
                    return storage.local_folder(prefix)
                return _build_and_keep(run, prefix, on_phase)
        if not waiting:
            on_phase("Waiting for another worker to prepare the images")
            waiting = True
        time.sleep(PACK_WAIT_POLL_S)


@contextmanager
def _lock(key):
    """Whether this process took the lock `key` of the "shared" cache, which it then holds until the
    block ends: a thread renews it while the process lives, so a builder killed with SIGKILL keeps
    the others waiting at most PACK_LOCK_S."""
    cache, token = caches["shared"], uuid.uuid4().hex
    if not cache.add(key, token, PACK_LOCK_S):
        yield False
        return
    done = threading.Event()

    def renew():
        while not done.wait(PACK_LOCK_S / 3):
            caches["shared"].touch(key, PACK_LOCK_S)

    renewer = threading.Thread(target=renew, name="pack-lock", daemon=True)
    renewer.start()
    try:
        yield True
    finally:
        done.set()
        renewer.join()
        if cache.get(key) == token:
            cache.delete(key)


def _build_and_keep(run, prefix, on_phase) -> Path:
    cache = storage.host_cache()
    scratch = cache.scratch_folder()
    try:
        # Fetched all at once (one by one through local_path, the cache would make a round trip and
        # an entry per image), into the scratch folder, and gone once packed.
        images = _fetch_images(manifest_rows(run.version), scratch / "images", on_phase)
        folder = scratch / "pack"
        _build(run, images, folder, on_phase)
        on_phase("Keeping the prepared images")
        storage.save_folder(folder, prefix)
        storage.save_bytes(f"{prefix}/{PACK_READY}", b"")  # last: the pack is whole
        return cache.adopt_folder(folder, prefix)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _fetch_images(rows, folder: Path, on_phase) -> list[tuple[dict, Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    on_phase("Fetching images", 0, len(rows))

    def fetch(numbered):
        number, row = numbered
        path = folder / f"{number}{PurePosixPath(row['file']).suffix}"
        try:
            storage.copy_to_host(row["file"], path)
        except FileNotFoundError:  # removed since the version was frozen: packed without it
            return None
        return row, path

    found = []
    with ThreadPoolExecutor(FETCH_THREADS) as pool:
        for done, result in enumerate(pool.map(fetch, enumerate(rows)), 1):
            if result is not None:
                found.append(result)
            if done % 200 == 0 or done == len(rows):
                on_phase("Fetching images", done, len(rows))
    return found


@contextmanager
def _scratch():
    """A local folder for something to be made and then kept, gone afterwards."""
    folder = storage.host_cache().scratch_folder()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def train_run(run: TrainingRun):
    # With a bucket this attempt's backup is written here, on this host, and kept in the bucket after
    # each epoch; with the local folder it is written where it is kept (models/<id>/backup/).
    with _scratch() as scratch:
        _train(run, scratch)


def _train(run: TrainingRun, scratch: Path):
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
    backup_dir = _backup_for_attempt(run, scratch)
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
        on_backup=None if storage.is_local() else _BackupKeeper(run, backup_dir),
    )

    model = float32_twin(outcome.model, lambda: _rebuild(config))
    if outcome.averages_mirrors:
        model = with_mirror_average(model, lambda: build_without_weights(
            config.spec, (*config.image_size, config.channels), config.num_classes))
    run.record_phase(TESTING_PHASE, 0, len(x_test))

    def testing(done, total):
        run.record_phase(TESTING_PHASE, done, total)

    # With fewer than 10 validation pictures, familiarity is fitted on the test pictures: one look serves both.
    held_out_features = None
    if len(x_val) < 10 and len(x_test) >= 10:
        held_out_features, tested = predict_with_features(model, x_test, on_progress=testing)
    else:
        tested = predict_batch(model, x_test, on_progress=testing)
    result = evaluate(tested, y_test, class_names) if len(x_test) else None
    info = ModelInfo(class_names, config.image_size, config.channels, run.resize_mode)
    # Each attempt keeps its model in its own folder: a worker that lost its claim never writes over
    # the model of the one that has the run now, and removes its own when finish() finds the claim gone.
    attempt_prefix = _attempt_prefix(run, run.attempts)
    made = scratch / "model"
    run.record_phase("Saving the model")
    save_model(model, info, made)
    run.record_phase("Noting what its training pictures look like")  # for "not sure" (mlcore/familiarity.py)
    familiarity = fit_familiarity(model, x_train, y_train, x_val if len(x_val) >= 10 else x_test, seed=run.seed,
                                  held_out_features=held_out_features, every_feature=outcome.features)
    if familiarity is not None:
        familiarity.save(made)
    storage.save_folder(made, attempt_prefix, move=True)
    try:
        _finish(run, outcome, result, test_ids, f"{attempt_prefix}/model.keras")
    except ClaimLost:
        storage.delete_folder(attempt_prefix)
        raise
    # Only now: a crash while testing or saving must still find the backup and not start over.
    storage.delete_folder(f"{run.model_prefix}/backup")  # every attempt's backup
    for earlier in _attempt_folders(run):  # models of attempts that died after saving
        if earlier != attempt_prefix:
            storage.delete_folder(earlier)


def _attempt_prefix(run, attempt) -> str:
    return f"{run.model_prefix}/attempt-{attempt}"


def _attempt_folders(run, under="") -> set[str]:
    """The storage folders attempt-<n> directly under the run's folder (or its `under` folder)."""
    prefix = f"{run.model_prefix}/{under}".rstrip("/")
    depth = len(PurePosixPath(prefix).parts)
    folders = set()
    for kept in storage.listing(prefix):
        parts = PurePosixPath(kept.name).parts
        if len(parts) > depth + 1 and parts[depth].startswith("attempt-"):
            folders.add("/".join(parts[:depth + 1]))
    return folders


def _finish(run, outcome, result, test_ids, model_file):
    # The run ends and every test picture's answer is kept in one transaction: a worker that lost its
    # claim (ClaimLost from finish) writes no answers, and a run is never final without them.
    with transaction.atomic():
        run.finish(
            TrainingRun.Status.CANCELLED if outcome.stopped else TrainingRun.Status.SUCCEEDED,
            best_epoch=outcome.best_epoch, stopped_early=outcome.stopped_early, phase_results=outcome.phases,
            model_file=model_file,
            test_accuracy=result.accuracy if result else None,
            test_loss=result.loss if result else None,
            confusion=result.confusion if result else None,
            per_class=result.per_class if result else None,
            wrong=[[int(test_ids[i]), predicted, p] for i, predicted, p in result.wrong] if result else None,
        )
        PictureAnswer.objects.filter(run=run).delete()
        PictureAnswer.objects.bulk_create([
            PictureAnswer(run=run, image_id=int(test_ids[i]), true_class=true, predicted_class=predicted,
                          confidence=confidence)
            for i, (true, predicted, confidence) in enumerate(result.answers if result else [])
        ], batch_size=1000)


def _rebuild(config):
    """The run's network built again, with the same layers trainable as after its training."""
    model = build_model(config.spec, (*config.image_size, config.channels), config.num_classes, config.weights_dir,
                        augmentation=config.augmentation, seed=config.seed)
    if config.fine_tunes:
        unfreeze_top(model, config.spec["base"]["fine_tune_layers"])
    return model


def _backup_for_attempt(run: TrainingRun, scratch: Path | None = None) -> Path:
    """This attempt's own backup folder (models/<id>/backup/attempt-N), holding a copy of the earlier
    attempt's backup that got furthest, to continue from. Attempts never write the same files: a
    worker frozen past the stale limit that wakes while the next attempt trains would otherwise hold
    the HDF5 lock of the backup file that attempt is writing, and fail it.

    With the local folder that is the kept folder itself. With a bucket it is a folder in `scratch`
    on this host (the attempt may run on another machine than the earlier ones): the earlier
    attempts' backups are fetched from the bucket, and _BackupKeeper keeps this one there."""
    if storage.is_local():
        backups = storage.local_folder(f"{run.model_prefix}/backup")
        own = backups / f"attempt-{run.attempts}"
        earlier = [folder for folder in backups.glob("attempt-*") if folder != own]
    else:
        own = scratch / "backup"
        earlier = []
        for prefix in sorted(_attempt_folders(run, "backup")):
            if prefix == f"{run.model_prefix}/backup/attempt-{run.attempts}":
                continue
            folder = scratch / "earlier" / PurePosixPath(prefix).name
            try:
                _download_folder(prefix, folder)
                earlier.append(folder)
            except OSError:  # removed or broken while it was fetched: the others may do
                logger.warning("Run %s: the backup %s could not be fetched", run.id, prefix)
    best = max(earlier, key=lambda folder: finished_epochs_in_backup(str(folder), run.epochs), default=None)
    if best is not None and not own.exists() and finished_epochs_in_backup(str(best), run.epochs):
        try:
            shutil.copytree(best, own)
        except (OSError, shutil.Error):  # a file vanished or broke while it was copied: start over
            logger.warning("Run %s: the backup of an earlier attempt could not be copied; starting over", run.id)
            shutil.rmtree(own, ignore_errors=True)
    if scratch is not None:
        shutil.rmtree(scratch / "earlier", ignore_errors=True)
    return own


def _download_folder(prefix: str, folder: Path) -> None:
    """Every file kept under `prefix`, written under the local `folder` (not into the host's cache:
    a backup changes with each epoch, and a cached copy would not)."""
    for kept in storage.listing(prefix):
        storage.copy_to_host(kept.name, folder / kept.name[len(prefix) + 1:])


class _BackupKeeper:
    """Keeps the attempt's local backup folder in the bucket (models/<id>/backup/attempt-N/) after each
    epoch, so that a next attempt on any machine continues from it: the files that changed, the
    small metadata files (which say which epoch the weights are of) last, and the ones Keras removed
    removed there too. A failure to keep it is logged, not fatal: the run goes on, and a next
    attempt continues from an older backup or starts over."""

    def __init__(self, run, local: Path):
        self.run, self.local = run, local
        self.prefix = f"{run.model_prefix}/backup/attempt-{run.attempts}"
        self.sent: dict[str, tuple[int, int]] = {}

    def __call__(self):
        try:
            self._send()
        except ClaimLost:
            raise
        except Exception:  # noqa: BLE001 (a network or bucket error of any kind)
            logger.warning("Run %s: its backup could not be kept in the bucket", self.run.id, exc_info=True)

    def _send(self):
        files = {path.relative_to(self.local).as_posix(): path for path in self.local.rglob("*") if path.is_file()}
        for relative in sorted(files, key=lambda name: ("metadata" in PurePosixPath(name).name, name)):
            try:
                stat = files[relative].stat()
            except FileNotFoundError:
                continue
            if self.sent.get(relative) != (stat.st_mtime_ns, stat.st_size):
                storage.save_file(files[relative], f"{self.prefix}/{relative}")
                self.sent[relative] = (stat.st_mtime_ns, stat.st_size)
        for relative in set(self.sent) - set(files):
            storage.delete(f"{self.prefix}/{relative}")
            del self.sent[relative]
