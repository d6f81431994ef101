"""The datasets side on a bucket (a real S3 endpoint: moto's server, tests/s3.py): a zip and a folder
sent in batches are ingested into the bucket by the domain functions a worker runs, the images are
served, counted and deleted from there, and nothing is written under the media folder."""
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from datasets_app import sources
from datasets_app.folder_upload import copy_batch, receiver, staging_folder
from datasets_app.ingestion import ingest_upload
from datasets_app.models import Dataset, Upload
from datasets_app.starting import start_zip_upload
from datasets_app.usage import bytes_stored
from datasets_app.versions import freeze, manifest_rows
from dlsite import storage
from tests import s3
from tests.images import image_bytes, labelled_zip
from tests.test_folder_upload import add_url, class_folder, finish, in_batches, send_batch, start


@pytest.fixture
def bucket(settings, s3_endpoint, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"  # must stay empty
    return s3.use_bucket(settings, s3_endpoint, tmp_path)


@pytest.fixture
def keys(s3_endpoint, bucket):
    return lambda prefix="": s3.keys(s3_endpoint, bucket, prefix)


@pytest.fixture
def dataset(user):
    return Dataset.objects.create(owner=user, name="Shapes")


def kept_images(dataset):
    """Storage names of the dataset's image files and thumbnails, as its rows name them."""
    names = set()
    for file, thumbnail in dataset.images.values_list("file", "thumbnail"):
        names |= {file, thumbnail} - {""}
    return names


def nothing_local(settings, tmp_path):
    """Nothing under the media folder, and no scratch left in the host cache."""
    media = list(settings.MEDIA_ROOT.rglob("*")) if settings.MEDIA_ROOT.exists() else []
    partial = tmp_path / "cache" / "partial"
    return media == [] and (not partial.exists() or list(partial.iterdir()) == [])


@pytest.mark.parametrize("processes", [1, 2])
def test_a_zip_is_ingested_into_the_bucket(dataset, user, keys, settings, tmp_path, monkeypatch, processes):
    monkeypatch.setattr(sources, "POOL_MIN_FILES", 1)  # processes=2: the spawned pool writes the scratch files
    upload = start_zip_upload(dataset, "shapes.zip", _zip_file(labelled_zip(per_class=10)), user)
    zip_name = upload.file.name
    assert keys("uploads/") == [zip_name]
    ingest_upload(Upload.objects.claim(upload.id), processes=processes)
    upload.refresh_from_db()
    assert (upload.status, upload.accepted, upload.file.name) == ("done", 30, "")
    images = kept_images(dataset)
    assert len(images) >= 30 and keys(f"datasets/{dataset.id}/") == sorted(images)
    assert keys("uploads/") == []  # the zip, once read
    assert nothing_local(settings, tmp_path)
    # Served through the site to its owner, from the bucket
    image = dataset.images.first()
    client = _client(user)
    response = client.get(reverse("datasets:image", args=[dataset.pk, image.pk]))
    assert response.status_code == 200 and b"".join(response.streaming_content) == storage.read_bytes(image.file.name)
    assert response["Content-Type"] == "image/png"
    storage.delete(image.file.name)
    assert client.get(reverse("datasets:image", args=[dataset.pk, image.pk])).status_code == 404


def test_a_folder_sent_in_batches_is_kept_in_the_bucket_and_read_from_there(alice, dataset, keys, settings, tmp_path):
    files = class_folder(per_class=3)
    answer = start(alice, add_url(dataset), files, 4).json()
    batches = in_batches(files, 4)
    for index, items in enumerate(batches):
        assert send_batch(alice, answer, index, items).json()["stored"] is True
    assert send_batch(alice, answer, 0, batches[0]).json()["stored"] is False  # sent twice, kept once
    upload = Upload.objects.get()
    prefix = staging_folder(upload)
    staged = keys(f"{prefix}/")
    assert len(staged) == len(files) + len(batches) and f"{prefix}/000000.json" in staged
    assert nothing_local(settings, tmp_path)  # the web process kept nothing of its own
    assert finish(alice, answer).status_code == 200
    # What the worker's task does, on another machine with an empty disk
    ingest_upload(Upload.objects.claim(upload.id))
    upload.refresh_from_db()
    assert (upload.status, upload.accepted) == ("done", len(files))
    assert sorted(dataset.images.values_list("original_name", flat=True)) == sorted(files)
    assert keys(f"datasets/{dataset.id}/") == sorted(kept_images(dataset))
    assert keys("uploads/") == []  # the staged batches, once read
    assert nothing_local(settings, tmp_path)


def test_a_folder_whose_sending_stopped_is_found_and_discarded_on_the_bucket(alice, dataset, keys, settings):
    settings.UPLOAD_ABANDON_S = 3600
    files = class_folder(per_class=2)
    answer = start(alice, add_url(dataset), files, 3).json()
    send_batch(alice, answer, 0, in_batches(files, 3)[0])
    upload = Upload.objects.get()
    Upload.objects.filter(id=upload.id).update(created_at=timezone.now() - timedelta(hours=2))
    assert receiver.abandoned(time.time()) == []  # a part arrived just now (the bucket's time says so)
    assert receiver.abandoned(time.time() + 7200) == [upload]
    assert keys(f"{staging_folder(upload)}/") != [] and receiver.discard(upload)
    assert keys("uploads/") == []


def test_kept_pictures_are_copied_into_a_batch_and_read(dataset, user, keys, settings, tmp_path):
    storage.save_bytes("classifications/9/00000-000.png", image_bytes("spot", 8, seed=1))
    storage.save_bytes("classifications/9/00000-001.png", image_bytes("vertical", 8, seed=2))
    upload = Upload.objects.create(dataset=dataset, kind=Upload.Kind.FOLDER, status=Upload.Status.QUEUED,
                                   original_name="2 pictures", expected_files=2, expected_batches=1,
                                   received_batches=[0])
    assert copy_batch(upload, 0, [("a.png", "classifications/9/00000-000.png"),
                                  ("b.png", "classifications/9/00000-001.png")]) is True
    ingest_upload(Upload.objects.claim(upload.id))
    assert sorted(dataset.images.values_list("original_name", flat=True)) == ["a.png", "b.png"]
    assert len(keys("classifications/9/")) == 2  # the originals stay
    assert keys("uploads/") == [] and nothing_local(settings, tmp_path)


def test_usage_versions_and_deleting_work_on_the_bucket(dataset, user, keys, s3_endpoint, bucket,
                                                        django_capture_on_commit_callbacks):
    upload = start_zip_upload(dataset, "shapes.zip", _zip_file(labelled_zip(per_class=10)), user)
    ingest_upload(Upload.objects.claim(upload.id))
    client = s3.client(s3_endpoint)
    sizes = {item["Key"]: item["Size"] for item in client.list_objects_v2(Bucket=bucket)["Contents"]}
    waiting = start_zip_upload(dataset, "more.zip", _zip_file(b"z" * 700), user)
    assert bytes_stored(user) == sum(sizes.values()) + 700
    version = freeze(dataset, user)
    assert keys(f"versions/{dataset.id}/") == [version.manifest.name]
    assert len(manifest_rows(version)) == 30
    with django_capture_on_commit_callbacks(execute=True):
        dataset.delete()
    assert keys() == [] and not Upload.objects.filter(id=waiting.id).exists()


def _zip_file(data):
    from django.core.files.base import ContentFile
    return ContentFile(data, name="shapes.zip")


def _client(user):
    from django.test import Client
    client = Client()
    client.force_login(user)
    return client
