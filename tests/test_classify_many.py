"""Classifying many pictures: a zip or a folder in, the job (called here in-process; the worker test
runs it on a real worker), the results page, the spreadsheet and the sorted zip, and a job that goes
on where a lost worker stopped."""
import csv
import io
import os
import zipfile
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from predict_app.models import Classification
from dlsite import storage
from dlsite.jobs import reap_jobs
from predict_app.tasks import classify_many
from tests.images import CLASSES, image_bytes, make_zip


@pytest.fixture
def model(shapes_model):
    return shapes_model


def pictures(n=12, seed=0):
    """(name, bytes) of `n` shape pictures in two folders, the folder names not being classes."""
    return [(f"{'day1' if i % 2 else 'day2'}/{CLASSES[i % 3]}-{i}.png",
             image_bytes(CLASSES[i % 3], 16, seed=seed + i)) for i in range(n)]


def start_zip(alice, model, files):
    upload = SimpleUploadedFile("holiday.zip", make_zip(dict(files)), "application/zip")
    response = alice.post(reverse("predict:many_zip"), {"run": model.pk, "file": upload})
    job = Classification.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("predict:classification", args=[job.pk])
    return job


def test_a_zip_of_pictures_is_classified_and_kept(alice, model):
    job = start_zip(alice, model, pictures() + [("notes/readme.png", b"not a picture")])
    assert job.status == "queued" and job.name == "holiday.zip"
    classify_many(job.id)
    job.refresh_from_db()
    assert (job.status, job.total, job.done, job.attempts) == ("done", 13, 13, 1)
    used = job.images.exclude(label="")
    assert used.count() == 12
    assert all(p.label in CLASSES and 0 < p.confidence <= 1 and len(p.probabilities) == 3 for p in used)
    assert all(p.confidence == pytest.approx(max(p.probabilities), abs=1e-5) for p in used)
    broken = job.images.get(name="notes/readme.png")
    assert broken.label == "" and "could not be used" in broken.error

    page = alice.get(reverse("predict:classification", args=[job.pk]))
    text = page.content.decode()
    assert "Done: 13 pictures, 1 file could not be used." in text
    assert "Files that could not be used" in text and "notes/readme.png" in text
    assert sum(n for _, n, _ in page.context["counts"]) == 12
    assert len(page.context["page"]) == 12
    assert alice.get(reverse("predict:classification_status", args=[job.pk])).json()["finished"] is True


def test_the_spreadsheet_has_every_picture_and_every_probability(alice, model):
    job = start_zip(alice, model, pictures(6) + [("=cmd.png", b"x")])
    classify_many(job.id)
    response = alice.get(reverse("predict:classification_csv", args=[job.pk]))
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["file", "class", "confidence", *sorted(CLASSES), "not sure", "problem"]
    assert len(rows) == 8
    by_name = {row[0]: row for row in rows[1:]}
    assert by_name["'=cmd.png"][1] == "" and "could not be used" in by_name["'=cmd.png"][-1]
    good = by_name["day2/horizontal-0.png"]
    assert sum(float(p) for p in good[3:6]) == pytest.approx(1, abs=1e-4)
    assert good[1] == sorted(CLASSES)[max(range(3), key=lambda i: float(good[3 + i]))]


def test_the_sorted_zip_has_a_folder_per_class_and_one_for_not_sure(alice, model):
    job = start_zip(alice, model, pictures(9))
    classify_many(job.id)
    job.images.filter(pk=job.images.order_by("id").first().pk).update(confidence=0.01)
    response = alice.get(reverse("predict:classification_zip", args=[job.pk]))
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    names = archive.namelist()
    unsure = job.unsure_pictures()
    assert len(names) == 9 and unsure.filter(confidence=0.01).exists()
    assert sum(name.startswith("not sure/") for name in names) == unsure.count()
    for picture in job.images.exclude(id__in=unsure.values("id")):
        assert f"{picture.label}/{picture.name.split('/')[-1]}" in names
    assert archive.read(names[0]).startswith(b"\x89PNG")


