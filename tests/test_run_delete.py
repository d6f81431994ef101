"""Deleting a run: the owner only, not while it trains, and its model files go with the row."""
import shutil

import pytest
from django.urls import reverse

from tests.conftest import new_run
from training_app.models import EpochMetric, TrainingRun
from training_app.tasks import train


@pytest.fixture(autouse=True)
def no_model_folders(settings):
    """Run ids start again at 1 in each test: a model folder (or backup) left by another test's run
    must neither be found here nor left for the next one to resume from."""
    shutil.rmtree(settings.MODELS_DIR, ignore_errors=True)
    yield
    shutil.rmtree(settings.MODELS_DIR, ignore_errors=True)


def with_model_files(run, status="succeeded"):
    """A run as a finished worker leaves it: a model in its attempt folder, and a backup left by a crash."""
    folder = run.model_folder
    (folder / "attempt-1").mkdir(parents=True)
    (folder / "attempt-1" / "model.keras").write_bytes(b"model")
    (folder / "attempt-1" / "model.json").write_text("{}")
    (folder / "backup" / "first-phase").mkdir(parents=True)
    (folder / "backup" / "first-phase" / "latest.weights.h5").write_bytes(b"weights")
    TrainingRun.objects.filter(id=run.id).update(status=status, model_file=f"models/{run.id}/attempt-1/model.keras")
    EpochMetric.objects.create(run=run, epoch=1)
    return folder


def test_the_owner_deletes_a_finished_run_and_its_model_files(alice, shapes, django_capture_on_commit_callbacks):
    run = new_run(shapes)
    folder = with_model_files(run)
    other = with_model_files(new_run(shapes))
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(reverse("training:delete", args=[run.pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("training:dataset_runs", args=[shapes.pk])
    assert f"Run {run.pk} and its model were deleted." in response.content.decode()
    assert not TrainingRun.objects.filter(id=run.id).exists() and not EpochMetric.objects.filter(run_id=run.id).exists()
    assert not folder.exists()
    assert other.exists()  # another run's files stay


@pytest.mark.parametrize("status", ["failed", "cancelled", "queued"])
def test_a_failed_stopped_or_waiting_run_can_be_deleted(alice, shapes, status, django_capture_on_commit_callbacks):
    run = new_run(shapes)
    folder = with_model_files(run, status)
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert "Delete this run" in page and 'data-confirm="Delete this run' in page
    with django_capture_on_commit_callbacks(execute=True):
        alice.post(reverse("training:delete", args=[run.pk]))
    assert not TrainingRun.objects.filter(id=run.id).exists() and not folder.exists()


def test_a_deleted_waiting_run_is_not_trained(alice, shapes):
    run = new_run(shapes)
    alice.post(reverse("training:delete", args=[run.pk]))
    train(run.id)  # the message already sent to the workers
    assert not TrainingRun.objects.filter(id=run.id).exists()


def test_a_run_in_training_is_not_deleted(alice, shapes):
    run = new_run(shapes)
    folder = with_model_files(run, "running")
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert "Delete this run" not in page
    response = alice.post(reverse("training:delete", args=[run.pk]), follow=True)
    assert "stop it first" in response.content.decode()
    assert TrainingRun.objects.filter(id=run.id).exists() and folder.exists()


def test_someone_else_cannot_delete_a_run(client, other_user, shapes):
    run = new_run(shapes)
    folder = with_model_files(run)
    client.force_login(other_user)
    assert client.post(reverse("training:delete", args=[run.pk])).status_code == 404
    client.logout()
    assert client.post(reverse("training:delete", args=[run.pk])).status_code == 302  # to the sign-in page
    assert TrainingRun.objects.filter(id=run.id).exists() and folder.exists()


def test_delete_takes_a_post(alice, shapes):
    run = new_run(shapes)
    assert alice.get(reverse("training:delete", args=[run.pk])).status_code == 405
    assert TrainingRun.objects.filter(id=run.id).exists()


@pytest.mark.django_db(transaction=True)
def test_runs_deleted_with_their_dataset_take_their_model_files_once_committed(shapes):
    """The receiver works for any deletion of runs (a dataset's cascade included), after the commit:
    a deletion rolled back keeps them."""
    from django.db import transaction

    folders = [with_model_files(new_run(shapes)) for _ in range(2)]

    class Undo(Exception):
        pass

    with pytest.raises(Undo), transaction.atomic():
        TrainingRun.objects.filter(dataset=shapes).delete()
        raise Undo
    assert all(folder.exists() for folder in folders) and TrainingRun.objects.count() == 2
    TrainingRun.objects.filter(dataset=shapes).delete()
    assert not any(folder.exists() for folder in folders)
