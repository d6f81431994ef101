"""Lifecycles that always end: deleting datasets and uploads (rows and files), uploads whose
worker died (heartbeat, reaper, attempts), Retry, Cancel, and the dataset page while images are read."""
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.db import DatabaseError
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from datasets_app import ingestion
from dlsite.heartbeat import Heartbeat
from datasets_app.folder_upload import save_batch
from datasets_app.ingestion import ingest_upload
from datasets_app.models import Dataset, Upload
from dlsite.jobs import reap_jobs
from tests.conftest import new_run, wait_for
from tests.images import image_bytes, labelled_zip, make_zip
from training_app.models import TrainingRun


def zip_upload(dataset, data=None, name="shapes.zip", **fields):
    upload = Upload(dataset=dataset, original_name=name, **fields)
    upload.file.save(name, ContentFile(data if data is not None else labelled_zip(per_class=5)), save=True)
    return upload


def media(name):
    return Path(django_settings.MEDIA_ROOT) / name


def stale(upload, seconds=120, attempts=1, status="running"):
    Upload.objects.filter(id=upload.id).update(status=status, attempts=attempts, started_at=timezone.now(),
                                               heartbeat_at=timezone.now() - timedelta(seconds=seconds))
    upload.refresh_from_db()
    return upload


# Deleting a dataset

def test_deleting_a_dataset_with_a_finished_run_works(alice, shapes):
    run = new_run(shapes)
    TrainingRun.objects.filter(id=run.id).update(status="succeeded")
    response = alice.post(reverse("datasets:delete", args=[shapes.pk]))
    assert response.status_code == 302 and response.url == reverse("datasets:list")
    assert not Dataset.objects.filter(id=shapes.id).exists()
    assert not TrainingRun.objects.filter(id=run.id).exists()


def test_a_dataset_in_use_is_kept_and_the_message_names_what_uses_it(alice, shapes):
    run = new_run(shapes)  # queued
    upload = zip_upload(shapes, name="holiday.zip", status="running")
    response = alice.post(reverse("datasets:delete", args=[shapes.pk]), follow=True)
    text = response.content.decode()
    assert "holiday.zip" in text and f"run #{run.id}" in text
    assert Dataset.objects.filter(id=shapes.id).exists() and Upload.objects.filter(id=upload.id).exists()


def test_deleting_a_dataset_removes_its_files(alice, shapes, django_capture_on_commit_callbacks):
    run = new_run(shapes)
    TrainingRun.objects.filter(id=run.id).update(status="succeeded")
    manifest = media(run.version.manifest.name)
    failed = zip_upload(shapes, b"not a zip", name="broken.zip", status="failed")
    folder = Upload.objects.create(dataset=shapes, kind=Upload.Kind.FOLDER, original_name="photos", status="failed")
    save_batch(folder, 0, [("cats/a.png", ContentFile(image_bytes("spot"), name="a.png"))])
    paths = [media(shapes.media_folder), manifest, media(failed.file.name), media(folder.staging_folder())]
    assert all(path.exists() for path in paths)
    with django_capture_on_commit_callbacks(execute=True):
        alice.post(reverse("datasets:delete", args=[shapes.pk]))
    assert [path for path in paths if path.exists()] == []


# The files of uploads

def test_a_read_zip_is_removed_and_a_failed_one_kept_for_retry(user):
    dataset = Dataset.objects.create(owner=user, name="d")
    good, bad = zip_upload(dataset), zip_upload(dataset, b"not a zip", name="bad.zip")
    good_file, bad_file = media(good.file.name), media(bad.file.name)
    for upload in (good, bad):
        ingest_upload(Upload.objects.claim(upload.id))
        upload.refresh_from_db()
    assert (good.status, good.accepted, good.file.name, good_file.exists()) == ("done", 15, "", False)
    assert bad.status == "failed" and bad_file.exists() and bad.can_retry


