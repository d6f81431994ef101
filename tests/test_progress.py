"""Every phase of a run in words, with its own bar and time left (mlcore/progress.py), as the worker
records it (TrainingRun.record_phase) and as the live page and the queue page show it."""
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from mlcore.progress import ESTIMATING, phase_progress
from tests.conftest import new_run
from training_app.models import TrainingRun

LOOKING = "Looking at the pictures with the pretrained network"


def test_a_counted_phase_in_the_persons_pictures():
    progress = phase_progress(LOOKING, 1200, 2931)
    assert progress.text == f"{LOOKING}: 1,200 of 2,931 pictures"
    assert progress.percent == 40.9
    assert progress.seconds_left is None and progress.time_left_text == ESTIMATING  # no pace yet


def test_the_time_left_comes_from_the_pace_since_the_first_report():
    # 100 pictures done at the first report (after the network's function was built), 1,100 more in
    # 20 s: 1,731 left at 55 a second is about 31 s, less the 1 s since the latest report.
    progress = phase_progress(LOOKING, 1200, 2931, paced_done=100, paced_seconds=20.0, since_latest_s=1.0)
    assert progress.seconds_left == pytest.approx(1731 / 55 - 1)
    assert progress.time_left_text == "about 30 s left"
    longer = phase_progress(LOOKING, 100, 2931, paced_done=10, paced_seconds=60.0)
    assert longer.time_left_text == "about 31 min left"


def test_no_estimate_from_a_pace_seen_too_briefly_or_from_nothing_done():
    assert phase_progress(LOOKING, 300, 2931, paced_done=100, paced_seconds=1.0).time_left_text == ESTIMATING
    assert phase_progress(LOOKING, 100, 2931, paced_done=100, paced_seconds=9.0).time_left_text == ESTIMATING


def test_a_finished_count_and_an_uncounted_phase():
    done = phase_progress("Testing on pictures it never saw", 587, 587, paced_done=64, paced_seconds=5.0)
    assert done.percent == 100.0 and done.seconds_left == 0 and done.time_left_text == "almost done"
    saving = phase_progress("Saving the model", 0, 0)
    assert saving.text == "Saving the model" and saving.percent is None and saving.time_left_text == ""
    assert phase_progress("Fetching images", 1, 1).text == "Fetching images: 1 of 1 picture"


@pytest.mark.django_db
def test_record_phase_measures_the_pace_from_the_first_report_on(shapes):
    run = new_run(shapes)
    TrainingRun.objects.filter(id=run.id).update(status="running", attempts=1)
    run = TrainingRun.objects.get(id=run.id)

    run.record_phase(LOOKING, 0, 2931)
    assert run.phase_paced_at is None
    run.record_phase(LOOKING, 64, 2931)
    first = run.phase_paced_at
    assert first is not None and run.phase_paced_done == 64
    run.record_phase(LOOKING, 128, 2931)
    assert run.phase_paced_at == first and run.phase_paced_done == 64  # kept while the phase goes on
    run.record_phase("Testing on pictures it never saw", 0, 587)
    assert run.phase_paced_at is None and run.phase_paced_done == 0  # a new phase measures its own pace

    # The first report 20 s ago, the latest 1 s ago: the estimate the page shows.
    now = timezone.now()
    TrainingRun.objects.filter(id=run.id).update(
        phase=LOOKING, phase_done=1200, phase_total=2931, phase_paced_done=100,
        phase_paced_at=now - timedelta(seconds=21), phase_reported_at=now - timedelta(seconds=1))
    progress = TrainingRun.objects.get(id=run.id).phase_progress(now)
    assert progress.text == f"{LOOKING}: 1,200 of 2,931 training and validation pictures"
    assert progress.time_left_text == "about 30 s left"


@pytest.mark.django_db
def test_status_json_and_queue_show_the_phase_bar_and_time_left(alice, shapes):
    run = new_run(shapes)
    now = timezone.now()
    TrainingRun.objects.filter(id=run.id).update(
        status="running", started_at=now, heartbeat_at=now, worker_host="trainer-1",
        phase=LOOKING, phase_done=1200, phase_total=2931, phase_paced_done=100,
        phase_paced_at=now - timedelta(seconds=20), phase_reported_at=now)

    data = alice.get(reverse("training:status", args=[run.pk])).json()
    assert data["phase_text"] == f"{LOOKING}: 1,200 of 2,931 training and validation pictures"
    assert data["phase_percent"] == 40.9
    assert 28 <= data["phase_seconds_left"] <= 32
    assert data["phase_time_left_text"] in ("about 31 s left", "about 30 s left")
    assert data["percent"] == 0.0  # training itself has not begun

    # Training: the bar is the training's, and its time left is "estimating" until a step is timed.
    TrainingRun.objects.filter(id=run.id).update(phase="Training", phase_done=0, phase_total=0, epoch=1,
                                                 batch=0, batches_per_epoch=4)
    data = alice.get(reverse("training:status", args=[run.pk])).json()
    assert data["phase_text"] == "Training: epoch 1 of 2" and data["phase_time_left_text"] == ESTIMATING

    TrainingRun.objects.filter(id=run.id).update(phase="Saving the model")
    data = alice.get(reverse("training:status", args=[run.pk])).json()
    assert data["phase_text"] == "Saving the model" and data["phase_percent"] is None