def test_filters_sort_and_the_not_sure_threshold(alice, model):
    job = start_zip(alice, model, pictures(9))
    classify_many(job.id)
    url = reverse("predict:classification", args=[job.pk])
    label = job.images.first().label
    shown = alice.get(url, {"class": label}).context["page"]
    assert len(shown) == job.images.filter(label=label).count() and all(p.label == label for p in shown)
    assert alice.post(reverse("predict:classification_unsure", args=[job.pk]), {"percent": 100}).status_code == 302
    job.refresh_from_db()
    assert job.unsure_below == 0.6  # refused: from 1 to 99
    alice.post(reverse("predict:classification_unsure", args=[job.pk]), {"percent": 99})
    job.refresh_from_db()
    assert job.unsure_below == 0.99
    unsure = alice.get(url, {"unsure": "1", "sort": "sure"}).context["page"]
    assert all(p.confidence < 0.99 or p.doubt for p in unsure)
    assert len(unsure) == job.unsure_pictures().count()
    confidences = [p.confidence for p in unsure]
    assert confidences == sorted(confidences, reverse=True)
    # Why, in words on the page itself (not only in a tooltip).
    page = alice.get(url, {"unsure": "1"}).content.decode()
    for picture in unsure:
        words = picture.doubt_in_words
        assert words and f'<span class="why">{words[0].upper()}{words[1:]}</span>' in page


def test_a_folder_arrives_in_parts_and_is_classified_once(alice, model):
    files = pictures(6)
    start = alice.post(reverse("predict:folder_start"), {
        "run": model.pk, "folder_name": "camera", "file_count": 6, "batch_count": 2,
        "total_bytes": sum(len(data) for _, data in files), "fingerprint": "f1"})
    assert start.status_code == 201
    answer = start.json()
    job = Classification.objects.get(pk=answer["upload"])
    assert job.status == "receiving"

    def send(index, part):
        return alice.post(f"{answer['batch_url_prefix']}{index}/", {
            "files": [SimpleUploadedFile(name.split("/")[-1], data, "image/png") for name, data in part],
            "paths": [name for name, _ in part]})

    assert send(0, files[:3]).json()["stored"] is True
    early = alice.post(answer["finish_url"])
    assert early.status_code == 409 and early.json()["missing_batches"] == [1]
    assert send(0, files[:3]).json()["stored"] is False  # a retry of a part that had arrived
    assert send(1, files[3:]).json()["received_batches"] == [0, 1]
    again = alice.post(reverse("predict:folder_start"), {
        "run": model.pk, "folder_name": "camera", "file_count": 6, "batch_count": 2,
        "total_bytes": sum(len(data) for _, data in files), "fingerprint": "f1"})
    assert again.json()["resumed"] is True and again.json()["upload"] == job.pk
    finished = alice.post(answer["finish_url"])
    assert finished.json()["url"] == reverse("predict:classification", args=[job.pk])
    job.refresh_from_db()
    assert (job.status, job.total) == ("queued", 6)
    classify_many(job.id)
    job.refresh_from_db()
    assert job.status == "done" and job.images.exclude(label="").count() == 6
    assert sorted(job.images.values_list("name", flat=True)) == sorted(name for name, _ in files)
    assert send(1, files[3:]).status_code == 409  # nothing more once it is sent


