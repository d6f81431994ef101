"""Classifications of many pictures, pretrained weights and the clean-up on a bucket (a real S3
endpoint: moto's server, tests/s3.py), calling the code the workers and the web run directly; on the
local folder the other tests of these areas cover them."""
import dataclasses
import hashlib
import io
import threading
import zipfile

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from datasets_app.models import Dataset, DatasetVersion, Image
from datasets_app.sources import archive_limits
from dlsite import storage
from housekeeping_app.cleanup import Cleanup, run_cleanup
from housekeeping_app.diskuse import measure
from mlcore.builder import KeptWeights, has_weights
from mlcore.familiarity import Judgement
from mlcore.pretrained import CATALOGUE, WeightsRefused, store_verified
from mlcore.presets import available_presets, preset_spec
from mlcore.serving import ModelInfo
from predict_app.many import classify, receiver, sorted_zip
from predict_app.models import Classification
from pretrained_app import weights
from pretrained_app.jobs import run_download
from pretrained_app.models import WeightsDownload
from tests.images import CLASSES, image_bytes, make_zip
from tests.test_pretrained import server, stand_ins  # noqa: F401 (fixtures)
from training_app.models import TrainingRun

from . import s3

pytestmark = pytest.mark.django_db

DAY = 24 * 3600


@pytest.fixture
def bucket(settings, s3_endpoint, tmp_path):
    """This test's site keeps its files in a new bucket; the local media folder stays empty."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return s3.use_bucket(settings, s3_endpoint, tmp_path)


def keys(s3_endpoint, bucket, prefix=""):
    return s3.keys(s3_endpoint, bucket, prefix)


# ---- classifying many pictures


class SpotFinder:
    """A stand-in for a trained model (mlcore.serving.Predictor): the classes of tests/images.py, the
    brightest picture's class "spot"; enough to see every picture read, judged and kept."""

    info = ModelInfo(list(CLASSES), (16, 16), 1)

    def judge_arrays(self, arrays, batch_size=32):
        probabilities = np.full((len(arrays), len(CLASSES)), 0.1, np.float32)
        probabilities[:, 2] = 0.8
        return probabilities, [Judgement(2, 0.8, "") for _ in arrays]


class Beating:
    lost = threading.Event()


@pytest.fixture
def run(user):
    dataset = Dataset.objects.create(owner=user, name="shapes")
    return TrainingRun.objects.create(owner=user, dataset=dataset, preset="small_cnn", model_spec=preset_spec("small_cnn"),
                                      image_size=16, channels=1, class_names=list(CLASSES), epochs=2,
                                      batch_size=8, learning_rate=0.01)


def test_a_zip_is_classified_into_the_bucket_and_its_files_go_with_it(
        bucket, s3_endpoint, settings, user, alice, run, django_capture_on_commit_callbacks):
    pictures = {f"holiday/{n}.png": image_bytes(seed=n) for n in range(3)}
    pictures["holiday/notes.txt"] = b"not a picture"
    job = Classification.objects.create(owner=user, run=run, name="holiday.zip")
    job.zip_file.save("holiday.zip", ContentFile(make_zip(pictures)))
    assert keys(s3_endpoint, bucket) == [job.zip_file.name]

    classify(Classification.objects.claim(job.id), SpotFinder(), archive_limits(), Beating())
    rows = list(job.images.order_by("name"))
    assert [(row.name, row.label) for row in rows] == [(f"holiday/{n}.png", "spot") for n in range(3)]
    kept = keys(s3_endpoint, bucket, f"classifications/{job.id}/")
    assert {row.file.name for row in rows} | {row.thumbnail for row in rows if row.thumbnail} == set(kept)
    assert storage.read_bytes(rows[0].file.name) == pictures["holiday/0.png"]
    assert not (settings.MEDIA_ROOT / "classifications").exists()  # nothing kept on this host's disk

    # Read back from the bucket: the sorted zip and the pictures through the site (ownership checked).
    with zipfile.ZipFile(sorted_zip(job)) as archive:
        assert sorted(archive.namelist()) == [f"spot/{n}.png" for n in range(3)]
        assert archive.read("spot/1.png") == pictures["holiday/1.png"]
    answer = alice.get(reverse("predict:classification_picture", args=[job.id, rows[2].id]))
    assert answer.status_code == 200 and b"".join(answer.streaming_content) == pictures["holiday/2.png"]

    with django_capture_on_commit_callbacks(execute=True):
        job.delete()
    assert keys(s3_endpoint, bucket) == []


