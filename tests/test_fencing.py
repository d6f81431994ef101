"""Fenced training workers: every write of a worker is conditional on its claim (the run still
running, at the attempt it claimed), so a worker frozen past the stale limit, whose run the reaper
gave to another worker, stops without writing when it wakes. Also the run state an attempt leaves."""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from tests.conftest import ROOT, new_run, test_database_url, wait_for
from dlsite.heartbeat import Heartbeat
from dlsite.jobs import ClaimLost
from training_app.models import EpochMetric, TrainingRun
from training_app.tasks import train

@pytest.fixture(autouse=True)
def no_model_folders(settings):
    """Run ids start again at 1 in each test: a model folder (or backup) left by another test's run
    must neither be found here nor left for the next one to resume from."""
    shutil.rmtree(settings.MODELS_DIR, ignore_errors=True)
    yield
    shutil.rmtree(settings.MODELS_DIR, ignore_errors=True)


LOGS = {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.7, "learning_rate": 0.01}


def given_to_another_worker(run_id, settings):
    """What the reaper and a second worker do to a run whose worker went silent: queue it again
    (reap_stale), then claim it as attempt 2. Returns the second worker's run object."""
    settings.HEARTBEAT_STALE_S = 60

    def reaped():  # a write of the first worker in between refreshes its heartbeat: the reaper tries again
        TrainingRun.objects.filter(id=run_id).update(heartbeat_at=timezone.now() - timedelta(seconds=120))
        return TrainingRun.objects.reap_stale() == [run_id]

    wait_for(reaped, timeout=10, interval=0.01, what="the reaper to queue the run again")
    second = TrainingRun.objects.claim(run_id)
    assert second is not None and second.attempts == 2
    return second


def row(run_id):
    return TrainingRun.objects.values("status", "attempts", "epoch", "batch", "phase", "error", "finished_at",
                                      "model_file", "heartbeat_at").get(id=run_id)


def test_a_worker_whose_run_was_given_to_another_cannot_write_to_it(shapes, settings):
    run = new_run(shapes)
    first = TrainingRun.objects.claim(run.id)
    second = given_to_another_worker(run.id, settings)
    before = row(run.id)

    for write in (lambda: first.record_epoch(1, LOGS, 2.0), lambda: first.record_batch(1, 2, 3),
                  lambda: first.record_phase("Preparing images", 1, 30), lambda: first.record(devices="CPU"),
                  lambda: first.finish(TrainingRun.Status.SUCCEEDED, model_file="models/x/model.keras"),
                  lambda: first.fail("Training stopped with an error")):
        with pytest.raises(ClaimLost):
            write()
    assert row(run.id) == before
    assert not EpochMetric.objects.filter(run_id=run.id).exists()

    second.record_epoch(1, LOGS, 2.0)  # the worker that holds the claim writes as before
    second.finish(TrainingRun.Status.SUCCEEDED)
    assert list(EpochMetric.objects.filter(run_id=run.id).values_list("epoch", flat=True)) == [1]
    assert TrainingRun.objects.get(id=run.id).status == "succeeded"


def test_a_worker_whose_run_was_cancelled_and_reaped_cannot_finish_it(shapes, settings):
    settings.HEARTBEAT_STALE_S = 60
    first = TrainingRun.objects.claim(new_run(shapes).id)
    first.request_cancel()
    TrainingRun.objects.filter(id=first.id).update(heartbeat_at=timezone.now() - timedelta(seconds=120))
    TrainingRun.objects.reap_stale()
    with pytest.raises(ClaimLost):
        first.finish(TrainingRun.Status.SUCCEEDED)
    assert TrainingRun.objects.get(id=first.id).status == "cancelled"


