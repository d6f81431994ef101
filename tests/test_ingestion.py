"""The ingestion task's work, called directly (the worker path is in test_journey_worker)."""
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.test import override_settings

from datasets_app.sample_data import sample_digits_zip
from datasets_app.models import Dataset, Upload
from datasets_app.tasks import ingest
from tests.images import image_bytes, labelled_zip


@pytest.fixture
def dataset(user):
    return Dataset.objects.create(owner=user, name="Shapes")


def add_upload(dataset, data, name="shapes.zip"):
    upload = Upload(dataset=dataset, original_name=name)
    upload.file.save(name, ContentFile(data), save=True)
    return upload


def outcomes(upload, kind):
    return dict(upload.outcomes.filter(kind=kind).values_list("file_name", "detail"))


def test_it_stores_every_image_with_its_label_split_and_size(dataset, settings):
    upload = add_upload(dataset, labelled_zip(per_class=10))
    ingest(upload.id)
    upload.refresh_from_db()
    assert (upload.status, upload.accepted, upload.done, upload.total) == ("done", 30, 30, 30)
    assert dataset.class_counts() == [("horizontal", 10), ("spot", 10), ("vertical", 10)]
    assert dataset.split_counts() == {"train": 24, "val": 3, "test": 3}
    image = dataset.images.first()
    assert (image.width, image.height, image.channels, len(image.sha256)) == (16, 16, 1, 64)
    media = Path(settings.MEDIA_ROOT).resolve()
    assert all(media in Path(i.file.path).resolve().parents for i in dataset.images.all())


def test_corrupt_and_unsupported_files_are_skipped_and_reported(dataset):
    extra = {"shapes/spot/bad.png": b"\x89PNG\r\n\x1a\n garbage",
             "shapes/spot/fake.jpg": b"this is text",
             "shapes/spot/cut.png": image_bytes("spot", 64)[:100]}
    upload = add_upload(dataset, labelled_zip(per_class=4, extra=extra))
    ingest(upload.id)
    upload.refresh_from_db()
    assert upload.status == "done" and upload.accepted == 12
    reasons = outcomes(upload, "rejected")
    assert set(reasons) == set(extra) and upload.rejected == 3
    assert "not an image" in reasons["shapes/spot/fake.jpg"]


@override_settings(MAX_IMAGE_PIXELS=100)
def test_an_image_with_too_many_pixels_is_skipped(dataset):
    upload = add_upload(dataset, labelled_zip(per_class=2, size=8, extra={"shapes/spot/huge.png": image_bytes("spot", 100)}))
    ingest(upload.id)
    upload.refresh_from_db()
    assert upload.accepted == 6
    assert "too large" in outcomes(upload, "rejected")["shapes/spot/huge.png"]


def test_a_second_delivery_of_the_same_upload_does_nothing(dataset):
    upload = add_upload(dataset, labelled_zip(per_class=3))
    ingest(upload.id)
    ingest(upload.id)
    assert dataset.images.count() == 9


@override_settings(MAX_ZIP_UNPACKED_BYTES=3000)
def test_a_zip_that_unpacks_to_too_much_fails_and_keeps_what_was_stored_before(dataset):
    first = add_upload(dataset, labelled_zip(per_class=3, size=8))
    with override_settings(MAX_ZIP_UNPACKED_BYTES=10**9):
        ingest(first.id)
    assert dataset.images.count() == 9
    second = add_upload(dataset, labelled_zip(per_class=30, size=32))
    ingest(second.id)
    second.refresh_from_db()
    assert second.status == "failed" and "limit" in second.error
    assert dataset.images.count() == 9


def test_the_sample_is_scikit_learns_digits_as_class_folders(dataset):
    upload = add_upload(dataset, sample_digits_zip(), "digits.zip")
    ingest(upload.id)
    upload.refresh_from_db()
    assert upload.accepted == 1797
    assert [name for name, _ in dataset.class_counts()] == [str(d) for d in range(10)]
    assert dataset.typical_size() == 8 and dataset.channels() == 1


# Two ingestion processes storing the same content-addressed file at once (the same picture under
# several classes): whoever comes second must find the work done, not fail the upload.


def test_storing_a_file_another_process_created_between_the_check_and_the_write_succeeds(tmp_path, monkeypatch):
    from mlcore import examine

    data = b"the same picture, twice" * 100
    real_makedirs = os.makedirs

    def other_process_wins(path, exist_ok=False):
        real_makedirs(path, exist_ok=exist_ok)
        Path(path, "ab.png").write_bytes(data)  # the other process stores it first

    monkeypatch.setattr(examine.os, "makedirs", other_process_wins)
    examine.store_file(str(tmp_path), "datasets/1/ab/ab.png", data)
    assert (tmp_path / "datasets/1/ab/ab.png").read_bytes() == data


def test_storing_a_file_another_process_is_still_writing_leaves_it_whole(tmp_path):
    from mlcore import examine

    data = b"a picture" * 1000
    target = tmp_path / "datasets/1/ab/ab.png"
    target.parent.mkdir(parents=True)
    target.write_bytes(data[:100])  # the other process has written only its start (or crashed there)
    examine.store_file(str(tmp_path), "datasets/1/ab/ab.png", data)
    assert target.read_bytes() == data
    assert [p.name for p in target.parent.iterdir()] == ["ab.png"]  # no temporary file left behind


def test_many_threads_storing_the_same_file_at_once_all_succeed(tmp_path):
    from mlcore import examine

    data = b"one picture under many classes" * 5000
    start = threading.Barrier(8)

    def store(_):
        start.wait()
        examine.store_file(str(tmp_path), "datasets/1/cd/cd.png", data)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(store, range(8)))  # re-raises what a thread raised
    assert (tmp_path / "datasets/1/cd/cd.png").read_bytes() == data