def test_a_folders_parts_are_kept_in_the_bucket_and_their_arrival_read_from_it(bucket, s3_endpoint, settings, user,
                                                                             run):
    job = Classification.objects.create(owner=user, run=run, name="holiday", status="receiving", expected_batches=2)
    part = [(f"holiday/{n}.png", SimpleUploadedFile(f"{n}.png", image_bytes(seed=n))) for n in range(2)]
    assert receiver.receive(job, 0, part)[0]
    assert keys(s3_endpoint, bucket) == [f"classifications/{job.id}/00000-000.png",
                                         f"classifications/{job.id}/00000-001.png"]
    newest = max(kept.modified.timestamp() for kept in storage.listing(job.folder))
    # Given up only once nothing has arrived for UPLOAD_ABANDON_S, counted from the newest picture.
    Classification.objects.filter(id=job.id).update(created_at=job.created_at.replace(year=2020))
    assert receiver.abandoned(newest + settings.UPLOAD_ABANDON_S - 5) == []
    assert [row.id for row in receiver.abandoned(newest + settings.UPLOAD_ABANDON_S + 5)] == [job.id]


# ---- pretrained weights


@pytest.fixture
def real_weights(weights_dir, monkeypatch):
    """The weights_dir fixture's files, with the catalogue checking for exactly them (as the real
    files are checked: EfficientNetB0 by MD5 and size, MobileNetV2 by size)."""
    folder, saved = weights_dir
    for name in ("mobilenetv2", "efficientnetb0"):
        data = (folder / CATALOGUE[name].file_name).read_bytes()
        digest = hashlib.md5(data).hexdigest() if CATALOGUE[name].algorithm else None
        monkeypatch.setitem(CATALOGUE, name, dataclasses.replace(CATALOGUE[name], digest=digest, size=len(data)))
    return folder, saved


def upload_weights(name, data):
    return weights.keep(lambda folder: store_verified([data], CATALOGUE[name], folder, total=len(data)))


def test_weights_are_kept_in_the_bucket_and_a_worker_trains_from_a_checked_cached_copy(
        bucket, s3_endpoint, settings, tmp_path, real_weights):
    import keras

    from mlcore.builder import build_model

    folder, saved = real_weights
    settings.PRETRAINED_WEIGHTS_DIR = str(tmp_path / "not-used")
    entry = CATALOGUE["mobilenetv2"]
    data = (folder / entry.file_name).read_bytes()
    assert upload_weights("mobilenetv2", data) == len(data)
    assert keys(s3_endpoint, bucket) == [f"weights/{entry.file_name}", f"weights/{entry.file_name}.sha256"]
    assert storage.read_bytes(f"weights/{entry.file_name}.sha256").decode().strip() == hashlib.sha256(data).hexdigest()
    assert not (tmp_path / "not-used").exists()

    # The web answers from one listing: MobileNetV2 can be trained, EfficientNetB0 not yet.
    on_site = weights.on_site()
    assert isinstance(on_site, KeptWeights) and has_weights("mobilenetv2", on_site)
    assert not has_weights("efficientnetb0", on_site)
    available = {preset["key"]: preset["available"] for preset in available_presets(on_site)}
    assert available["mobilenetv2"] and not available["efficientnetb0"]

    # A worker with an empty cache: fetched, checked once, and the network built from it.
    spec = preset_spec("mobilenetv2")
    local = weights.weights_folder_for(spec)
    assert local.startswith(str(settings.LOCAL_CACHE_DIR))
    assert (tmp_path / "cache" / "weights" / entry.file_name).read_bytes() == data
    model = build_model(spec, (32, 32, 3), 3, weights_dir=local)
    base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    assert all(np.array_equal(np.asarray(w), s) for w, s in zip(base.weights, saved["mobilenetv2"]))

    # Checked once: the next training of this host trusts its checked copy without hashing it again.
    cached = storage.local_path(f"weights/{entry.file_name}")
    assert cached.with_name(cached.name + weights.CHECKED_SUFFIX).is_file()