def test_deleting_an_upload_removes_its_images_and_its_file(alice, user, django_capture_on_commit_callbacks):
    dataset = Dataset.objects.create(owner=user, name="d")
    first = zip_upload(dataset)
    ingest_upload(Upload.objects.claim(first.id))
    second = zip_upload(dataset, labelled_zip(per_class=3, size=24), name="more.zip")
    ingest_upload(Upload.objects.claim(second.id))
    assert dataset.images.count() == 24
    failed = zip_upload(dataset, b"not a zip", name="broken.zip", status="failed")
    with django_capture_on_commit_callbacks(execute=True):
        for upload in (Upload.objects.get(id=second.id), failed):
            response = alice.post(reverse("datasets:upload_delete", args=[dataset.pk, upload.pk]))
            assert response.status_code == 302
    assert set(Upload.objects.filter(dataset=dataset).values_list("id", flat=True)) == {first.id}
    assert dataset.images.count() == 15 and set(dataset.images.values_list("upload", flat=True)) == {first.id}
    assert not media(failed.file.name).exists()


def test_an_upload_being_read_cannot_be_deleted(alice, user):
    dataset = Dataset.objects.create(owner=user, name="d")
    upload = zip_upload(dataset, status="running")
    alice.post(reverse("datasets:upload_delete", args=[dataset.pk, upload.pk]))
    assert Upload.objects.filter(id=upload.id).exists() and media(upload.file.name).exists()


# Cancel and Retry

def test_cancelling_a_queued_upload_ends_it_and_no_worker_takes_it(alice, user):
    dataset = Dataset.objects.create(owner=user, name="d")
    upload = zip_upload(dataset)
    assert dataset.is_busy()
    alice.post(reverse("datasets:upload_cancel", args=[dataset.pk, upload.pk]))
    upload.refresh_from_db()
    assert upload.status == "cancelled" and not dataset.is_busy()
    assert Upload.objects.claim(upload.id) is None


def test_cancelling_an_upload_queued_again_after_its_worker_died_keeps_nothing_of_it(alice, user):
    dataset = Dataset.objects.create(owner=user, name="d")
    upload = zip_upload(dataset)
    ingest_upload(Upload.objects.claim(upload.id))  # as if its worker had written these rows and died
    Upload.objects.filter(id=upload.id).update(status="queued")  # as the reaper leaves it
    alice.post(reverse("datasets:upload_cancel", args=[dataset.pk, upload.pk]))
    assert Upload.objects.get(id=upload.id).status == "cancelled"
    assert dataset.images.count() == 0 and upload.outcomes.count() == 0


def test_retry_reads_a_failed_upload_again(alice, user, django_capture_on_commit_callbacks):
    dataset = Dataset.objects.create(owner=user, name="d")
    upload = zip_upload(dataset, status="failed", attempts=3, error="The worker stopped")
    with django_capture_on_commit_callbacks() as sent:
        alice.post(reverse("datasets:upload_retry", args=[dataset.pk, upload.pk]))
    upload.refresh_from_db()
    assert (upload.status, upload.error, len(sent)) == ("queued", "", 1)
    ingest_upload(Upload.objects.claim(upload.id))
    upload.refresh_from_db()
    assert (upload.status, upload.accepted, dataset.images.count()) == ("done", 15, 15)


def test_the_dataset_page_offers_retry_cancel_and_delete_where_they_work(alice, user):
    dataset = Dataset.objects.create(owner=user, name="d")
    queued = zip_upload(dataset)
    failed = zip_upload(dataset, status="failed", error="broken")
    gone = zip_upload(dataset, status="failed", error="broken")
    media(gone.file.name).unlink()
    page = alice.get(reverse("datasets:detail", args=[dataset.pk])).content.decode()
    assert f'id="upload-cancel-{queued.id}"' in page and f'id="upload-delete-{queued.id}"' not in page
    assert f'id="upload-retry-{failed.id}"' in page and f'id="upload-delete-{failed.id}"' in page
    assert f'id="upload-retry-{gone.id}"' not in page


# Workers that stop: heartbeat, reaper, attempts

