"""Training, its packs, models, backups and exports on a bucket (issue 18): a worker or web process on
another machine starts with an empty disk and shares only the database, Redis and the bucket. Each
test here moves to a new, empty host cache (another LOCAL_CACHE_DIR) to be that other machine."""
import io
import threading
import time
import zipfile

import numpy as np
import pytest

from dlsite import storage
from tests import s3
from tests.conftest import new_run
from tests.images import image_bytes
from training_app import exporting, runner
from training_app.models import ModelExport, TrainingRun
from training_app.tasks import train

pytestmark = pytest.mark.django_db


@pytest.fixture
def bucket(shapes, settings, s3_endpoint, tmp_path):
    """The `shapes` dataset's images copied into a new bucket, which the site then keeps its files in
    (ingestion is another part's work); the bucket's name."""
    images = {kept.name: storage.read_bytes(kept.name) for kept in storage.listing(f"datasets/{shapes.id}")}
    name = s3.use_bucket(settings, s3_endpoint, tmp_path / "host-a")
    for image, data in images.items():
        storage.save_bytes(image, data)
    settings.PACK_DIR = tmp_path / "no-packs-here"  # a bucket's packs live in the bucket and host caches
    return name


def another_host(settings, tmp_path, name):
    settings.LOCAL_CACHE_DIR = tmp_path / name / "cache"


def keys(s3_endpoint, bucket, prefix):
    return s3.keys(s3_endpoint, bucket, prefix)


def test_a_pack_is_built_once_kept_in_the_bucket_and_fetched_by_another_host(
        bucket, shapes, settings, s3_endpoint, tmp_path, monkeypatch):
    built = []
    real_build = runner.build_pack
    monkeypatch.setattr(runner, "build_pack", lambda *a, **k: built.append(1) or real_build(*a, **k))
    first, second = (TrainingRun.objects.claim(new_run(shapes, image_size=12).id) for _ in range(2))
    names, arrays = runner.load_arrays(first)
    prefix = f"packs/{runner.pack_name(first)}/"
    assert keys(s3_endpoint, bucket, prefix) == [prefix + name for name in sorted(
        [f"{split}_{part}.npy" for split in ("train", "val", "test") for part in ("x", "y", "ids")] + ["ready"])]
    assert not (tmp_path / "no-packs-here").exists()
    assert runner.load_arrays(first)[1]["train"][0].shape == (24, 12, 12, 1) and len(built) == 1  # this host's copy

    another_host(settings, tmp_path, "host-b")
    _, again = runner.load_arrays(second)
    assert len(built) == 1 and names == ["horizontal", "spot", "vertical"]
    for split in ("train", "val", "test"):
        for a, b in zip(arrays[split], again[split]):
            assert np.array_equal(a, b)
    assert str(storage.local_folder(prefix.rstrip("/"))).startswith(str(tmp_path / "host-b"))


def test_a_worker_waits_for_the_pack_another_is_building_instead_of_building_it_too(
        bucket, shapes, settings, s3_endpoint, tmp_path, monkeypatch):
    from django.core.cache import caches

    run = TrainingRun.objects.claim(new_run(shapes, image_size=12).id)
    expected = runner.load_arrays(run)[1]
    prefix = f"packs/{runner.pack_name(run)}"
    storage.delete(f"{prefix}/ready")  # as while its builder is still sending it
    key = f"pack-building:{prefix}"
    assert caches["shared"].add(key, "the other worker", 60)
    monkeypatch.setattr(runner, "PACK_WAIT_POLL_S", 0.1)
    monkeypatch.setattr(runner, "build_pack", lambda *a, **k: pytest.fail("built a second time"))
    phases = []

    def other_worker_finishes():
        time.sleep(1)
        storage.save_bytes(f"{prefix}/ready", b"")
        caches["shared"].delete(key)

    finisher = threading.Thread(target=other_worker_finishes)
    finisher.start()
    try:
        another_host(settings, tmp_path, "host-b")
        _, arrays = runner.load_arrays(run, on_phase=lambda phase, done=0, total=0: phases.append(phase))
    finally:
        finisher.join()
        caches["shared"].delete(key)
    assert phases == ["Waiting for another worker to prepare the images"]
    assert np.array_equal(arrays["train"][0], expected["train"][0])


