"""The queue page: where each waiting run stands in line, what is training now and where, what
finished lately, which workers are listening on each queue, and the computers they run on with
their GPUs.

The page itself reads only the database, so it never waits on Celery; asking the workers takes
about a second, so that happens in the JSON the page polls (`queue_status`)."""
import logging
import socket
import xmlrpc.client
from datetime import datetime, timezone as dt_timezone
from itertools import groupby

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db.models import F
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateformat import format as format_date

from supervisor import childutils
from supervisor.xmlrpc import UnixStreamHTTPConnection

from dlsite.jobs import job_counts
from dlsite.workers import QUEUES, check_broker, hosts, live_workers, worker_details
from mlcore.words import ago, colour as colour_word, count, decimal, duration

from .models import TrainingRun

logger = logging.getLogger(__name__)

FINISHED_SHOWN = 20
WORKERS_TIMEOUT_S = 1.0
# Every open queue page asks every 2.5 s, and each question holds a web thread for a whole
# second; one answer shared for a short while keeps ten open pages from costing ten threads.
WORKERS_CACHE_S = 2
WORKERS_CACHE_KEY = "training:queue:live-workers"

QUEUE_JOBS = {"default": "reading images", "training": "training models"}
NO_WORKER = {
    "default": "No worker for reading images is running: uploads will wait. "
               "Start one with “make run”, or see the README.",
    "training": "No training worker is running: runs will wait. Start one with “make run”, or see the README.",
}
BROKER_DOWN = ("The job queue (the message broker) does not answer, so no upload or training can start "
               "and nobody can tell which workers are running. Check that it is running, or see the README.")


# What each section shows. Functions of a queryset of runs, so the page and its JSON share them.

def waiting_line(runs, user, now):
    """The waiting runs in the order the training workers take them, as `user` may see them.

    `runs` holds everyone's runs: a run's place counts every waiting run created before it
    (the id breaks ties), or it would not tell how long the wait is. Other people's runs ahead
    of this person's show only as a count, one row per stretch; those behind are left out.
    Two queries however long the line is.
    """
    line = list(runs.filter(status=TrainingRun.Status.QUEUED).order_by("created_at", "id")
                .values_list("id", "owner_id"))
    own_ids = [run_id for run_id, owner_id in line if owner_id == user.id]
    own = {run.id: run for run in runs.filter(id__in=own_ids).select_related("dataset")}
    last_own = max((place for place, (_, owner_id) in enumerate(line, start=1) if owner_id == user.id), default=0)
    rows = []
    ahead = enumerate(line[:last_own], start=1)
    for mine, stretch in groupby(ahead, key=lambda item: item[1][1] == user.id):
        stretch = list(stretch)
        if mine:
            # A run that left the line between the two queries (claimed, deleted) is simply skipped.
            rows += [_waiting_row(own[run_id], place, now) for place, (run_id, _) in stretch if run_id in own]
        else:
            first, last = stretch[0][0], stretch[-1][0]
            rows.append({
                "mine": False, "position": first, "place": str(first) if first == last else f"{first}–{last}",
                "text": "another person's run" if first == last else f"{last - first + 1} runs of other people",
            })
    return {"rows": rows, "total": len(line), "mine": len(own_ids), "summary": _line_summary(len(line), len(own_ids))}


def training_now(runs, user, now):
    mine = (runs.visible_to(user).filter(status=TrainingRun.Status.RUNNING)
            .select_related("dataset").order_by("started_at", "id"))
    others = runs.filter(status=TrainingRun.Status.RUNNING).exclude(owner_id=user.id).count()
    return {"rows": [_running_row(run, now) for run in mine], "others": others,
            "others_text": (count(others, "run of another person is", "runs of other people are") + " training now.")
            if others else ""}


def finished_recently(runs, user, now):
    finished = (runs.visible_to(user).filter(status__in=TrainingRun.FINAL).select_related("dataset")
                .order_by(F("finished_at").desc(nulls_last=True), "-id")[:FINISHED_SHOWN])
    return [_finished_row(run, now) for run in finished]


def queue_sections(user):
    now = timezone.now()
    runs = TrainingRun.objects.all()
    return {"waiting": waiting_line(runs, user, now), "training": training_now(runs, user, now),
            "finished": finished_recently(runs, user, now), "jobs": job_counts(now)}


