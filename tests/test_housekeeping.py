"""Clean-up of files on disk, the staff page "Disk use" (housekeeping_app), and per-person quotas
(dlsite/quotas.py, counted by the apps that registered how).

The clean-up tests make real files and rows in a media folder of their own, age the files with
os.utime, and check that exactly the right ones go, and that a dry run removes nothing."""
import io
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from datasets_app.folder_upload import staging_folder
from datasets_app.ingestion import ingest_upload
from datasets_app.models import Dataset, Image, Upload, UploadOutcome
from datasets_app.versions import freeze
from dlsite import quotas
from housekeeping_app.cleanup import run_cleanup
from housekeeping_app.diskuse import measure
from housekeeping_app.models import CleanupReport
from predict_app.models import Classification
from tests.conftest import ingest_shapes, new_run, wait_for
from tests.images import image_bytes, labelled_zip
from tests.test_train_form import new_page, plain_form_data
from training_app.models import TrainingRun

pytestmark = pytest.mark.django_db

DAY = 24 * 3600


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    """A media folder and a pack folder for this test alone: the clean-up judges every file in them."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MODELS_DIR = settings.MEDIA_ROOT / "models"
    settings.PACK_DIR = tmp_path / "packs"
    settings.CLEANUP_GRACE_S = DAY
    settings.UPLOAD_ABANDON_S = 2 * DAY
    settings.MEDIA_ROOT.mkdir()
    return settings.MEDIA_ROOT


def write(path, data=b"x" * 100, age_s=0):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if age_s:
        age(path, age_s)
    return path


def age(path, seconds):
    """Make a file, or a folder and everything in it, look `seconds` old (modified and read)."""
    when = time.time() - seconds
    for root, folders, files in os.walk(path) if Path(path).is_dir() else [(None, [], [path])]:
        for name in files:
            os.utime(Path(root or "") / name, (when, when), follow_symlinks=False)
    if Path(path).is_dir():
        for root, folders, _ in os.walk(path, topdown=False):
            for name in folders:
                os.utime(Path(root) / name, (when, when), follow_symlinks=False)
        os.utime(path, (when, when))


def exists(path):
    return os.path.lexists(path)


def removed(result):
    """Where each thing the clean-up removed was: a kept file's or folder's name under the media
    folder (the local storage), a local pack's path as it is."""
    from django.conf import settings

    return [Path(item.name) if Path(item.name).is_absolute() else Path(settings.MEDIA_ROOT) / item.name
            for item in result.removed]


# ---- files on disk


