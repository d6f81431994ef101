"""The job base (dlsite/jobs.py): every kind of job gets its claim, fence, reaper and ownership from it."""
import pytest

from datasets_app.models import Upload
from dlsite.jobs import Job, JobQuerySet, job_kinds
from predict_app.models import Classification
from pretrained_app.models import WeightsDownload
from training_app.models import ModelExport, TrainingRun

SHARED_QUERIES = ("claim", "stale", "reap_stale", "visible_to")
SHARED_METHODS = ("claim_fence", "claimed_row", "holds_claim", "holding_claim", "retry", "cancel_queued",
                  "seconds_left", "is_silent")


def test_the_five_jobs_are_the_kinds_of_job():
    assert set(job_kinds()) == {Upload, TrainingRun, Classification, ModelExport, WeightsDownload}


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

    from tests.conftest import new_run

    run = new_run(shapes, status="succeeded", model_file="models/x/model.keras", class_names=["a", "b"])
    owner = run.owner
    other = django_user_model.objects.create_user("other", password="pw-other-123")
    ModelExport.objects.create(run=run, kind="onnx")
    Classification.objects.create(owner=owner, run=run, name="pictures")
    WeightsDownload.objects.create(base="mobilenetv2", requested_by=owner)
    Upload.objects.create(dataset=run.dataset, original_name="a.zip")
    for kind in job_kinds():
        assert kind.objects.visible_to(owner).exists(), kind.__name__
        assert not kind.objects.visible_to(other).exists(), kind.__name__
        assert not kind.objects.visible_to(AnonymousUser()).exists(), kind.__name__