def workers_report():
    """Per queue: what its workers do, how many answer, their names, and a warning when none does;
    and per computer, its workers and the GPUs they see."""
    report = cache.get(WORKERS_CACHE_KEY)
    if report is None:
        report = _ask_workers()
        cache.set(WORKERS_CACHE_KEY, report, WORKERS_CACHE_S)
    return report


def _ask_workers():
    details, error = {}, ""
    broker = check_broker()
    if broker == "ok":
        try:
            details = worker_details(timeout=WORKERS_TIMEOUT_S)
        except Exception:  # the broker went away between the two questions: say so, never a 500
            logger.exception("asking the workers failed")
            error = BROKER_DOWN
    else:
        # The reason can hold the broker's address and password, so it goes to the log, not the page.
        logger.warning("queue page: broker unreachable: %s", broker)
        error = BROKER_DOWN
    names = live_workers(details=details)
    # With the broker down the count is unknown (None), not zero: the workers may be fine.
    queues = [{"queue": queue, "job": QUEUE_JOBS.get(queue, queue),
               "count": None if error else len(names.get(queue, [])), "workers": names.get(queue, []),
               "warning": "" if names.get(queue) or error else NO_WORKER[queue]}
              for queue in QUEUES]
    return {"queues": queues, "hosts": [_host_row(host) for host in hosts(details)], "error": error}


def _host_row(host):
    """A computer and its workers in words: "gpu-1 (GPU 0: NVIDIA H100 80GB HBM3)", then one line a
    worker, "training-gpu0@gpu-1: training models (GPU 0: NVIDIA H100 80GB HBM3)"."""
    for worker in host["workers"]:
        jobs = " and ".join(QUEUE_JOBS.get(queue, queue) for queue in worker["queues"]) or "no queue"
        worker["text"] = f"{worker['name']}: {jobs} ({worker['devices']})"
    return host | {"text": f"{host['host']} ({host['devices']})"}


# One row of each section, JSON-ready. The texts are made here, once, for the template and the
# script alike; times are measured on the server, so a wrong clock in the browser cannot skew them.

def _waiting_row(run, place, now):
    return {
        "mine": True, "position": place, "place": str(place), "id": run.id,
        "url": reverse("training:detail", args=[run.id]), "dataset": run.dataset.name,
        "settings": settings_summary(run), "waiting_since": run.created_at.isoformat(),
        "waiting_text": _moment(run.created_at, now),
        "cancel_url": reverse("training:cancel", args=[run.id]),
    }


def _running_row(run, now):
    heard = run.last_heard()
    silent_s = max(0.0, (now - heard).total_seconds())
    stale = run.is_silent(now)  # the limit the reaper reads (HEARTBEAT_STALE_S)
    seconds_left = run.seconds_left()
    # Each phase in the person's pictures, with its own time left; training's is in its own column.
    training = run.phase == "Training"
    progress = run.phase_progress(now)
    phase = run.phase if training else progress.text or "Starting"
    if progress.time_left_text and not training:
        phase += f" · {progress.time_left_text}"
    if run.cancel_requested:
        phase = "Stopping at the end of this step…"
    return {
        "id": run.id, "url": reverse("training:detail", args=[run.id]), "dataset": run.dataset.name,
        "worker_host": run.worker_host, "phase": phase, "epoch": run.epoch, "epochs": run.total_epochs,
        "epoch_text": f"Epoch {run.epoch} of {run.total_epochs}" if run.epoch else f"{run.total_epochs} epochs to go",
        # The bar: a counted phase before or after training fills it on its own.
        "percent": (progress.percent if progress.percent is not None and not training
                    else round(100 * run.fraction_done(), 1)),
        "seconds_left": None if seconds_left is None else round(seconds_left),
        "time_left_text": f"about {duration(seconds_left)} left" if seconds_left is not None else "",
        "heartbeat_at": heard.isoformat(), "heartbeat_seconds_ago": round(silent_s),
        "heartbeat_text": ago(silent_s), "stale": stale,
        "stale_text": (f"Not heard from since {_moment(heard, now)}: the computer training it may have "
                       "stopped or lost its connection.") if stale else "",
    }


def _finished_row(run, now):
    ended = run.finished_at or run.created_at
    return {
        "id": run.id, "url": reverse("training:detail", args=[run.id]), "dataset": run.dataset.name,
        # A model no better than guessing never reads as a plain success (mlcore/insights.py).
        "status": run.status, "status_label": run.status_label, "learned_nothing": bool(run.verdict),
        "badge_classes": run.badge_classes,
        "accuracy_text": "–" if run.test_accuracy is None else f"{run.test_accuracy_percent}%",
        "finished_at": ended.isoformat(), "when_text": _moment(ended, now),
    }


