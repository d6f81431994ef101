"""The job base (dlsite/jobs.py): every kind of job gets its claim, fence, reaper and ownership from it."""
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from datasets_app.models import Dataset, Upload
from dlsite.jobs import Job, JobQuerySet, job_kinds, reap_jobs
from predict_app.models import Classification, SuggestionJob
from pretrained_app.models import WeightsDownload
from tests.conftest import new_run
from tests.images import labelled_zip
from training_app.models import LabelReview, ModelExport, TrainingRun, TreesTrial

SHARED_QUERIES = ("claim", "stale", "reap_stale", "unclaimed", "reap_unclaimed", "visible_to")
SHARED_METHODS = ("claim_fence", "claimed_row", "holds_claim", "holding_claim", "retry", "cancel_queued",
                  "seconds_left", "is_silent")


def test_the_six_jobs_are_the_kinds_of_job():
    assert set(job_kinds()) == {Upload, TrainingRun, Classification, ModelExport, WeightsDownload, TreesTrial,
                                SuggestionJob, LabelReview}


@pytest.mark.parametrize("kind", job_kinds(), ids=lambda kind: kind.__name__)
def test_each_job_inherits_the_claim_the_reaper_and_ownership_from_the_base(kind):
    queryset = type(kind.objects.all())
    assert issubclass(queryset, JobQuerySet)
    for name in SHARED_QUERIES:
        assert getattr(queryset, name) is getattr(JobQuerySet, name), f"{kind.__name__} redefines {name}"
    for name in SHARED_METHODS:
        assert getattr(kind, name) is getattr(Job, name), f"{kind.__name__} redefines {name}"
    # What differs is said, not written again: each names its task, statuses and attempt limit.
    assert kind.TASK and {"QUEUED", "RUNNING", "FAILED"} <= set(kind.Status.names)


@pytest.mark.django_db
def test_visible_to_shows_a_person_only_their_own_jobs_of_every_kind(django_user_model, shapes):
    from django.contrib.auth.models import AnonymousUser

    run = new_run(shapes, status="succeeded", model_file="models/x/model.keras", class_names=["a", "b"])
    owner = run.owner
    other = django_user_model.objects.create_user("other", password="pw-other-123")
    ModelExport.objects.create(run=run, kind="onnx")
    TreesTrial.objects.create(run=run)
    Classification.objects.create(owner=owner, run=run, name="pictures")
    SuggestionJob.objects.create(owner=owner, run=run, dataset=run.dataset)
    WeightsDownload.objects.create(base="mobilenetv2", requested_by=owner)
    Upload.objects.create(dataset=run.dataset, original_name="a.zip")
    LabelReview.objects.create(dataset=run.dataset, run=run)
    for kind in job_kinds():
        assert kind.objects.visible_to(owner).exists(), kind.__name__
        assert not kind.objects.visible_to(other).exists(), kind.__name__
        assert not kind.objects.visible_to(AnonymousUser()).exists(), kind.__name__


# A queued job whose broker message was lost (the real loop, with workers and beat, is in
# test_upload_lifecycle.py).

def waited(job, seconds):
    """As if `job` had been sent to the workers `seconds` ago."""
    type(job).objects.filter(id=job.id).update(queued_at=timezone.now() - timedelta(seconds=seconds))
    job.refresh_from_db()
    return job


@pytest.mark.django_db
def test_a_queued_job_no_worker_took_is_sent_again_then_fails_after_the_last_attempt(alice, user, settings):
    settings.UNCLAIMED_AFTER_S, settings.MAX_INGEST_ATTEMPTS = 300, 3
    dataset = Dataset.objects.create(owner=user, name="d")
    upload = Upload(dataset=dataset, original_name="a.zip")
    upload.file.save("a.zip", ContentFile(labelled_zip(per_class=2)), save=True)  # queued; its message lost
    assert Upload.objects.reap_unclaimed() == []  # not waited long enough
    for resends in (1, 2):
        waited(upload, 301)
        assert Upload.objects.reap_unclaimed() == [upload.id]
        upload.refresh_from_db()
        assert (upload.status, upload.resends) == ("queued", resends)
        assert upload.queued_at > timezone.now() - timedelta(seconds=5)
        assert Upload.objects.reap_unclaimed() == []  # sent just now
    waited(upload, 301)
    reap_jobs()
    upload.refresh_from_db()
    assert upload.status == "failed" and not dataset.is_busy()
    assert upload.error.startswith("No worker took it: it was sent to the workers 3 times, 5 min apart")
    assert "the queue page lists them" in upload.error and upload.error.endswith("press Retry.")
    page = alice.get(reverse("datasets:detail", args=[dataset.id])).content.decode()
    assert "No worker took it" in page and f'id="upload-retry-{upload.id}"' in page
    assert upload.retry()
    upload.refresh_from_db()
    assert (upload.status, upload.resends, upload.error) == ("queued", 0, "")


@pytest.mark.django_db
def test_a_claim_counts_the_sending_anew(shapes, settings):
    settings.UNCLAIMED_AFTER_S = 300
    run = waited(new_run(shapes), 301)
    assert TrainingRun.objects.reap_unclaimed() == [run.id]
    assert TrainingRun.objects.claim(run.id).resends == 0
    assert TrainingRun.objects.claim(run.id) is None  # the second delivery finds nothing to take


@pytest.mark.django_db
def test_a_queue_whose_worker_is_busy_is_a_line_not_a_lost_message(shapes, settings):
    settings.UNCLAIMED_AFTER_S = 300
    now = timezone.now()
    training = new_run(shapes, status="running", started_at=now - timedelta(hours=2), heartbeat_at=now)
    waiting = waited(new_run(shapes), 3600)
    shapes.uploads.update(finished_at=now - timedelta(hours=1))  # the dataset's own upload, read long ago
    lost = shapes.uploads.create(original_name="b.zip", status="queued", queued_at=now - timedelta(hours=1))
    assert TrainingRun.objects.reap_unclaimed() == []  # the training worker is busy with the other run
    assert Upload.objects.reap_unclaimed() == [lost.id]  # another queue, whose workers are idle
    TrainingRun.objects.filter(id=training.id).update(status="succeeded", finished_at=now - timedelta(seconds=30))
    assert TrainingRun.objects.reap_unclaimed() == []  # it finished just now: the next one is being taken
    TrainingRun.objects.filter(id=training.id).update(finished_at=now - timedelta(seconds=400))
    assert TrainingRun.objects.reap_unclaimed() == [waiting.id]