def test_a_lost_worker_is_replaced_and_the_next_attempt_goes_on_where_it_stopped(alice, model, settings):
    job = start_zip(alice, model, pictures(6))
    classify_many(job.id)
    # As if the first attempt had classified three pictures and then died.
    first = list(job.images.order_by("id")[:3].values_list("id", "confidence"))
    job.images.exclude(id__in=[i for i, _ in first]).update(label="", confidence=None, probabilities=None)
    Classification.objects.filter(pk=job.pk).update(status="running", done=3, heartbeat_at=timezone.now() - timedelta(
        seconds=settings.HEARTBEAT_STALE_S + 5))
    reap_jobs()
    job.refresh_from_db()
    assert job.status == "queued"
    classify_many(job.id)
    job.refresh_from_db()
    assert (job.status, job.attempts, job.done) == ("done", 2, 6)
    assert list(job.images.order_by("id")[:3].values_list("id", "confidence")) == first  # not done again
    assert job.images.exclude(label="").count() == 6


def test_an_attempt_cut_off_while_reading_a_zip_goes_on_after_the_pictures_it_stored(alice, model, settings):
    job = start_zip(alice, model, pictures(6))
    classify_many(job.id)
    names = list(job.images.order_by("id").values_list("name", flat=True))
    kept = list(job.images.order_by("id")[:3].values_list("id", "confidence"))
    job.images.exclude(id__in=[i for i, _ in kept]).delete()  # the first attempt stored three, then died
    Classification.objects.filter(pk=job.pk).update(status="running", done=3, heartbeat_at=timezone.now() - timedelta(
        seconds=settings.HEARTBEAT_STALE_S + 5))
    reap_jobs()
    classify_many(job.id)
    job.refresh_from_db()
    assert (job.status, job.attempts, job.done, job.total) == ("done", 2, 6, 6)
    assert list(job.images.order_by("id").values_list("name", flat=True)) == names  # each once, in order
    assert list(job.images.order_by("id")[:3].values_list("id", "confidence")) == kept  # not done again
    assert job.images.exclude(label="").count() == 6


def test_a_running_classification_says_how_long_is_left(alice, model):
    job = start_zip(alice, model, pictures(3))
    Classification.objects.filter(pk=job.pk).update(status="running", done=50, total=200,
                                                    started_at=timezone.now() - timedelta(seconds=20))
    state = alice.get(reverse("predict:classification_status", args=[job.pk])).json()
    assert state["percent"] == 25 and state["text"] == "Classified 50 of 200 pictures, about 1 min left"


def test_after_the_last_attempt_it_fails_and_retry_goes_on(alice, model, settings):
    job = start_zip(alice, model, pictures(3))
    Classification.objects.filter(pk=job.pk).update(status="running", attempts=settings.MAX_PREDICT_ATTEMPTS,
                                                    heartbeat_at=timezone.now() - timedelta(hours=1))
    reap_jobs()
    job.refresh_from_db()
    assert job.status == "failed" and "press Retry" in job.error
    page = alice.get(reverse("predict:classification", args=[job.pk])).content.decode()
    assert "press Retry" in page and ">Retry</button>" in page
    alice.post(reverse("predict:classification_retry", args=[job.pk]))
    job.refresh_from_db()
    assert job.status == "queued" and job.error == ""
    classify_many(job.id)
    job.refresh_from_db()
    assert job.status == "done" and job.images.exclude(label="").count() == 3


def test_a_second_delivery_does_nothing(alice, model):
    job = start_zip(alice, model, pictures(3))
    classify_many(job.id)
    classify_many(job.id)  # Redis delivers a message again after a worker died
    job.refresh_from_db()
    assert job.attempts == 1 and job.status == "done"