@pytest.fixture
def scene(user, media, tmp_path):
    """A site with every kind of file, some needed and some not; returns (to go, to stay)."""
    dataset = ingest_shapes(user)
    images = list(dataset.images.order_by("id"))
    version = freeze(dataset, user)
    run = new_run(dataset)
    # An image deleted from the dataset after the run's version froze it: the version still needs its file.
    frozen = images[0]
    frozen_file = media / frozen.file.name
    frozen_bytes = frozen_file.read_bytes()
    Image.objects.filter(id=frozen.id).delete()
    write(frozen_file, frozen_bytes)  # whatever a delete did to it, the file is there to be judged
    folder = media / "datasets" / str(dataset.id)
    age(folder, 2 * DAY)  # needed files are kept however old
    age(media / "versions", 2 * DAY)

    go, stay = [], [media / i.file.name for i in images] + [media / version.manifest.name]
    go.append(write(folder / "zz" / "orphan.png", age_s=2 * DAY))
    go.append(write(folder / "thumbs" / "zz" / "orphan.jpg", age_s=2 * DAY))
    stay.append(write(folder / "zz" / "young.png"))  # perhaps an upload in progress
    go.append(write(media / "versions" / "999" / "gone.json.gz", age_s=2 * DAY))

    # Uploads: a zip already read goes; a failed one stays while it can be retried, then goes.
    read = Upload.objects.create(dataset=dataset, original_name="read.zip", status=Upload.Status.DONE)
    read.file.save("read.zip", ContentFile(b"z" * 300))
    recent_failure = Upload.objects.create(dataset=dataset, original_name="bad.zip", status=Upload.Status.FAILED,
                                           finished_at=timezone.now() - timedelta(hours=1))
    recent_failure.file.save("bad.zip", ContentFile(b"z" * 300))
    old_failure = Upload.objects.create(dataset=dataset, original_name="old.zip", status=Upload.Status.FAILED,
                                        finished_at=timezone.now() - timedelta(days=3))
    old_failure.file.save("old.zip", ContentFile(b"z" * 300))
    old_cancel = Upload.objects.create(dataset=dataset, original_name="stop.zip", status=Upload.Status.CANCELLED,
                                       finished_at=timezone.now() - timedelta(days=3))
    old_cancel.file.save("stop.zip", ContentFile(b"z" * 300))
    go += [media / read.file.name, media / old_failure.file.name, media / old_cancel.file.name]
    stay.append(media / recent_failure.file.name)

    # Folders being received: one still arriving stays, one silent for three days is given up.
    arriving = folder_upload(dataset, Upload.Status.RECEIVING)
    stay.append(write(media / staging_folder(arriving) / "000000" / "000", age_s=2 * DAY))
    write(media / staging_folder(arriving) / "000001" / "000")  # a batch just now
    silent = folder_upload(dataset, Upload.Status.RECEIVING, created_days_ago=3)
    write(media / staging_folder(silent) / "000000" / "000", age_s=3 * DAY)
    age(media / staging_folder(silent), 3 * DAY)
    # Waiting to be read (in another dataset: a dataset being read into is left alone as a whole).
    queued = folder_upload(Dataset.objects.create(owner=user, name="waiting"), Upload.Status.QUEUED, 3)
    stay.append(write(media / staging_folder(queued) / "000000" / "000", age_s=3 * DAY))
    finished = folder_upload(dataset, Upload.Status.DONE)
    write(media / staging_folder(finished) / "000000" / "000")
    go += [media / staging_folder(silent), media / staging_folder(finished)]
    go.append(write(media / "uploads" / "folders" / "987654" / "000000" / "000").parent.parent)
    age(go[-1], 2 * DAY)
    stay.append(write(media / "uploads" / "folders" / "987653" / "000000" / "000"))  # row not yet committed?

    # Models: an existing run's stay, a deleted run's go.
    stay.append(write(run.model_folder / "model.keras", age_s=2 * DAY))
    go.append(write(media / "models" / "987654" / "model.keras", age_s=2 * DAY).parent)

    # Classifications: a deleted one's pictures go; a finished one's zip goes (its pictures are stored one by
    # one), a failed one's stays for Retry; a zip no row names goes once past the grace.
    done = Classification.objects.create(owner=user, run=run, name="done", status="done")
    done.zip_file.save("done.zip", ContentFile(b"c" * 200))
    failed = Classification.objects.create(owner=user, run=run, name="failed", status="failed")
    failed.zip_file.save("failed.zip", ContentFile(b"c" * 200))
    stay += [write(media / done.folder / "0000000.png", age_s=2 * DAY), media / failed.zip_file.name]
    go += [media / done.zip_file.name, write(media / "classifications" / "987654" / "0000000.png", age_s=2 * DAY).parent,
           write(media / "classifications" / "zips" / "lost.zip", age_s=2 * DAY)]
    stay.append(write(media / "classifications" / "zips" / "arriving.zip"))  # its row not yet committed?

    # Links: the storage's listing neither names nor follows one (the site makes none: a bucket has
    # none), so a link stays, and what it points to outside the media folder is never touched.
    outside = write(tmp_path / "outside" / "secret.txt", age_s=2 * DAY)
    write(tmp_path / "outside" / "folder" / "kept.txt", age_s=2 * DAY)
    (folder / "zz" / "link.png").symlink_to(outside)
    (folder / "zz" / "linked-folder").symlink_to(tmp_path / "outside" / "folder", target_is_directory=True)
    for link in ("link.png", "linked-folder"):
        os.utime(folder / "zz" / link, (time.time() - 2 * DAY,) * 2, follow_symlinks=False)
        stay.append(folder / "zz" / link)
    stay += [outside, tmp_path / "outside" / "folder" / "kept.txt"]
    # Not one of the site's folders: never judged.
    stay.append(write(media / "notes.txt", age_s=5 * DAY))
    return {"go": go, "stay": stay, "frozen": frozen_file, "silent": silent, "read": read, "old": old_failure,
            "recent": recent_failure, "done": done}


