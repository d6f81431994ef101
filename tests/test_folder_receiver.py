"""The one folder receiver (dlsite/uploads.py) behind both ways a folder arrives in parts, a dataset's and
a classification's: the same steps, limits, messages and abandon rule for each."""
import os
import time
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from datasets_app.folder_upload import receiver as dataset_folders
from datasets_app.models import Dataset, Upload
from dlsite import storage
from housekeeping_app.cleanup import run_cleanup
from housekeeping_app.models import CleanupReport
from predict_app.many import receiver as classification_folders
from predict_app.models import Classification
from tests.images import image_bytes
from training_app.models import TrainingRun

PICTURES = [(f"{folder}/{i}.png", image_bytes("spot", 8, seed=i)) for i, folder in enumerate("aabb")]


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def trained_run(user):
    dataset = Dataset.objects.create(owner=user, name="Shapes")
    return TrainingRun.objects.create(owner=user, dataset=dataset, preset="small_cnn", image_size=16, channels=1,
                                      epochs=1, batch_size=8, learning_rate=0.01, status="succeeded",
                                      model_file="models/1/model.keras", class_names=["a", "b"])


def start_dataset(alice, user):
    return alice.post(reverse("datasets:folder_start_new"), announced())


def start_classification(alice, user):
    return alice.post(reverse("predict:folder_start"), announced(run=trained_run(user).pk))


def announced(**fields):
    return {"folder_name": "camera", "file_count": len(PICTURES), "batch_count": 2,
            "total_bytes": sum(len(data) for _, data in PICTURES), "fingerprint": "f1", **fields}


KINDS = {"dataset": (start_dataset, Upload, "To add more images, start a new upload."),
         "classification": (start_classification, Classification, "To classify more pictures, start again.")}


def send(alice, answer, index, part, paths=None):
    return alice.post(f"{answer['batch_url_prefix']}{index}/", {
        "files": [SimpleUploadedFile(name.split("/")[-1], data, "image/png") for name, data in part],
        "paths": [name for name, _ in part] if paths is None else paths})


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_both_kinds_take_a_folder_the_same_way(alice, user, kind):
    start, model, sent_already = KINDS[kind]
    answer = start(alice, user).json()
    row = model.objects.get(pk=answer["upload"])
    assert (row.status, answer["resumed"], answer["expected_batches"]) == ("receiving", False, 2)

    assert send(alice, answer, 2, PICTURES[:2]).json()["message"] == (
        "This folder was announced in 2 parts; part 3 is not one of them.")
    assert send(alice, answer, 0, PICTURES[:2], paths=["a/0.png"]).json()["message"] == (
        "This part has 2 files but 1 file paths; each file needs its path.")
    climbing = send(alice, answer, 0, PICTURES[:1], paths=["../0.png"])
    assert climbing.status_code == 400 and "points outside the archive" in climbing.json()["message"]
    assert send(alice, answer, 0, PICTURES[:2]).json() == {"stored": True, "received_batches": [0]}
    assert send(alice, answer, 0, PICTURES[:2]).json()["stored"] is False  # a retry of a part that had arrived
    assert alice.get(answer["state_url"]).json() == {"status": "receiving", "expected_batches": 2,
                                                     "received_batches": [0]}
    early = alice.post(answer["finish_url"])
    assert early.status_code == 409 and early.json() == {
        "message": "1 of the 2 parts of this folder have not arrived yet. Press Resume, or pick the same folder "
                   "again, to send them.", "missing_batches": [1]}
    assert start(alice, user).json()["resumed"] is (kind == "dataset")  # a classification's run is new here
    assert send(alice, answer, 1, PICTURES[2:]).json()["received_batches"] == [0, 1]
    finished = alice.post(answer["finish_url"])
    assert finished.status_code == 200 and finished.json()["status"] == "queued"
    assert alice.post(answer["finish_url"]).json()["status"] == "queued"  # finishing twice is harmless
    late = send(alice, answer, 1, PICTURES[2:])
    assert late.status_code == 409 and late.json()["message"].endswith(sent_already)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_part_with_too_many_files_is_refused_with_a_message(alice, user, settings, kind):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3
    start, _, _ = KINDS[kind]
    answer = start(alice, user).json()
    response = send(alice, answer, 0, PICTURES)
    assert response.status_code == 400 and response.json() == {"message": "Send at most 3 files at a time."}


def test_both_kinds_of_folder_whose_sending_stopped_are_given_up_by_the_clean_up(alice, user, settings):
    settings.UPLOAD_ABANDON_S = 3600
    old = timezone.now() - timedelta(hours=2)
    dataset_answer = start_dataset(alice, user).json()
    classification_answer = start_classification(alice, user).json()
    for answer in (dataset_answer, classification_answer):
        assert send(alice, answer, 0, PICTURES[:2]).status_code == 200
    upload = Upload.objects.get(pk=dataset_answer["upload"])
    job = Classification.objects.get(pk=classification_answer["upload"])
    assert [dataset_folders.abandoned(time.time()), classification_folders.abandoned(time.time())] == [[], []]

    Upload.objects.filter(pk=upload.pk).update(created_at=old)
    Classification.objects.filter(pk=job.pk).update(created_at=old)
    # The newest kept file of each folder (dlsite/uploads.py last_arrival) says when the last part arrived.
    for receiver, row in ((dataset_folders, upload), (classification_folders, job)):
        for kept in storage.listing(receiver.prefix(row)):
            os.utime(storage.local_path(kept.name), (old.timestamp(),) * 2)  # two hours ago
    run_cleanup()
    upload.refresh_from_db()
    job.refresh_from_db()
    assert (upload.status, upload.error) == ("failed", "Abandoned: no files arrived for 1 hour. Pick the folder again "
                                                       "to send it.")
    assert (job.status, job.error) == ("failed", "Abandoned: no pictures arrived for 1 hour. Pick the folder again to "
                                                 "send it, or press Retry to classify the pictures that arrived.")
    assert not storage.folder_exists(dataset_folders.prefix(upload))  # a dataset's parts go,
    assert job.images.count() == 2 and storage.folder_exists(classification_folders.prefix(job))  # a classification's stay
    assert CleanupReport.objects.get().abandoned_uploads == 2