def test_a_damaged_cached_copy_is_refused_and_fetched_again(bucket, settings, tmp_path, real_weights):
    folder, _ = real_weights
    entry = CATALOGUE["mobilenetv2"]
    data = (folder / entry.file_name).read_bytes()
    upload_weights("mobilenetv2", data)
    cached = storage.local_path(f"weights/{entry.file_name}")  # in this host's cache, not yet checked
    cached.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, one bit changed: only SHA-256 sees it
    local = weights.weights_folder_for(preset_spec("mobilenetv2"))
    assert not (tmp_path / "cache" / "weights" / entry.file_name).exists()  # the builder says "not available"
    assert local == str(tmp_path / "cache" / "weights")
    weights.weights_folder_for(preset_spec("mobilenetv2"))  # the next try fetches it again
    assert (tmp_path / "cache" / "weights" / entry.file_name).read_bytes() == data


def test_a_file_failing_its_checks_is_never_kept_in_the_bucket(bucket, s3_endpoint, real_weights):
    with pytest.raises(WeightsRefused):
        upload_weights("mobilenetv2", b"not an h5 file")
    assert keys(s3_endpoint, bucket) == []
    assert weights.kept_files() == {}


def test_the_staff_page_uploads_into_the_bucket(bucket, s3_endpoint, client, django_user_model, real_weights):
    folder, _ = real_weights
    staff = django_user_model.objects.create_user("sam", password="a-long-test-password", is_staff=True)
    client.force_login(staff)
    entry = CATALOGUE["efficientnetb0"]
    data = (folder / entry.file_name).read_bytes()
    client.post(reverse("pretrained:upload", args=["efficientnetb0"]),
                {"file": SimpleUploadedFile(entry.file_name, data)})
    assert f"weights/{entry.file_name}" in keys(s3_endpoint, bucket)
    rows = {row["name"]: row for row in client.get(reverse("pretrained:status")).json()["networks"]}
    assert rows["efficientnetb0"]["available"] and not rows["mobilenetv2"]["available"]
    assert "weights/ in the site" in client.get(reverse("pretrained:page")).content.decode()


def test_the_command_and_a_download_job_keep_their_files_in_the_bucket(bucket, s3_endpoint, settings, server,  # noqa: F811
                                                                      stand_ins):  # noqa: F811
    settings.PRETRAINED_WEIGHTS_URL = server.url
    settings.PRETRAINED_WEIGHTS_DIR = ""  # no local folder is needed with a bucket
    for name, body in stand_ins.items():
        server.serve(name, body)
    out = io.StringIO()
    call_command("fetch_pretrained", "mobilenetv2", stdout=out)
    mobilenet = CATALOGUE["mobilenetv2"].file_name
    assert storage.read_bytes(f"weights/{mobilenet}") == stand_ins["mobilenetv2"]
    assert f"kept weights/{mobilenet} (in the storage bucket)" in out.getvalue()
    out = io.StringIO()
    call_command("fetch_pretrained", "mobilenetv2", stdout=out)
    assert "is already there and passes its checks" in out.getvalue()

    download = WeightsDownload.objects.create(base="efficientnetb0")
    run_download(WeightsDownload.objects.claim(download.id))
    download.refresh_from_db()
    assert (download.status, download.bytes_done) == ("done", len(stand_ins["efficientnetb0"]))
    assert storage.read_bytes(f"weights/{CATALOGUE['efficientnetb0'].file_name}") == stand_ins["efficientnetb0"]
    assert set(weights.kept_files()) == {mobilenet, CATALOGUE["efficientnetb0"].file_name}