@pytest.mark.django_db(transaction=True)
def test_training_stops_without_writing_once_the_run_went_to_another_worker(shapes, settings):
    """The task in this process; a thread plays the reaper and the second worker as soon as the
    first epoch is recorded. The first worker stops at its next batch: no more epochs, no failure,
    no model of its own."""
    settings.HEARTBEAT_INTERVAL_S = 60  # the conditional writes alone must stop it
    run = new_run(shapes, epochs=200, batch_size=8)
    epochs_at_takeover = []

    def take_over():
        try:
            wait_for(lambda: EpochMetric.objects.filter(run_id=run.id).exists(), timeout=120, interval=0.02,
                     what="the first epoch")
            given_to_another_worker(run.id, settings)
            epochs_at_takeover.append(EpochMetric.objects.filter(run_id=run.id).count())
        finally:
            connection.close()

    thief = threading.Thread(target=take_over)
    thief.start()
    train(run.id)  # returns (no exception) once it notices
    thief.join()
    after = TrainingRun.objects.get(id=run.id)
    assert (after.status, after.attempts, after.error, after.model_file) == ("running", 2, "", "")
    assert [EpochMetric.objects.filter(run_id=run.id).count()] == epochs_at_takeover  # none written after it
    assert epochs_at_takeover[0] < 200
    assert not (run.model_folder / "attempt-1").exists()


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_keeps_beating_after_a_database_error(shapes, monkeypatch, caplog):
    run = TrainingRun.objects.claim(new_run(shapes).id)
    real_beat = Heartbeat.beat_once
    failures = []

    def fails_once(self):
        if not failures:
            failures.append(timezone.now())
            raise OperationalError("server closed the connection unexpectedly")
        return real_beat(self)

    monkeypatch.setattr(Heartbeat, "beat_once", fails_once)
    with Heartbeat(run, interval_s=0.05):
        wait_for(lambda: failures and TrainingRun.objects.get(id=run.id).heartbeat_at > failures[0], timeout=10,
                 interval=0.05, what="a beat after the failed one")
    assert f"Training run {run.id}: a heartbeat failed (server closed the connection unexpectedly)" in caplog.text
    assert not run.claim_lost


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_survives_its_database_connection_being_cut(shapes, monkeypatch):
    """A real transient error: PostgreSQL ends the heartbeat thread's session, as a server restart
    or a network cut does."""
    if connection.vendor != "postgresql":
        pytest.skip("ending another session's connection needs PostgreSQL")
    run = TrainingRun.objects.claim(new_run(shapes).id)
    # The heartbeat thread notes its own session: matching pg_stat_activity by query text could
    # also match another test's or a worker's session, and ending that one breaks them instead.
    real_beat = Heartbeat.beat_once
    sessions = []

    def beat_and_note_session(self):
        with connection.cursor() as cursor:  # the heartbeat thread's own connection
            cursor.execute("SELECT pg_backend_pid()")
            sessions.append(cursor.fetchone()[0])
        return real_beat(self)

    monkeypatch.setattr(Heartbeat, "beat_once", beat_and_note_session)
    with Heartbeat(run, interval_s=0.1):
        wait_for(lambda: sessions, timeout=10, interval=0.05, what="the heartbeat's session")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [sessions[0]])
        cut_at = timezone.now()
        wait_for(lambda: TrainingRun.objects.get(id=run.id).heartbeat_at > cut_at + timedelta(seconds=0.3),
                 timeout=10, interval=0.05, what="beats after the connection was cut")
    assert not run.claim_lost


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_notices_when_the_run_went_to_another_worker(shapes, settings):
    first = TrainingRun.objects.claim(new_run(shapes).id)
    with Heartbeat(first, interval_s=0.05):
        second = given_to_another_worker(first.id, settings)
        wait_for(lambda: first.claim_lost, timeout=5, interval=0.02, what="the heartbeat to see the claim gone")
        # The old heartbeat stopped: it no longer keeps the other worker's run looking alive.
        TrainingRun.objects.filter(id=first.id).update(heartbeat_at=timezone.now() - timedelta(seconds=120))
        stale_at = TrainingRun.objects.get(id=first.id).heartbeat_at
        threading.Event().wait(0.3)
        assert TrainingRun.objects.get(id=first.id).heartbeat_at == stale_at
    with pytest.raises(ClaimLost):
        first.cancel_is_requested()  # asked each batch: the training loop stops there
    assert not second.claim_lost


def test_a_resumed_run_says_what_it_does_and_keeps_its_first_start_time(shapes, settings):
    run = new_run(shapes)
    first = TrainingRun.objects.claim(run.id)
    first.record_batch(1, 1, 3)
    second = given_to_another_worker(run.id, settings)
    assert second.started_at == first.started_at  # when the run started, not when attempt 2 did
    assert second.phase == ""  # no longer "Waiting to continue: its worker stopped"
    second.record_batch(2, 1, 3)
    assert TrainingRun.objects.get(id=run.id).phase == "Training"


def children(pid):
    """The ids of the processes `pid` started (a Celery worker's pool process that runs the task)."""
    found = []
    for stat in os.scandir("/proc"):
        try:
            fields = open(f"/proc/{stat.name}/stat").read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if stat.name.isdigit() and int(fields[1]) == pid:
            found.append(int(stat.name))
    return found


