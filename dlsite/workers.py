"""The broker and the Celery workers as the web process sees them: whether the broker answers,
which workers listen on which queue, and on which computers (hosts) they run, with the GPUs each
sees. Shared by /healthz (dlsite/views.py) and the queue page. Also whether this computer can run
workers for a site on other computers (`manage.py check_worker_host`, `make worker`)."""
import os
import re

from django.conf import settings

from .celery import app as celery_app

QUEUES = ("default", "training")


def check_broker():
    """Returns "ok", or why the broker cannot be reached, within about 2 s. Ask this before
    `worker_details`: with the broker down, Celery's broadcast retries for about 6 s, then raises."""
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:
        return f"error: {exc}"


def worker_details(timeout=1.0):
    """{worker name: {"queues": [...], "gpus": [...]}}, from the workers' own replies to the command
    `queues_and_gpus` (dlsite/celery.py); "gpus" is [] for a worker on the CPU.

    Takes the whole `timeout`: Celery cannot know how many workers there are, so it waits that
    long for replies. One question for both, so the pages wait once."""
    replies = celery_app.control.broadcast("queues_and_gpus", reply=True, timeout=timeout) or []
    # A worker of an older version of the site answers "unknown command" (a dict without "queues").
    return {name: answer for reply in replies for name, answer in reply.items()
            if isinstance(answer, dict) and "queues" in answer}


def live_workers(timeout=1.0, details=None):
    """{queue name: sorted names of the workers listening on it}, from `worker_details` (asked
    here unless given)."""
    details = worker_details(timeout) if details is None else details
    workers = {}
    for name, answer in details.items():
        for queue in answer["queues"]:
            workers.setdefault(queue, []).append(name)
    return {queue: sorted(names) for queue, names in workers.items()}


def hosts(details):
    """The computers the workers run on, by name, each with its workers and the GPUs they see:
    [{"host", "gpus", "devices", "workers": [{"name", "queues", "gpus", "devices"}]}]. A worker's
    name is `kind@host` (supervisord.conf, scripts/gpu-workers); "devices" says "CPU" for no GPU."""
    by_host = {}
    for name in sorted(details):
        answer = details[name]
        by_host.setdefault(name.partition("@")[2] or name, []).append({
            "name": name, "queues": answer["queues"], "gpus": answer["gpus"], "devices": devices_text(answer["gpus"])})
    rows = []
    for host, workers in sorted(by_host.items()):
        gpus = sorted({gpu for worker in workers for gpu in worker["gpus"]}, key=_gpu_number)
        rows.append({"host": host, "gpus": gpus, "devices": devices_text(gpus), "workers": workers})
    return rows


def devices_text(gpus):
    return ", ".join(gpus) if gpus else "CPU"


def _gpu_number(gpu):
    """GPU 10 after GPU 9, not after GPU 1."""
    match = re.match(r"GPU (\d+)", gpu)
    return (int(match[1]) if match else 0, gpu)


def worker_host_problems():
    """Why this computer cannot run workers for a site whose web server is on another computer, in
    plain words, or [] when it can. Each problem is something that would stay on this computer,
    where the web server never looks: the worker would wait for work that never comes, or do it
    and have its results lost."""
    problems = []
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        problems.append("CELERY_BROKER_URL is not set, so the job queue would be a folder on this computer, "
                        "where the web server never puts work. Set it to the site's Redis, "
                        "e.g. CELERY_BROKER_URL=redis://web-host:6379/0.")
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        problems.append("DATABASE_URL is not set (or names an SQLite file), so progress and results would be "
                        "written to a file on this computer that the site never reads. Set it to the site's "
                        "PostgreSQL, e.g. DATABASE_URL=postgres://dlsite:PASSWORD@web-host:5432/dlsite.")
    if settings.STORAGE_IS_LOCAL:
        problems.append(f"Files are kept in a folder on this computer ({settings.MEDIA_ROOT}), which the web "
                        "server cannot see: this worker would find no images to train on. Set STORAGE_URL to "
                        "the site's bucket, e.g. STORAGE_URL=s3://dlsite?endpoint_url=http://web-host:9000.")
    if not os.environ.get("SECRET_KEY"):
        problems.append("SECRET_KEY is not set, so this computer would make a key of its own. "
                        "Set the same SECRET_KEY as the web server's.")
    return problems
