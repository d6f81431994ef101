"""The queue page: places in line counted over everyone's runs but showing only one's own,
what is training and whether it is still heard from, what finished, and the live workers."""
import os
import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from datasets_app.models import Dataset
from dlsite.workers import devices_text
from mlcore.devices import visible_gpus
from tests.conftest import PASSWORD, new_run, wait_for
from training_app.models import TrainingRun

QUEUE, STATUS = reverse("training:queue"), reverse("training:queue_status")
SECRET = "Mallory's secret plans"


@pytest.fixture(autouse=True)
def _forget_workers():
    # The page keeps the workers' answer for two seconds; each test asks afresh.
    cache.clear()


@pytest.fixture
def secret(other_user):
    """A dataset of the other person, whose name must never reach alice."""
    return Dataset.objects.create(owner=other_user, name=SECRET)


def run_at(dataset, minutes_ago, **fields):
    """A run created `minutes_ago` minutes ago (the order of the line depends on it)."""
    values = {"preset": "small_cnn", "image_size": 16, "channels": 1, "epochs": 5, "batch_size": 8,
              "learning_rate": 0.01, "created_at": timezone.now() - timedelta(minutes=minutes_ago)} | fields
    return TrainingRun.objects.create(owner=dataset.owner, dataset=dataset, **values)


def mine_ahead_of_others(shapes, secret):
    """Waiting, oldest first: mallory, alice, mallory, mallory, alice, mallory; and one of
    mallory's training (not waiting, so it takes no place)."""
    run_at(secret, 60, status="running", worker_host="gpu-9", started_at=timezone.now())
    runs = [run_at(dataset, minutes) for dataset, minutes in
            [(secret, 50), (shapes, 40), (secret, 30), (secret, 20), (shapes, 10), (secret, 5)]]
    return runs[1], runs[4]


def test_places_count_everyones_waiting_runs_and_show_only_ones_own(alice, shapes, secret):
    first, second = mine_ahead_of_others(shapes, secret)

    response = alice.get(QUEUE)

    assert response.status_code == 200
    waiting = response.context["queue"]["waiting"]
    assert [(row["place"], row["mine"], row.get("id")) for row in waiting["rows"]] == [
        ("1", False, None), ("2", True, first.id), ("3–4", False, None), ("5", True, second.id)]
    assert waiting["rows"][0]["text"] == "another person's run"
    assert waiting["rows"][2]["text"] == "2 runs of other people"
    assert waiting["summary"] == "6 runs are waiting, 2 of them yours."
    page = response.content.decode()
    assert "another person&#x27;s run" in page and "2 runs of other people" in page
    assert "Mallory" not in page and "mallory" not in page and "gpu-9" not in page
    assert f"Run {first.id}</a> on Shapes" in page
    assert f"{first.get_preset_display()} · 16×16 grayscale · 5 epochs · batch size 8 · learning rate 0.01" in page
    assert "1 run of another person is training now." in page


def test_the_first_place_goes_to_the_oldest_waiting_run_and_ties_go_to_the_first_made(alice, shapes, secret):
    now = timezone.now()
    theirs = run_at(secret, 0, created_at=now)
    mine = run_at(shapes, 0, created_at=now)
    assert theirs.id < mine.id

    rows = alice.get(STATUS).json()["waiting"]["rows"]

    assert [(row["position"], row["mine"]) for row in rows] == [(1, False), (2, True)]


def test_nothing_waiting_is_said_in_words(alice, shapes, secret):
    run_at(secret, 3)  # behind nobody of alice's: not listed, but counted
    waiting = alice.get(QUEUE).context["queue"]["waiting"]
    assert waiting["rows"] == []
    assert waiting["summary"] == "1 run is waiting, none of them yours."
    TrainingRun.objects.update(status="cancelled")
    assert alice.get(QUEUE).context["queue"]["waiting"]["summary"].startswith("Nothing is waiting")


