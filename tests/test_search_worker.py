""""Try several settings" on the real training worker: a search of more runs than the person's limit of runs at
once starts as many as the limit allows, and the others start one by one as the worker ends runs
(TrainingRun.place_freed -> training_app/starting.py start_waiting, in the worker process), never passing
the limit, until every run has trained and the leaderboard ranks them all."""
import os

import pytest
from django.conf import settings
from django.db.models import Max
from django.urls import reverse

from tests.conftest import ingest_shapes, wait_for
from training_app.models import Search, TrainingRun

RUNS = 4

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_runs_past_the_limit_wait_their_turn_and_the_worker_starts_them_as_runs_end(celery_workers, alice, user):
    # The site's default limit, read by this process and by the workers from the same environment
    # (tests/conftest.py copies it to them): 3 runs waiting for a worker or training at once.
    limit = settings.QUOTA_QUEUED_RUNS
    assert limit == 3 and os.environ.get("QUOTA_QUEUED_RUNS", "3") == "3", (
        f"this test needs the default limit of 3 runs at once, here and in the workers (found {limit})")
    dataset = ingest_shapes(user)
    # The smallest network at 4 step sizes, tiny pictures, no random changes: 4 runs of a few seconds (the
    # worker starts a fresh process for each, which takes longer than the training), 1 waiting its turn.
    response = alice.post(reverse("training:search_new", args=[dataset.pk]), {
        "preset": ["dense"], "image_size": ["16"], "learning_rate": ["0.01", "0.003", "0.001", "0.0003"],
        "batch_size": ["8"], "augmentation": ["off"], "mode": "grid", "picks": "4", "seed": "1",
        "total_budget_s": "900", "name": "On the worker"})
    found = Search.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("training:search", args=[found.pk])
    assert found.runs.count() == limit and len(found.waiting) == RUNS - limit

    samples = []

    def all_ended():
        # The runs waiting for a worker or training, counted the way the limit counts them (all the
        # person's runs); the search's page is not polled, so only the runs' ends start the others.
        runs = list(TrainingRun.objects.filter(owner=user).values_list("status", flat=True))
        samples.append((sum(status in TrainingRun.ACTIVE for status in runs), len(runs),
                        sum(status == "succeeded" for status in runs)))
        return len(runs) == RUNS and all(status in ("succeeded", "failed", "cancelled") for status in runs)

    wait_for(all_ended, timeout=240, interval=0.2, what="the search's runs to end")
    runs = list(found.runs.order_by("id"))
    assert [run.status for run in runs] == ["succeeded"] * RUNS, "\n".join(
        f"{run.id} {run.status} {run.error}" for run in runs) + celery_workers.log("training")
    assert max(active for active, _, _ in samples) == limit  # the limit was reached, never passed
    # The run counted more than `limit` only once as many had succeeded: runs ending made room for them.
    assert all(total - succeeded <= limit for _, total, succeeded in samples), samples
    assert any(total == limit for _, total, _ in samples)  # seen before any waiting run started
    first_end = min(run.finished_at for run in runs[:limit])
    assert all(run.created_at >= first_end for run in runs[limit:])
    # Each started as a run ended (by the worker, right after it recorded the end), not by a later poll.
    for later in runs[limit:]:
        assert any(0 <= (later.created_at - run.finished_at).total_seconds() < 10 for run in runs if run.finished_at)
    for earlier, later in zip(runs[limit:], runs[limit + 1:]):  # first in line first
        assert later.created_at >= earlier.created_at
    assert len({run.version_id for run in runs}) == 1  # every run learned from the same pictures
    found.refresh_from_db()
    assert found.waiting == [] and found.stopped_at is None

    board = alice.get(reverse("training:search_status", args=[found.pk])).json()
    assert board["active"] == 0 and board["waiting"] == 0
    assert board["summary"] == f"{RUNS} of {RUNS} runs finished."
    best = dict(found.runs.annotate(best=Max("epoch_metrics__val_accuracy")).values_list("id", "best"))
    assert sorted(row["id"] for row in board["rows"]) == sorted(best)
    assert [row["place"] for row in board["rows"]] == list(range(1, RUNS + 1))
    for row in board["rows"]:
        assert best[row["id"]] is not None and row["best_val_text"] == f"{100 * best[row['id']]:.1f}%"
        assert row["status"] == "succeeded" and row["test_text"].endswith("%")
    values = [best[row["id"]] for row in board["rows"]]
    assert values == sorted(values, reverse=True)  # best first
    page = alice.get(reverse("training:search", args=[found.pk])).content.decode()
    assert f"{RUNS} of {RUNS} runs finished." in page and 'id="stop-form" hidden' in page
    assert all(f">Run {run.id}</a>" in page and row_text in page
               for run, row_text in ((run, f"{100 * best[run.id]:.1f}%") for run in runs))
    assert board["best"] is not None and board["best"]["id"] == board["rows"][0]["id"]