@pytest.mark.parametrize("content, words", [
    (make_zip({"a.txt": b"hello"}), "This zip holds no pictures"),
    (make_zip({"a.pdf": b"%PDF-1.4 a document", "b.pdf": b"%PDF-1.4 another"}), "This zip holds no pictures"),
    (b"", "The submitted file is empty."),
    (make_zip({"../up.png": image_bytes("spot", 8)}), "points outside the archive"),
    (b"not a zip at all", "not a zip archive"),
], ids=["text", "documents", "empty", "outside", "not-a-zip"])  # a zip's bytes hold the time: xdist's processes must agree on names
def test_a_zip_that_cannot_be_used_is_refused_with_a_message(alice, model, content, words):
    """The page comes back at the form's address with the form saying why, as a dataset's zip does: the
    page's script shows that form in place (a redirect left it nothing to show)."""
    upload = SimpleUploadedFile("bad.zip", content, "application/zip")
    response = alice.post(reverse("predict:many_zip"), {"run": model.pk, "file": upload})
    assert Classification.objects.count() == 0
    assert response.status_code == 200
    assert words in " ".join(response.context["many_form"].errors["file"])
    form = response.content.decode().split('id="many-form"')[1].split("</form>")[0]
    assert 'class="errorlist' in form and words in form.replace("&#x27;", "'")


def test_deleting_removes_the_pictures(alice, model):
    job = start_zip(alice, model, pictures(3))
    classify_many(job.id)
    assert storage.folder_exists(job.folder)
    with django_capture_on_commit():
        response = alice.post(reverse("predict:classification_delete", args=[job.pk]))
    assert response.status_code == 302 and not Classification.objects.exists()
    assert not storage.folder_exists(job.folder)


def django_capture_on_commit():
    """Run the on-commit callbacks of the block (the test wraps everything in one transaction)."""
    from django.test import TestCase

    return TestCase.captureOnCommitCallbacks(execute=True)


def test_chosen_pictures_go_to_a_datasets_inbox_with_the_models_class_suggested(alice, model, shapes):
    from datasets_app.ingestion import ingest_upload
    from datasets_app.models import Upload

    job = start_zip(alice, model, pictures(6, seed=5000))  # pictures the dataset does not have already
    classify_many(job.id)
    chosen = list(job.images.order_by("id")[:2])
    response = alice.post(reverse("predict:classification_to_inbox", args=[job.pk]),
                          {"dataset": shapes.pk, "which": "chosen", "pictures": [p.pk for p in chosen] + ["x", "99999"]})
    assert response.status_code == 302 and response["Location"] == reverse("datasets:detail", args=[shapes.pk])
    upload = shapes.uploads.get(status="queued")
    assert upload.expected_files == 2 and upload.suggestions == {p.name.split("/")[-1]: p.label for p in chosen}
    staged = storage.local_folder(f"{upload.staging_folder()}/000000").iterdir()  # linked, not copied, in the request
    assert {path.stat().st_ino for path in staged} == {os.stat(p.file.path).st_ino for p in chosen}
    ingest_upload(Upload.objects.claim(upload.id))
    assert all(os.path.exists(p.file.path) for p in chosen)  # the classification keeps its own
    added = shapes.images.filter(upload=upload)
    assert sorted(added.values_list("original_name", "suggested_label", "image_class")) == sorted(
        (p.name.split("/")[-1], p.label, None) for p in chosen)
    queue = alice.get(reverse("datasets:inbox_queue", args=[shapes.pk])).json()["images"]
    assert {image["suggested"] for image in queue if image["name"] in upload.suggestions} == {p.label for p in chosen}


def test_sending_nothing_or_to_someone_elses_dataset_is_refused(alice, model, other_user):
    from datasets_app.models import Dataset

    job = start_zip(alice, model, pictures(3))
    classify_many(job.id)
    theirs = Dataset.objects.create(owner=other_user, name="Theirs")
    url = reverse("predict:classification_to_inbox", args=[job.pk])
    refused = alice.post(url, {"dataset": theirs.pk, "which": "chosen", "pictures": [job.images.first().pk]},
                         follow=True)
    assert "Select a valid choice" in refused.content.decode() and not theirs.uploads.exists()
    mine = Dataset.objects.create(owner=job.owner, name="Mine")
    empty = alice.post(url, {"dataset": mine.pk, "which": "chosen"}, follow=True)
    assert "Choose the pictures to send first" in empty.content.decode() and not mine.uploads.exists()