def test_the_json_has_every_section_and_leaks_nothing_of_other_people(alice, shapes, secret):
    first, _ = mine_ahead_of_others(shapes, secret)
    run_at(shapes, 90, status="succeeded", test_accuracy=0.9333, finished_at=timezone.now())

    response = alice.get(STATUS)

    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    data = response.json()
    assert set(data) == {"waiting", "training", "finished", "jobs", "workers"}
    assert set(data["waiting"]) == {"rows", "total", "mine", "summary"}
    assert (data["waiting"]["total"], data["waiting"]["mine"]) == (6, 2)
    other, own = data["waiting"]["rows"][:2]
    assert other == {"mine": False, "position": 1, "place": "1", "text": "another person's run"}
    assert own["cancel_url"] == reverse("training:cancel", args=[first.id])
    assert own["url"] == reverse("training:detail", args=[first.id])
    assert (own["position"], own["dataset"]) == (2, "Shapes")
    assert re.fullmatch(r"\d\d:\d\d \(40 min ago\)|\d+ \w+, \d\d:\d\d \(40 min ago\)", own["waiting_text"])
    assert data["training"] == {"rows": [], "others": 1, "others_text": "1 run of another person is training now."}
    assert [row["accuracy_text"] for row in data["finished"]] == ["93.3%"]
    assert {q["queue"] for q in data["workers"]["queues"]} == {"default", "training"}
    assert SECRET not in response.content.decode() and "gpu-9" not in response.content.decode()


def test_a_training_run_shows_where_and_how_far(alice, shapes):
    now = timezone.now()
    run_at(shapes, 30, status="running", worker_host="gpu-1", started_at=now - timedelta(minutes=5),
           training_started_at=now - timedelta(seconds=100), heartbeat_at=now - timedelta(seconds=5),
           phase="Training", epoch=2, epochs=5, batch=5, batches_per_epoch=10)

    response = alice.get(QUEUE)

    row, = response.context["queue"]["training"]["rows"]
    assert row["worker_host"] == "gpu-1"
    assert row["epoch_text"] == "Epoch 2 of 5"
    assert row["percent"] == 30.0
    # 30% done in 100 s: about 233 s to go.
    assert row["time_left_text"] == "about 3 min left" and 230 <= row["seconds_left"] <= 236
    assert row["heartbeat_text"] in {"5 s ago", "6 s ago"}
    assert row["stale"] is False and row["stale_text"] == ""
    page = response.content.decode()
    assert "gpu-1" in page and "Training · Epoch 2 of 5" in page and 'data-percent="30.0"' in page
    assert "Not heard from" not in page


def test_a_run_not_heard_from_past_the_stale_limit_says_so(alice, shapes):
    now = timezone.now()
    quiet = run_at(shapes, 30, status="running", worker_host="gpu-2", started_at=now - timedelta(minutes=20),
                   heartbeat_at=now - timedelta(minutes=10), phase="Packing images", phase_done=3, phase_total=9)
    run_at(shapes, 20, status="running", worker_host="gpu-3", started_at=now, heartbeat_at=now - timedelta(seconds=60))

    response = alice.get(QUEUE)

    rows = {row["id"]: row for row in response.context["queue"]["training"]["rows"]}
    stale, fresh = rows[quiet.id], next(row for row in rows.values() if row["id"] != quiet.id)
    assert stale["stale"] is True and stale["heartbeat_seconds_ago"] >= 600
    assert stale["stale_text"].startswith("Not heard from since ")
    assert "(10 min ago): the computer training it may have stopped or lost its connection." in stale["stale_text"]
    assert stale["phase"] == "Packing images: 3 of 9 pictures · estimating the time left…"
    assert stale["percent"] == 33.3 and stale["epoch_text"] == "5 epochs to go"
    assert fresh["stale"] is False and fresh["heartbeat_text"] == "1 min ago"
    page = response.content.decode()
    assert page.count("Not heard from since") == 1 and 'class="stale"' in page
    assert alice.get(STATUS).json()["training"]["rows"][0]["stale"] is True


def test_the_queue_lists_every_kind_of_job_with_the_reapers_stale_limit(alice, shapes, settings):
    now = timezone.now()
    settings.HEARTBEAT_STALE_S = 30
    run_at(shapes, 20, status="running", started_at=now, heartbeat_at=now - timedelta(seconds=45))
    run_at(shapes, 10)  # waiting
    shapes.uploads.create(original_name="more.zip", status="queued")

    response = alice.get(QUEUE)

    jobs = {row["kind"]: row for row in response.context["queue"]["jobs"]}
    assert set(jobs) == {"upload", "trainingrun", "classification", "modelexport", "suggestionjob", "weightsdownload",
                         "treestrial", "labelreview"}
    assert (jobs["trainingrun"]["queued"], jobs["trainingrun"]["running"], jobs["trainingrun"]["silent"]) == (1, 1, 1)
    assert (jobs["upload"]["queued"], jobs["classification"]["queued"]) == (1, 0)
    assert response.context["queue"]["training"]["rows"][0]["stale"] is True  # the same limit as the reaper's
    page = response.content.decode()
    assert '<tr data-kind="trainingrun">' in page and "Training runs" in page
    assert alice.get(STATUS).json()["jobs"] == response.context["queue"]["jobs"]