def folder_upload(dataset, status, created_days_ago=0):
    return Upload.objects.create(dataset=dataset, kind=Upload.Kind.FOLDER, status=status, original_name="folder",
                                 created_at=timezone.now() - timedelta(days=created_days_ago))


def test_a_dry_run_lists_what_would_go_and_removes_nothing(scene):
    result = run_cleanup(dry_run=True)
    assert set(removed(result)) == set(scene["go"])
    assert all(exists(path) for path in scene["go"] + scene["stay"])
    assert Upload.objects.get(id=scene["silent"].id).status == Upload.Status.RECEIVING
    assert Upload.objects.get(id=scene["read"].id).file.name
    assert not CleanupReport.objects.exists()


def test_the_clean_up_removes_exactly_what_no_row_needs(scene):
    result = run_cleanup()
    assert sorted(str(path) for path in removed(result)) == sorted(str(path) for path in scene["go"])
    assert [path for path in scene["go"] if exists(path)] == []
    assert [path for path in scene["stay"] if not exists(path)] == []
    assert exists(scene["frozen"])  # listed in a version's manifest, though its image row is gone
    silent = Upload.objects.get(id=scene["silent"].id)
    assert silent.status == Upload.Status.FAILED
    assert silent.error == "Abandoned: no files arrived for 2 days. Pick the folder again to send it."
    assert Upload.objects.get(id=scene["read"].id).file.name == ""
    assert Upload.objects.get(id=scene["old"].id).file.name == ""
    assert Upload.objects.get(id=scene["recent"].id).file.name != ""

    report = CleanupReport.objects.get()
    assert report.abandoned_uploads == 1
    assert report.figures["zips"] == {"count": 3, "bytes": 900}
    assert report.figures["models"]["count"] == 1 and report.figures["staging"]["count"] == 3
    assert report.figures["orphans"]["count"] == 3 and report.figures["classifications"]["count"] == 3
    assert Classification.objects.get(id=scene["done"].id).zip_file.name == ""
    # Once clean, a second pass finds nothing more.
    assert run_cleanup().removed == []


def test_a_folder_to_classify_whose_sending_stopped_fails_and_keeps_what_arrived(user, media):
    run = new_run(ingest_shapes(user))
    silent = Classification.objects.create(owner=user, run=run, name="holiday", status="receiving",
                                           created_at=timezone.now() - timedelta(days=3))
    arrived = write(media / silent.folder / "00000-000.png")
    age(media / silent.folder, 3 * DAY)
    arriving = Classification.objects.create(owner=user, run=run, name="today", status="receiving")
    run_cleanup(dry_run=True)
    assert Classification.objects.get(id=silent.id).status == "receiving"  # a dry run changes nothing
    run_cleanup()
    silent.refresh_from_db()
    assert silent.status == "failed" and silent.error == (
        "Abandoned: no pictures arrived for 2 days. Pick the folder again to send it, or press Retry to classify "
        "the pictures that arrived.")
    assert arrived.exists() and Classification.objects.get(id=arriving.id).status == "receiving"


def test_files_of_a_dataset_being_read_into_are_left_alone(user, media):
    dataset = Dataset.objects.create(owner=user, name="busy")
    Upload.objects.create(dataset=dataset, original_name="big.zip", status=Upload.Status.RUNNING)
    # An ingestion stores files before their rows, and a file stored again keeps its old date.
    stored = write(media / "datasets" / str(dataset.id) / "ab" / "abc.png", age_s=3 * DAY)
    assert run_cleanup().removed == [] and stored.exists()