def test_an_upload_whose_worker_went_silent_is_queued_again(user, settings):
    settings.HEARTBEAT_STALE_S = 60
    dataset = Dataset.objects.create(owner=user, name="d")
    silent, alive = stale(zip_upload(dataset), 120), stale(zip_upload(dataset), 5)
    assert Upload.objects.reap_stale() == [silent.id]
    silent.refresh_from_db()
    alive.refresh_from_db()
    assert (silent.status, silent.attempts, alive.status) == ("queued", 1, "running")
    assert Upload.objects.reap_stale() == []


def test_after_the_last_attempt_the_upload_fails_keeping_nothing(user, settings):
    settings.HEARTBEAT_STALE_S, settings.MAX_INGEST_ATTEMPTS = 60, 3
    dataset = Dataset.objects.create(owner=user, name="d")
    upload = zip_upload(dataset)
    ingest_upload(Upload.objects.claim(upload.id))  # as if the third attempt had written its rows and died
    assert dataset.images.count() == 15
    upload = stale(upload, 120, attempts=3)
    reap_jobs()
    upload.refresh_from_db()
    assert upload.status == "failed" and not dataset.is_busy()
    assert upload.error.startswith("The worker stopped while reading these files, 3 times; nothing from them was kept.")
    assert "Press Retry" in upload.error
    assert dataset.images.count() == 0 and upload.outcomes.count() == 0


def test_a_new_attempt_counts_each_image_once(user):
    dataset = Dataset.objects.create(owner=user, name="d")
    data = labelled_zip(per_class=5)
    upload = zip_upload(dataset, data)
    ingest_upload(Upload.objects.claim(upload.id))
    # The first attempt wrote its rows and was then taken for dead: the reaper queued it again.
    upload.file.save("shapes.zip", ContentFile(data), save=False)
    Upload.objects.filter(id=upload.id).update(status="queued", file=upload.file.name)
    ingest_upload(Upload.objects.claim(upload.id))
    upload.refresh_from_db()
    assert (upload.status, upload.attempts, upload.accepted, upload.duplicates) == ("done", 2, 15, 0)
    assert dataset.images.count() == 15


def test_an_attempt_slow_to_begin_leaves_the_next_attempts_rows_alone(user):
    """A worker claimed the upload, then stalled before reading it; the reaper gave it to another
    attempt, which read it all. The first, waking, must not remove what the second wrote."""
    dataset = Dataset.objects.create(owner=user, name="d")
    upload = zip_upload(dataset)
    first = Upload.objects.claim(upload.id)
    Upload.objects.filter(id=upload.id).update(status="queued")  # the reaper: silent too long
    ingest_upload(Upload.objects.claim(upload.id))
    ingest_upload(first)  # wakes up
    upload.refresh_from_db()
    assert (upload.status, upload.attempts, upload.accepted) == ("done", 2, 15)
    assert dataset.images.count() == 15


@pytest.mark.django_db(transaction=True)
def test_an_attempt_that_lost_its_claim_stops_without_writing(user, settings, monkeypatch):
    settings.HEARTBEAT_INTERVAL_S = 0.05
    monkeypatch.setattr(ingestion, "PROGRESS_EVERY_S", -1)  # a batch after every file
    dataset = Dataset.objects.create(owner=user, name="d")
    upload = Upload.objects.claim(zip_upload(dataset).id)
    seen = []

    def taken_by_another_attempt(done, total):
        seen.append(done)
        if done == 1:  # the reaper gave it to another worker, which claimed it
            Upload.objects.filter(id=upload.id).update(attempts=2, started_at=timezone.now())
            time.sleep(0.5)  # several heartbeats

    ingest_upload(upload, on_progress=taken_by_another_attempt, processes=1)
    row = Upload.objects.get(id=upload.id)
    assert seen == [1]
    assert (row.status, row.attempts, row.error) == ("running", 2, "")  # the new attempt's, untouched
    assert dataset.images.count() == 1  # written before the loss; the new attempt removes it


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_survives_a_database_error(user, settings, monkeypatch):
    dataset = Dataset.objects.create(owner=user, name="d")
    upload = Upload.objects.claim(zip_upload(dataset).id)
    Upload.objects.filter(id=upload.id).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    real_update, failures = QuerySet.update, []

    def update_failing_once(queryset, **values):
        if "heartbeat_at" in values and not failures:
            failures.append(threading.current_thread().name)
            raise DatabaseError("server closed the connection unexpectedly")
        return real_update(queryset, **values)

    monkeypatch.setattr(QuerySet, "update", update_failing_once)
    with Heartbeat(upload, interval_s=0.05) as heartbeat:
        wait_for(lambda: Upload.objects.get(id=upload.id).heartbeat_at > timezone.now() - timedelta(minutes=1),
                 timeout=10, what="a beat after the error")
    assert failures and not heartbeat.lost.is_set()