def test_finished_lists_the_last_twenty_of_ones_own_newest_first(alice, shapes, secret):
    now = timezone.now()
    for n in range(22):
        run_at(shapes, 200, status="succeeded", test_accuracy=n / 100, finished_at=now - timedelta(minutes=60 - n))
    failed = run_at(shapes, 100, status="failed", finished_at=now - timedelta(minutes=1), error="Out of memory")
    run_at(secret, 100, status="succeeded", test_accuracy=0.5, finished_at=now)
    run_at(shapes, 1)  # waiting, not finished

    response = alice.get(QUEUE)

    finished = response.context["queue"]["finished"]
    assert len(finished) == 20
    assert finished[0]["id"] == failed.id
    assert (finished[0]["status_label"], finished[0]["accuracy_text"]) == ("Failed", "–")
    assert finished[0]["when_text"].endswith("(1 min ago)")
    assert [row["accuracy_text"] for row in finished[1:4]] == ["21.0%", "20.0%", "19.0%"]
    assert all(row["dataset"] == "Shapes" for row in finished)
    page = response.content.decode()
    assert '<span class="badge failed">Failed</span>' in page and ">3.0%<" in page and ">2.0%<" not in page


def test_the_page_and_its_json_need_a_login(client, db):
    for url in (QUEUE, STATUS):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_another_person_cannot_cancel_a_run_through_the_queue(client, user, shapes, other_user):
    mine = new_run(shapes)
    client.force_login(user)
    page = client.get(QUEUE).content.decode()
    cancel_url = reverse("training:cancel", args=[mine.id])
    assert f'action="{cancel_url}"' in page

    client.force_login(other_user)
    theirs = client.get(STATUS).json()
    assert theirs["waiting"]["rows"] == [] and theirs["waiting"]["total"] == 1
    assert client.post(cancel_url).status_code == 404
    mine.refresh_from_db()
    assert mine.status == "queued"

    client.force_login(user)
    assert client.post(cancel_url).status_code == 302
    mine.refresh_from_db()
    assert mine.status == "cancelled"
    data = client.get(STATUS).json()
    assert data["waiting"]["rows"] == [] and data["finished"][0]["status_label"] == "Stopped"


def test_without_workers_each_queue_says_so_plainly(alice, db):
    page = alice.get(QUEUE).content.decode()
    # The page does not wait for the workers' answer: the script fills them in.
    assert "Asking the workers…" in page and reverse("training:queue_status") in page

    workers = alice.get(STATUS).json()["workers"]

    assert workers["error"] == "" and workers["hosts"] == []
    assert workers["queues"] == [
        {"queue": "default", "job": "reading images", "count": 0, "workers": [],
         "warning": "No worker for reading images is running: uploads will wait. "
                    "Start one with “make run”, or see the README."},
        {"queue": "training", "job": "training models", "count": 0, "workers": [],
         "warning": "No training worker is running: runs will wait. Start one with “make run”, or see the README."},
    ]


def test_an_unreachable_broker_is_said_in_words_not_a_500(alice, monkeypatch):
    # Celery reads this variable before its settings: a real broker address where nothing
    # listens, so the real connection is refused.
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")

    response = alice.get(STATUS)

    assert response.status_code == 200
    workers = response.json()["workers"]
    assert workers["error"].startswith("The job queue (the message broker) does not answer")
    assert "127.0.0.1" not in workers["error"]
    assert [(q["count"], q["warning"]) for q in workers["queues"]] == [(None, ""), (None, "")]