def settings_summary(run):
    colour = colour_word(run.channels)
    return (f"{run.get_preset_display()} · {run.image_size}×{run.image_size} {colour} · "
            f"{count(run.epochs, 'epoch')} · batch size {run.batch_size} · learning rate {decimal(run.learning_rate)}")


def _line_summary(total, mine):
    if not total:
        return "Nothing is waiting: a new run starts as soon as a training worker is free."
    if not mine:
        return f"{count(total, 'run is', 'runs are')} waiting, none of them yours."
    return f"{count(total, 'run is', 'runs are')} waiting, {mine} of them yours."


def _moment(when, now):
    """14:05 (3 min ago), with the day when it was not today."""
    local = timezone.localtime(when)
    clock = format_date(local, "H:i" if local.date() == timezone.localtime(now).date() else "j M, H:i")
    return f"{clock} ({ago((now - when).total_seconds())})"


# The processes of `make run`, as supervisord (supervisord.conf) reports them over its socket.

SUPERVISOR_TIMEOUT_S = 2
PROCESS_NAMES = {"web": "Web server", "default": "Worker for reading images",
                 "training": "Worker for training models", "beat": "Scheduler (notices runs whose worker stopped)"}
PROCESS_STATES = {"RUNNING": "Running", "STARTING": "Starting", "BACKOFF": "Failed to start; trying again",
                  "STOPPING": "Stopping", "STOPPED": "Stopped", "EXITED": "Stopped", "FATAL": "Could not be started",
                  "UNKNOWN": "Unknown"}


def server_processes():
    """One row per process that supervisord runs for this site, or [] when the site does not run
    under supervisord (no socket) or it does not answer. Takes milliseconds: a local socket."""
    if not settings.SUPERVISOR_SOCKET.exists():
        return []
    try:
        infos = _supervisor(settings.SUPERVISOR_SOCKET).supervisor.getAllProcessInfo()
    except Exception:  # the site works without it; the page just shows less
        logger.warning("queue page: supervisord at %s did not answer", settings.SUPERVISOR_SOCKET, exc_info=True)
        return []
    return [_process_row(info) for info in infos]


class _UnixConnection(UnixStreamHTTPConnection):
    """supervisor's own connection, with a time limit: a stuck supervisord must not hang the page."""

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(SUPERVISOR_TIMEOUT_S)
        self.sock.connect(self.socketfile)


def _supervisor(socket_path):
    """An XML-RPC proxy to supervisord's socket, as supervisorctl makes it (childutils), with
    our timed connection in place of supervisor's untimed one."""
    transport = childutils.getRPCTransport({"SUPERVISOR_SERVER_URL": f"unix://{socket_path}"})

    def timed_connection():
        connection = _UnixConnection("localhost")
        connection.socketfile = str(socket_path)
        return connection

    transport._get_connection = timed_connection
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport)


def _process_row(info):
    """From supervisor's getProcessInfo: what the process is, its state in words, since when it
    runs, and when it last stopped (a process that died and was started again)."""
    now = datetime.fromtimestamp(info["now"], dt_timezone.utc)
    started = datetime.fromtimestamp(info["start"], dt_timezone.utc) if info["start"] else None
    stopped = datetime.fromtimestamp(info["stop"], dt_timezone.utc) if info["stop"] else None
    running = info["statename"] == "RUNNING"
    return {
        "name": info["name"], "label": PROCESS_NAMES.get(info["name"], info["name"]),
        "state": info["statename"], "state_text": PROCESS_STATES.get(info["statename"], info["statename"].title()),
        "pid": info["pid"] or None,
        "uptime_text": f"for {duration((now - started).total_seconds())}" if running and started else "",
        "last_stop_text": (f"last stopped at {_moment(stopped, now)} and was started again"
                           if running and stopped else (f"stopped at {_moment(stopped, now)}" if stopped else "")),
    }


@login_required
def queue_page(request):
    return render(request, "training_app/queue.html",
                  {"queue": queue_sections(request.user), "processes": server_processes()})


@login_required
def queue_status(request):
    return JsonResponse(queue_sections(request.user) | {"workers": workers_report()})


urlpatterns = [
    path("queue/", queue_page, name="queue"),
    path("queue/status/", queue_status, name="queue_status"),
]