# ---- the clean-up and "Disk use"


def test_the_clean_up_lists_the_bucket_and_removes_only_orphans_past_the_grace(bucket, s3_endpoint, settings, user, run,
                                                                              tmp_path):
    settings.CLEANUP_GRACE_S = DAY
    settings.PACK_DIR = tmp_path / "packs"  # not the packs other tests of this process left locally
    dataset = run.dataset
    needed = storage.save_bytes(f"datasets/{dataset.id}/ab/needed.png", b"n" * 100)
    Image.objects.create(dataset=dataset, file=needed, original_name="a.png", width=1, height=1, channels=1,
                         sha256="ab" * 32)
    orphan = storage.save_bytes(f"datasets/{dataset.id}/cd/orphan.png", b"o" * 100)
    job = Classification.objects.create(owner=user, run=run, name="kept", status="done")
    picture = storage.save_bytes(f"classifications/{job.id}/0000000.png", b"p" * 50)
    gone_job = storage.save_bytes("classifications/987654/0000000.png", b"g" * 50)
    gone_model = storage.save_bytes("models/987654/attempt-1/model.keras", b"m" * 70)
    model = storage.save_bytes(f"models/{run.id}/attempt-1/model.keras", b"m" * 70)
    version = DatasetVersion.objects.create(dataset=dataset, number=1, fingerprint="f", image_count=0,
                                            manifest=storage.save_bytes("versions/1/manifest.json.gz", b"[]"))
    pack = storage.save_bytes(f"packs/version-{version.id}-abc-16x16-1ch-squash/train_x.npy", b"x" * 30)
    gone_pack = storage.save_bytes("packs/version-987654-abc-16x16-1ch-squash/train_x.npy", b"x" * 30)
    everything = set(keys(s3_endpoint, bucket))

    # Within the grace, only what no row could be about to claim goes: rows of deleted things.
    first = run_cleanup()
    gone = {gone_job, gone_model, gone_pack}
    assert {item.name for item in first.removed} == {"classifications/987654", "models/987654",
                                                     "packs/version-987654-abc-16x16-1ch-squash"}
    assert set(keys(s3_endpoint, bucket)) == everything - gone

    # A day later, the orphan goes too; what rows refer to stays.
    later = Cleanup()
    later.grace_cutoff += 2 * DAY
    result = later.run()
    assert [(item.kind, item.name, item.bytes) for item in result.removed] == [("orphans", orphan, 100)]
    assert set(keys(s3_endpoint, bucket)) == everything - gone - {orphan}
    assert {needed, picture, model, pack} <= set(keys(s3_endpoint, bucket))


def test_disk_use_is_measured_from_the_bucket(bucket, settings, tmp_path, user, run):
    settings.PACK_DIR = tmp_path / "packs"
    dataset = run.dataset
    storage.save_bytes(f"datasets/{dataset.id}/ab/a.png", b"i" * 100)
    storage.save_bytes(f"datasets/{dataset.id}/thumbs/ab/a.jpg", b"t" * 10)
    storage.save_bytes(f"models/{run.id}/attempt-1/model.keras", b"m" * 5000)
    job = Classification.objects.create(owner=user, run=run, name="holiday", status="queued")
    job.zip_file.save("holiday.zip", ContentFile(b"c" * 200))
    storage.save_bytes(f"classifications/{job.id}/0000000.png", b"c" * 50)
    storage.save_bytes("packs/version-1-abc/train_x.npy", b"p" * 400)
    storage.save_bytes("weights/x.h5", b"w" * 7)
    found = measure()
    assert found["users"] == [{"username": "alice", "images": 110, "models": 5000, "uploads": 0,
                               "classified": 250, "total": 5360}]
    kinds = found["kinds"]
    assert (kinds["images"], kinds["thumbnails"], kinds["models"], kinds["classifications"]) == (100, 10, 5000, 250)
    assert (kinds["packs"], kinds["other"]) == (400, 7)