def test_the_grace_period_is_a_setting(user, media, settings):
    young = write(media / "datasets" / "1" / "ab" / "abc.png", age_s=3600)
    settings.CLEANUP_GRACE_S = 60
    assert removed(run_cleanup()) == [young] and not young.exists()


def test_the_command_lists_in_a_dry_run_and_removes_without(media):
    orphan = write(media / "datasets" / "5" / "ab" / "abc.png", b"o" * 2048, age_s=2 * DAY)
    out = io.StringIO()
    call_command("cleanup", "--dry-run", stdout=out)
    assert "would remove (orphans, 2.0 KB): datasets/5/ab/abc.png" in out.getvalue()
    assert "Would remove: Files no row refers to: 1 (2.0 KB)" in out.getvalue()
    assert orphan.exists()
    out = io.StringIO()
    call_command("cleanup", stdout=out)
    assert "Removed: Files no row refers to: 1 (2.0 KB)" in out.getvalue()
    assert not orphan.exists()


def make_pack(packs, name, used_days_ago, size=1000):
    folder = write(packs / name / "train_x.npy", b"p" * size).parent
    age(folder, used_days_ago * DAY)
    return folder


def test_packs_beyond_the_cache_size_go_least_recently_used_first(user, settings):
    dataset = ingest_shapes(user)
    version = freeze(dataset, user)
    other = ingest_shapes(user, name="Other")
    busy_version = freeze(other, user)
    new_run(other)  # queued: its version's packs are in use
    packs = Path(settings.PACK_DIR)
    in_use = make_pack(packs, f"version-{busy_version.id}-abc-16x16-1ch-squash", used_days_ago=9)
    oldest = make_pack(packs, f"version-{version.id}-abc-16x16-1ch-squash", used_days_ago=5)
    recent = make_pack(packs, f"version-{version.id}-abc-32x32-1ch-squash", used_days_ago=1)
    deleted = make_pack(packs, "version-987654-abc-16x16-1ch-squash", used_days_ago=0)
    dead_builder = make_pack(packs, ".building-xyz", used_days_ago=2)
    live_builder = make_pack(packs, ".building-abc", used_days_ago=0)
    settings.PACK_CACHE_MAX_GB = 2500 / 1024**3  # three packs of 1,000 bytes are over

    dry = run_cleanup(dry_run=True)
    assert set(removed(dry)) == {oldest, deleted, dead_builder}
    assert all(p.exists() for p in (in_use, oldest, recent, deleted, dead_builder, live_builder))
    result = run_cleanup()
    assert set(removed(result)) == {oldest, deleted, dead_builder}
    assert [p.exists() for p in (in_use, oldest, recent, deleted, dead_builder, live_builder)] == [
        True, False, True, False, False, True]
    assert result.figures()["packs"] == {"count": 3, "bytes": 3000}


def test_packs_within_the_cache_size_stay(user, settings):
    dataset = ingest_shapes(user)
    version = freeze(dataset, user)
    pack = make_pack(Path(settings.PACK_DIR), f"version-{version.id}-abc-16x16-1ch-squash", used_days_ago=30)
    assert run_cleanup().removed == [] and pack.exists()


def test_the_clean_up_is_a_beat_task_on_the_default_queue(settings, media):
    from dlsite.celery import app
    from housekeeping_app.tasks import cleanup

    assert settings.CELERY_BEAT_SCHEDULE["cleanup"] == {"task": "housekeeping.cleanup",
                                                        "schedule": float(settings.CLEANUP_INTERVAL_S)}
    assert app.amqp.router.route({}, "housekeeping.cleanup")["queue"].name == "default"
    orphan = write(media / "versions" / "1" / "gone.json.gz", age_s=2 * DAY)
    cleanup()
    assert not orphan.exists() and CleanupReport.objects.get().figures["orphans"]["count"] == 1


# ---- the staff page "Disk use"