# The dataset page while the first upload is read

def test_while_images_are_read_the_page_says_so_instead_of_warning(alice, user):
    dataset = Dataset.objects.create(owner=user, name="d")
    upload = zip_upload(dataset)
    page = alice.get(reverse("datasets:detail", args=[dataset.pk])).content.decode()
    assert "Reading your images…" in page and "0 classes" not in page and "has 0" not in page
    ingest_upload(Upload.objects.claim(upload.id))
    page = alice.get(reverse("datasets:detail", args=[dataset.pk])).content.decode()
    assert "Reading your images…" not in page


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_upload_whose_worker_is_killed_is_read_again_and_counted_once(celery_workers, user):
    """SIGKILL to the ingestion worker and every process it started, midway through a large
    upload; a new worker is started; the reaper notices the silence and the upload is read
    again from the start, each image counted once: never stuck "running"."""
    from datasets_app.tasks import ingest

    files = {f"many/{kind}/{i}.png": image_bytes(kind, 64, seed=i) for kind in ("spot", "vertical") for i in range(3000)}
    dataset = Dataset.objects.create(owner=user, name="big")
    upload = zip_upload(dataset, make_zip(files), name="big.zip")
    zip_path = media(upload.file.name)
    ingest.delay(upload.id)
    wait_for(lambda: Upload.objects.filter(id=upload.id, status="running", done__gt=0).exists(), timeout=120,
             what="the upload to be read partly")
    celery_workers.kill("default")
    row = Upload.objects.get(id=upload.id)
    assert row.status == "running" and row.done < row.total, "the kill came too late"
    celery_workers.start("default")

    upload = wait_for(lambda: Upload.objects.filter(id=upload.id, status__in=Upload.ENDED).first(),
                      timeout=300, what="the upload to end")
    # One kill of three attempts allowed: the second attempt finishes it.
    assert upload.status == "done", upload.error + celery_workers.log("default") + celery_workers.log("beat")
    assert upload.attempts == 2
    assert (upload.accepted, upload.duplicates, dataset.images.count()) == (6000, 0, 6000)
    assert len(set(dataset.images.values_list("original_name", flat=True))) == 6000
    assert not dataset.is_busy() and not zip_path.exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_upload_whose_message_never_reached_a_worker_is_sent_again_and_read(celery_workers, user):
    """A queued upload whose broker message was lost (here: never sent) does not wait for ever: the
    reaper on beat sends it again once no worker has taken it within UNCLAIMED_AFTER_S."""
    dataset = Dataset.objects.create(owner=user, name="lost")
    upload = zip_upload(dataset)  # queued, and no message sent
    upload = wait_for(lambda: Upload.objects.filter(id=upload.id, status__in=Upload.ENDED).first(),
                      timeout=180, what="the reaper to send the upload again and a worker to read it")
    assert upload.status == "done", upload.error + celery_workers.log("default")
    assert (upload.attempts, upload.resends, dataset.images.count()) == (1, 0, 15)
    assert f"Upload {upload.id} waited for a worker too long" in celery_workers.log("default")