def gone(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def run_row_is_free(run_id, wait_s=2):
    """Whether a write to the run's row can go ahead within `wait_s` (no other process holds its lock)."""
    sqlite = connection.vendor == "sqlite"
    with connection.cursor() as cursor:
        if sqlite:  # the write lock is the whole database's; wait for it this long instead of 20 s
            cursor.execute(f"PRAGMA busy_timeout = {wait_s * 1000}")
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            if not sqlite:
                cursor.execute(f"SET LOCAL lock_timeout = '{wait_s}s'")
            TrainingRun.objects.filter(id=run_id).update(cancel_requested=False)
        return True
    except OperationalError:
        return False
    finally:
        if sqlite:
            with connection.cursor() as cursor:
                cursor.execute(f"PRAGMA busy_timeout = {connection.settings_dict['OPTIONS']['timeout'] * 1000}")


def freeze_between_transactions(pgid, run_id):
    """SIGSTOP the worker's processes at a moment when they hold no lock on the run. Frozen inside a
    transaction, a worker holds its locks: on PostgreSQL until the server ends its session (the next
    test), on SQLite (the whole database's write lock) until it wakes."""
    for _ in range(50):
        os.killpg(pgid, signal.SIGSTOP)
        if run_row_is_free(run_id):
            return
        os.killpg(pgid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the worker was inside a transaction each time it was stopped")


@pytest.mark.django_db(transaction=True)
def test_a_process_frozen_inside_a_transaction_loses_its_locks_on_postgresql(shapes):
    """The server ends a session idle inside a transaction after DATABASE_IDLE_IN_TRANSACTION_S, so
    a frozen worker cannot keep the reaper (and every other writer of its run) waiting for good."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no server to end the frozen process's transaction")
    run = new_run(shapes)
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import os, signal, django; django.setup()\n"
            "from django.db import transaction\n"
            "from training_app.models import TrainingRun\n"
            "with transaction.atomic():\n"
            f"    TrainingRun.objects.filter(id={run.id}).update(phase='Frozen while writing')\n"
            "    print('holding the lock', flush=True)\n"
            "    os.kill(os.getpid(), signal.SIGSTOP)\n")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, DATABASE_URL=test_database_url(), DJANGO_SETTINGS_MODULE="dlsite.settings",
                 DATABASE_IDLE_IN_TRANSACTION_S="2"))
    try:
        assert holder.stdout.readline().strip() == "holding the lock"
        assert not run_row_is_free(run.id, wait_s=1)  # held, while the session is young
        wait_for(lambda: run_row_is_free(run.id), timeout=30, interval=0.5, what="the frozen session's lock to go")
        assert TrainingRun.objects.get(id=run.id).phase == ""  # its transaction was rolled back
    finally:
        holder.kill()
        holder.wait(30)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_frozen_worker_that_wakes_after_its_run_moved_on_stops_without_writing(celery_workers, shapes):
    """SIGSTOP to the training worker past the stale limit; the reaper gives the run to a second
    worker; then SIGCONT: one worker finishes the run, the other stops without writing."""
    run = new_run(shapes, epochs=400, batch_size=8)
    train.delay(run.id)
    wait_for(lambda: run.epoch_metrics.count() >= 3, timeout=120, what="three finished epochs")
    frozen = celery_workers.processes.pop("training")
    freeze_between_transactions(frozen.pid, run.id)
    frozen_trainer = children(frozen.pid)  # the pool process training the run
    assert len(frozen_trainer) == 1
    try:
        celery_workers.start("training")
        wait_for(lambda: TrainingRun.objects.filter(id=run.id, attempts=2, status="running").exists(),
                 timeout=120, what="the second worker to take the run")
        taken_at = run.epoch_metrics.count()
        wait_for(lambda: run.epoch_metrics.count() > taken_at + 2, timeout=120, what="epochs by the second worker")
        os.killpg(frozen.pid, signal.SIGCONT)
        finished = wait_for(lambda: TrainingRun.objects.filter(id=run.id, status__in=TrainingRun.FINAL).first(),
                            timeout=300, what="the run to finish")
        wait_for(lambda: gone(frozen_trainer[0]), timeout=300, what="the woken worker's task to end")
    finally:
        os.killpg(frozen.pid, signal.SIGCONT)
        frozen.terminate()  # the main process only, which stops its pool (as Workers.stop_all)
        try:
            frozen.wait(15)
        except subprocess.TimeoutExpired:  # a warm shutdown waits for the pool's new process to start
            pass
        try:
            os.killpg(frozen.pid, signal.SIGKILL)  # what is left of its group
        except ProcessLookupError:
            pass
        frozen.wait(30)
    finished.refresh_from_db()  # as both workers left it
    log = celery_workers.log("training")
    assert (finished.status, finished.error, finished.attempts) == ("succeeded", "", 2), log
    assert list(finished.epoch_metrics.values_list("epoch", flat=True)) == list(range(1, 401))
    assert finished.model_path.exists() and "attempt-2" in finished.model_file
    assert not (finished.model_folder / "attempt-1").exists() and not (finished.model_folder / "backup").exists()
    assert f"Run {run.id}: attempt 1 lost its claim" in log and f"Training run {run.id} failed" not in log