def test_the_page_asks_the_same_few_queries_however_many_runs_there_are(alice, shapes, secret):
    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert alice.get(QUEUE).status_code == 200
        return len(captured)

    mine_ahead_of_others(shapes, secret)
    few = queries()
    for minutes in range(1, 30):
        run_at(shapes if minutes % 3 else secret, minutes)
        run_at(shapes, 100, status="succeeded", finished_at=timezone.now())
        run_at(shapes, 100, status="running", heartbeat_at=timezone.now())
    assert queries() == few


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_in_a_browser_the_page_follows_the_runs_without_reloading(request, live_server, user, shapes, secret):
    # Imported here, not at the top: tests/browser.py skips the whole module it is imported into
    # where Playwright or Chromium is missing, and only this test needs them.
    browser = pytest.importorskip("tests.browser")
    theirs, first, second = run_at(secret, 30), new_run(shapes), new_run(shapes)

    # The session's Chromium (tests/conftest.py `_chromium`): a second Playwright beside it is refused.
    context = request.getfixturevalue("_chromium")(browser.CHROMIUM_ARGS).new_context()
    page = context.new_page()
    errors = []
    page.on("console", lambda message: browser._record_console_error(errors, message))
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    try:
        page.goto(f"{live_server.url}{reverse('login')}")
        page.fill("input[name=username]", user.username)
        page.fill("input[name=password]", PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("link", name="Queue").click()

        expect = browser.expect
        expect(page.locator("#waiting-rows tr")).to_have_count(3)
        expect(page.locator("#waiting-rows tr").first).to_contain_text("another person's run")
        # The workers come from the polled JSON: none here.
        expect(page.locator("#workers-list")).to_contain_text("Training models (queue “training”): No training worker")
        expect(page.locator("#workers-asking")).to_have_count(0)

        page.evaluate("window.notReloaded = true")
        now = timezone.now()
        TrainingRun.objects.filter(id=theirs.id).update(status="running", worker_host="gpu-9", started_at=now)
        TrainingRun.objects.filter(id=first.id).update(
            status="running", worker_host="gpu-7", started_at=now, heartbeat_at=now, training_started_at=now,
            phase="Training", epoch=1, batch=1, batches_per_epoch=4)
        expect(page.locator("#training-rows")).to_contain_text("gpu-7")
        expect(page.locator("#training-rows")).to_contain_text("Epoch 1 of 2")
        expect(page.locator("#training-others")).to_have_text("1 run of another person is training now.")
        expect(page.locator("#waiting-rows tr")).to_have_count(1)
        expect(page.locator("#waiting-rows tr td").first).to_have_text("1")
        assert page.evaluate("window.notReloaded") is True
        assert "gpu-9" not in page.content()

        # The Cancel button the script drew posts with its token, the run leaves the line,
        # and the person is back on the queue page.
        page.locator("#waiting-rows").get_by_role("button", name="Cancel").click()
        expect(page).to_have_url(re.compile(r"/runs/queue/$"))
        expect(page.locator(".message.info")).to_contain_text("Stopping")
        second.refresh_from_db()
        assert second.status == "cancelled"
        assert errors == []
    finally:
        context.close()


# Last in the module: its workers live until the module ends, and every test above expects none.
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_live_workers_are_listed_per_queue_and_a_run_goes_through(celery_workers, alice, shapes):
    from training_app.tasks import train

    report = alice.get(STATUS).json()["workers"]
    workers = {q["queue"]: q for q in report["queues"]}

    host = f"tests-{os.getpid()}"  # the fixture names its workers like `make run` does, after this process
    for queue in ("default", "training"):
        assert workers[queue]["count"] >= 1 and workers[queue]["warning"] == ""
        assert f"{queue}@{host}" in workers[queue]["workers"]

    # Each computer with its workers and what they train on: each worker asks the driver itself
    # (nvidia-smi), as this process does here; "CPU" on a computer without a GPU.
    devices = devices_text(visible_gpus())
    [computer] = [row for row in report["hosts"] if row["host"] == host]
    assert computer["text"] == f"{host} ({devices})"
    assert [worker["text"] for worker in computer["workers"]] == [
        f"default@{host}: reading images ({devices})", f"training@{host}: training models ({devices})"]
    # /healthz lists them too, for staff and monitors.
    with override_settings(HEALTHZ_TOKEN="queue-test"):
        health = alice.get(reverse("healthz"), headers={"X-Healthz-Token": "queue-test"}).json()
    [computer] = [row for row in health["hosts"] if row["host"] == host]
    assert computer["devices"] == devices
    assert [(worker["name"], worker["queues"]) for worker in computer["workers"]] == [
        (f"default@{host}", ["default"]), (f"training@{host}", ["training"])]

    run = new_run(shapes)
    assert alice.get(STATUS).json()["waiting"]["rows"][0]["id"] == run.id
    train.delay(run.id)
    finished = wait_for(lambda: [row for row in alice.get(STATUS).json()["finished"] if row["id"] == run.id],
                        timeout=180, interval=1, what="the run to finish")
    # "Finished", or "Finished — learned nothing useful": 2 epochs on 30 images may not be enough.
    assert finished[0]["status_label"].startswith("Finished"), celery_workers.log("training")
    assert alice.get(STATUS).json()["waiting"]["rows"] == []