@pytest.fixture
def staff(django_user_model):
    person = django_user_model.objects.create_user("sam", password="a-long-test-password", is_staff=True)
    client = Client()
    client.force_login(person)
    return client


def test_disk_use_is_measured_per_person_and_per_kind(user, media, settings):
    dataset = ingest_shapes(user)
    run = new_run(dataset)
    write(run.model_folder / "model.keras", b"m" * 5000)
    zip_upload = Upload.objects.create(dataset=dataset, original_name="a.zip")
    zip_upload.file.save("a.zip", ContentFile(b"z" * 700))
    receiving = folder_upload(dataset, Upload.Status.RECEIVING)
    write(media / staging_folder(receiving) / "000000" / "000", b"s" * 300)
    write(Path(settings.PACK_DIR) / "version-1-abc" / "train_x.npy", b"p" * 400)
    images = sum(f.stat().st_size for f in (media / "datasets" / str(dataset.id)).rglob("*") if f.is_file())

    job = Classification.objects.create(owner=user, run=run, name="holiday", status="queued")
    job.zip_file.save("holiday.zip", ContentFile(b"c" * 200))
    write(media / job.folder / "0000000.png", b"c" * 50)

    found = measure()
    assert found["users"] == [{"username": "alice", "images": images, "models": 5000, "uploads": 1000,
                               "classified": 250, "total": images + 6250}]
    kinds = found["kinds"]
    assert kinds["images"] + kinds["thumbnails"] == images
    assert (kinds["models"], kinds["uploads"], kinds["staging"], kinds["packs"]) == (5000, 700, 300, 400)
    assert kinds["classifications"] == 250 and kinds["other"] == 0
    assert kinds["manifests"] == sum(f.stat().st_size for f in (media / "versions").rglob("*") if f.is_file())


def test_the_disk_page_is_for_staff_only(staff, user, client):
    ingest_shapes(user)
    run_cleanup()
    page = staff.get(reverse("housekeeping:disk"))
    assert page.status_code == 200
    text = page.content.decode()
    assert "alice" in text and "Last clean-up" in text and "Files no row refers to" in text
    assert 'class="bar" data-percent="100' in text
    assert 'href="/housekeeping/disk/"' in text  # in the staff menu

    client.force_login(user)
    assert client.get(reverse("housekeeping:disk")).status_code == 404
    client.logout()
    assert client.get(reverse("housekeeping:disk"))["Location"].startswith(reverse("login"))


# ---- quotas


def test_a_run_beyond_the_limit_of_runs_at_once_is_refused(alice, shapes, settings):
    settings.QUOTA_QUEUED_RUNS = 1
    new_run(shapes)
    data = plain_form_data(new_page(alice, shapes))
    response = alice.post(reverse("training:new", args=[shapes.pk]), data)
    assert response.status_code == 200
    assert ("You have reached your limit of 1 run waiting or training at once; wait for one to finish or stop one."
            in response.content.decode())
    assert TrainingRun.objects.count() == 1
    # Once that one has finished, the next may start.
    TrainingRun.objects.update(status=TrainingRun.Status.SUCCEEDED)
    assert alice.post(reverse("training:new", args=[shapes.pk]), data).status_code == 302
    settings.QUOTA_QUEUED_RUNS = 0  # no limit
    assert alice.post(reverse("training:new", args=[shapes.pk]), data).status_code == 302


def test_each_limit_counts_what_its_apps_registered(user, shapes, settings, monkeypatch):
    assert quotas.used("images", user) == 30 and quotas.used("queued_runs", user) == 0
    images = settings.MEDIA_ROOT / shapes.media_folder
    assert quotas.used("bytes", user) == sum(f.stat().st_size for f in images.rglob("*") if f.is_file())
    new_run(shapes)
    assert quotas.used("queued_runs", user) == 1
    # A limit nobody counts for would never refuse anything: that is a mistake in the code, said loudly.
    monkeypatch.setitem(quotas.COUNTERS, "queued_runs", {})
    settings.QUOTA_QUEUED_RUNS = 1
    with pytest.raises(ImproperlyConfigured, match="queued_runs"):
        quotas.queued_runs_refusal(user)