def test_a_pack_whose_builder_was_killed_is_built_by_the_worker_waiting_for_it(
        bucket, shapes, settings, tmp_path, monkeypatch):
    from django.core.cache import caches

    run = TrainingRun.objects.claim(new_run(shapes, image_size=12).id)
    key = f"pack-building:packs/{runner.pack_name(run)}"
    assert caches["shared"].add(key, "a worker killed with SIGKILL: nobody renews its lock", 1)
    monkeypatch.setattr(runner, "PACK_WAIT_POLL_S", 0.1)
    phases = []
    try:
        _, arrays = runner.load_arrays(run, on_phase=lambda phase, done=0, total=0: phases.append(phase))
        assert caches["shared"].get(key) is None  # the lock it took is given back
    finally:
        caches["shared"].delete(key)
    assert phases[0] == "Waiting for another worker to prepare the images" and "Preparing images" in phases
    assert arrays["train"][0].shape == (24, 12, 12, 1)


def test_a_model_is_kept_in_the_bucket_and_served_from_another_hosts_empty_cache(
        bucket, shapes, settings, s3_endpoint, tmp_path, alice, django_capture_on_commit_callbacks):
    from predict_app.services import classify_uploads, predictor_for
    from django.core.files.uploadedfile import SimpleUploadedFile

    run = new_run(shapes, epochs=2)
    train(run.id)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.model_file == f"models/{run.id}/attempt-1/model.keras"
    # (familiarity.npz beside them too, with enough pictures held out: tests/test_familiarity.py)
    assert keys(s3_endpoint, bucket, f"models/{run.id}/") == [
        f"models/{run.id}/attempt-1/{name}" for name in ("model.json", "model.keras")]
    assert not list((tmp_path / "host-a" / "cache" / "partial").iterdir())  # nothing left of its scratch folders

    another_host(settings, tmp_path, "web")
    predictor = predictor_for(run)
    assert predictor_for(run) is predictor  # loaded once
    picture = SimpleUploadedFile("spot.png", image_bytes("spot", 20, seed=3))
    assert classify_uploads(predictor, [picture], previews=False)[0]["label"] in run.class_names

    download = alice.get(f"/runs/{run.id}/model.keras")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == storage.read_bytes(run.model_file)
    description = alice.get(f"/runs/{run.id}/model.json")
    assert b"class_names" in b"".join(description.streaming_content)

    with django_capture_on_commit_callbacks(execute=True):
        run.delete()
    assert keys(s3_endpoint, bucket, f"models/{run.id}/") == []


def test_a_later_attempt_on_another_host_continues_from_the_backup_kept_in_the_bucket(
        bucket, shapes, settings, s3_endpoint, tmp_path, monkeypatch):
    run = new_run(shapes, epochs=3)
    real_record = TrainingRun.record_epoch

    def dies_in_the_second_epoch(self, epoch, logs, seconds):
        if epoch >= 2:
            raise SystemExit("the worker died")  # not an Exception: nothing of the task's handling runs
        real_record(self, epoch, logs, seconds)

    monkeypatch.setattr(TrainingRun, "record_epoch", dies_in_the_second_epoch)
    with pytest.raises(SystemExit):
        train(run.id)
    backup = f"models/{run.id}/backup/attempt-1/"
    kept = keys(s3_endpoint, bucket, backup)
    assert f"{backup}first-phase/training_metadata.json" in kept and f"{backup}first-phase/latest.weights.h5" in kept

    monkeypatch.setattr(TrainingRun, "record_epoch", real_record)
    TrainingRun.objects.filter(id=run.id).update(status=TrainingRun.Status.QUEUED)  # as the reaper does
    another_host(settings, tmp_path, "host-b")
    train(run.id)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.attempts == 2 and run.resumed_after_epoch == 1
    assert keys(s3_endpoint, bucket, f"models/{run.id}/") == [
        f"models/{run.id}/attempt-2/{name}" for name in ("model.json", "model.keras")]


def test_an_export_is_made_kept_in_the_bucket_and_opened_from_it(
        bucket, shapes, settings, s3_endpoint, tmp_path, django_capture_on_commit_callbacks):
    run = new_run(shapes, epochs=1)
    train(run.id)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error

    another_host(settings, tmp_path, "default-worker")
    export = ModelExport.objects.claim(ModelExport.request(run, "keras")[0].id)
    exporting.make(export)
    export.refresh_from_db()
    assert export.status == "ready", export.error
    assert export.file == f"models/{run.id}/exports/keras.zip"
    assert keys(s3_endpoint, bucket, f"models/{run.id}/exports/") == [export.file]
    with export.open() as handle:
        data = handle.read()
    assert len(data) == export.size_bytes and "model.keras" in zipfile.ZipFile(io.BytesIO(data)).namelist()

    storage.delete(export.file)
    assert export.open() is None and export.status == "failed"