def zip_file(name="more.zip"):
    return SimpleUploadedFile(name, labelled_zip(per_class=2, root="more"), "application/zip")


def test_uploads_beyond_the_image_limit_are_refused_everywhere(alice, shapes, settings):
    settings.QUOTA_IMAGES = 30  # `shapes` has 30
    message = "You have reached your limit of 30 images."
    page = alice.post(reverse("datasets:add", args=[shapes.pk]), {"file": zip_file()})
    assert page.status_code == 200 and message in page.content.decode()
    page = alice.post(reverse("datasets:list"), {"file": zip_file()})
    assert page.status_code == 200 and message in page.content.decode()
    page = alice.post(reverse("datasets:add_loose_images", args=[shapes.pk]),
                      {"images": [SimpleUploadedFile("a.png", image_bytes(), "image/png")]})
    assert page.status_code == 200 and message in page.content.decode()
    folder = {"folder_name": "more", "file_count": "3", "batch_count": "1", "total_bytes": "300"}
    for url in (reverse("datasets:folder_start", args=[shapes.pk]), reverse("datasets:folder_start_new")):
        answer = alice.post(url, folder)
        assert answer.status_code == 413 and message in answer.json()["message"]
    page = alice.post(reverse("datasets:sample"), follow=True)
    assert message in page.content.decode()
    assert Upload.objects.count() == 1 and Dataset.objects.count() == 1  # only the shapes' own

    settings.QUOTA_IMAGES = 0  # no limit
    assert alice.post(reverse("datasets:add", args=[shapes.pk]), {"file": zip_file()}).status_code == 302


def test_uploads_beyond_the_byte_limit_are_refused(alice, shapes, settings, media):
    used = sum(f.stat().st_size for f in (media / "datasets" / str(shapes.id)).rglob("*") if f.is_file())
    sent = zip_file()
    settings.QUOTA_BYTES = used + sent.size - 1
    page = alice.post(reverse("datasets:add", args=[shapes.pk]), {"file": sent})
    assert page.status_code == 200 and "over your limit of" in page.content.decode()
    answer = alice.post(reverse("datasets:folder_start", args=[shapes.pk]),
                        {"folder_name": "more", "file_count": "3", "batch_count": "1", "total_bytes": str(sent.size)})
    assert answer.status_code == 413 and "over your limit of" in answer.json()["message"]
    settings.QUOTA_BYTES = used + sent.size
    assert alice.post(reverse("datasets:add", args=[shapes.pk]), {"file": zip_file()}).status_code == 302


def test_ingestion_stops_adding_images_at_the_limit(user, shapes, settings):
    settings.QUOTA_IMAGES = 34  # `shapes` has 30: four more fit
    upload = Upload(dataset=shapes, original_name="more.zip")
    upload.file.save("more.zip", ContentFile(labelled_zip(per_class=3, root="more", size=20)), save=True)
    ingest_upload(Upload.objects.claim(upload.id))
    upload.refresh_from_db()
    assert (upload.status, upload.accepted, upload.rejected) == (Upload.Status.DONE, 4, 5)
    assert shapes.images.count() == 34
    refused = UploadOutcome.objects.filter(upload=upload, kind=UploadOutcome.Kind.REJECTED)
    assert {o.detail for o in refused} == {"not added: You have reached your limit of 34 images. "
                                           "Delete images or datasets you no longer need to make room."}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_default_worker_runs_the_clean_up(celery_workers):
    from housekeeping_app.tasks import cleanup

    worker_media = Path(os.environ["DATA_DIR"]) / "media"  # the worker processes' MEDIA_ROOT
    orphan = write(worker_media / "versions" / "424242" / "gone.json.gz", age_s=2 * DAY)
    cleanup.delay()
    wait_for(lambda: not orphan.exists() and CleanupReport.objects.exists(), timeout=60, what="the clean-up")
    assert CleanupReport.objects.get().figures["orphans"]["count"] >= 1
