"""Soak: the whole site under load for a few minutes, with workers killed midway.

    .venv/bin/python benchmarks/soak.py [--seconds 300] [--clients 16] [--images 2000]

Needs PostgreSQL and Redis (DATABASE_URL's server, default postgres://postgres@127.0.0.1:5432;
CELERY_BROKER_URL, default redis://127.0.0.1:6379): it makes a database of its own there, and a
fresh data folder, and removes both at the end. Without them it prints a line saying it skipped.

The web server, the two workers and beat run as `make run` runs them (tests/conftest.py reads
their command lines from the same place). Before the soak, a small run is trained so that the
predict page has a model, and the status pages are timed with one client and nothing else
running: the plain baseline. Then, for --seconds:

- --clients threads loop over the predict page (GET, and a POST classifying one digit every
  fifth time), a run's JSON status and a dataset's JSON progress;
- two uploads of --images MNIST pictures each and two training runs start at once;
- the ingestion worker is SIGKILLed while an upload is being read, and the training worker while
  a run trains; each is started again 3 s later.

Afterwards it waits for every upload and run to end, runs `manage.py cleanup`, and prints one
JSON line: requests served, errors (5xx or no answer; goal 0), p95 latency of the status pages
under load (goal at most 100 ms) and idle (the baseline) with their ratio, and the checks: every
upload and run in an end state, each image and each epoch counted exactly once, no orphaned file
after the clean-up.
"""
import argparse
import http.client
import io
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
MNIST_ZIP = ROOT.parent / "shared" / "data" / "mnist-png.zip"
STATUS_KINDS = ("run_status", "upload_progress")
# Short clocks, so that a killed worker is noticed within the soak (the defaults are minutes).
CLOCKS = {"HEARTBEAT_INTERVAL_S": "2", "HEARTBEAT_STALE_S": "12", "REAPER_INTERVAL_S": "4", "CLEANUP_GRACE_S": "0"}


def services(database_url, broker_url):
    """None when PostgreSQL and Redis answer, else why not."""
    import psycopg
    import redis

    try:
        psycopg.connect(database_url, connect_timeout=3).close()
        redis.Redis.from_url(broker_url, socket_connect_timeout=3).ping()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def own_site(name, port, **extra_env):
    """A database of the benchmark's own on PostgreSQL, a Redis database, a fresh data folder, and the
    environment for the site's processes; None and why, when PostgreSQL, Redis or MNIST is missing.
    Returns (env, data_dir, remove) where remove() drops the database and the folder."""
    server_url = os.environ.get("SOAK_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    broker_url = os.environ.get("SOAK_REDIS_URL", "redis://127.0.0.1:6379/5")
    why_not = services(server_url, broker_url) or (None if MNIST_ZIP.is_file() else f"no {MNIST_ZIP}")
    if why_not:
        return None, why_not
    db_name = f"{name}_{os.getpid()}"
    make_database(server_url, db_name)
    database_url = urlparse(server_url)._replace(path=f"/{db_name}").geturl()
    data_dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    os.environ.update(DATA_DIR=str(data_dir), DATABASE_URL=database_url, CELERY_BROKER_URL=broker_url,
                      DJANGO_SETTINGS_MODULE="dlsite.settings", **extra_env)
    env = dict(os.environ, PYTHONUNBUFFERED="1", PORT=str(port), HOST="127.0.0.1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    sys.path.insert(0, str(ROOT))

    def remove():
        shutil.rmtree(data_dir, ignore_errors=True)
        drop_database(server_url, db_name)
    return (env, data_dir, remove), None


def make_database(server_url, name):
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(server_url, name):
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def mnist_zip(first, count):
    """`count` MNIST training pictures, from the `first`-th on, as a zip of class folders."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(MNIST_ZIP) as source, zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as target:
        names = sorted(n for n in source.namelist() if n.startswith("mnist-png/train/") and n.endswith(".png"))
        random.Random(7).shuffle(names)
        for name in names[first:first + count]:
            digit, file_name = name.split("/")[-2:]
            target.writestr(f"digits/{digit}/{file_name}", source.read(name))
    return buffer.getvalue()


class Processes:
    """The site's processes, started with the command lines `make run` uses."""

    def __init__(self, env, log_dir):
        from tests.conftest import supervised_command, with_venv_program

        self.command_for, self.env, self.log_dir, self.running = supervised_command, env, log_dir, {}
        self.with_venv_program = with_venv_program

    def start(self, name):
        command = self.with_venv_program([part.replace("%h", f"soak-{os.getpid()}")
                                          for part in self.command_for(name, self.env)])
        log = open(self.log_dir / f"{name}.log", "ab")
        self.running[name] = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True)

    def kill(self, name):
        os.killpg(self.running[name].pid, signal.SIGKILL)
        self.running[name].wait(30)

    def stop_all(self):
        for process in self.running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


class Client:
    """One browser's session: keep-alive HTTP with the session cookie, timing every answer."""

    def __init__(self, port, cookies, record):
        self.port, self.cookies, self.record = port, cookies, record
        self.conn = None

    def request(self, kind, method, path, body=None, headers=None):
        headers = {"Cookie": self.cookies, **(headers or {})}
        started = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            self.conn, status = None, 0  # no answer: counted as an error
        self.record(kind, status, time.perf_counter() - started)


def multipart(fields, files):
    boundary = "soakboundary7MA4YWxkTrZu0gW"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (file_name, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{file_name}"\r\n'
                     f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def client_loop(client, urls, digit_png, csrf, stop, every=5):
    body, content_type = multipart({"run": urls["run_id"]}, {"images": ("digit.png", digit_png)})
    turn = 0
    while not stop.is_set():
        turn += 1
        client.request("run_status", "GET", urls["run_status"])
        client.request("upload_progress", "GET", urls["upload_progress"])
        if turn % every == 0:
            client.request("predict_post", "POST", urls["predict"], body,
                           {"Content-Type": content_type, "X-CSRFToken": csrf, "Referer": urls["origin"]})
        else:
            client.request("predict_page", "GET", urls["predict"])


def p95(values):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))] if values else None


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(1)
    print(f"soak: timed out waiting for {what}", file=sys.stderr)
    return False


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--images", type=int, default=2000, help="pictures in each of the two uploads")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    site, why_not = own_site("soak", args.port, **CLOCKS)
    if why_not:
        print(json.dumps({"name": "soak", "skipped": why_not}))
        return
    env, data_dir, remove = site
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from dlsite.celery import app

    app.control.purge()
    processes = Processes(env, data_dir)
    try:
        result = soak(args, processes, data_dir)
    finally:
        processes.stop_all()
        from django.db import connections

        connections.close_all()
    print(json.dumps(result))
    if result["errors"] == 0 and result["checks_passed"]:
        remove()
    else:
        print(f"soak: kept {data_dir} (process logs) and its database", file=sys.stderr)


def soak(args, processes, data_dir):
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client as DjangoClient

    from train import import_zip, press_train  # the same harness as the training benchmarks
    from datasets_app.models import Dataset, Image, Upload
    from datasets_app.starting import start_zip_upload
    from django.core.files.base import ContentFile
    from training_app.models import EpochMetric, TrainingRun

    user = get_user_model().objects.create_user("soak", password="a-long-soak-password")
    model_zip = data_dir / "model.zip"
    model_zip.write_bytes(mnist_zip(0, 1000))
    base = import_zip(user, model_zip, name="digits for the predict page")
    for name in ("default", "training", "beat", "web"):
        processes.start(name)
    small = {"preset": "small_cnn", "image_size": 28, "channels": 1, "batch_size": 64, "optimizer": "adam",
             "learning_rate": 0.001, "lr_schedule": "constant", "early_stopping_patience": 0, "fine_tune_epochs": 0,
             "time_budget_s": 0}
    first, *_ = press_train(base, user, small | {"epochs": 2})
    wait_for(lambda: TrainingRun.objects.get(id=first.id).is_final, 600, "the first run")

    session = DjangoClient()
    session.force_login(user)
    csrf = "soakcsrftoken0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"[:32]
    cookies = f"{settings.SESSION_COOKIE_NAME}={session.cookies[settings.SESSION_COOKIE_NAME].value}; csrftoken={csrf}"
    origin = f"http://127.0.0.1:{args.port}"
    urls = {"run_id": first.id, "run_status": f"/runs/{first.id}/status/",
            "upload_progress": f"/datasets/{base.id}/progress/", "predict": "/predict/", "origin": origin}
    with zipfile.ZipFile(MNIST_ZIP) as source:
        digit_png = source.read(next(n for n in source.namelist() if n.endswith(".png")))
    wait_for(lambda: _answers(args.port), 60, "the web server")

    samples, lock = [], threading.Lock()

    def record(kind, status, seconds):
        with lock:
            samples.append((time.monotonic(), kind, status, seconds))

    # The plain baseline: the status pages, one client, nothing else running.
    idle = Client(args.port, cookies, record)
    idle_until = time.monotonic() + 15
    while time.monotonic() < idle_until:
        for kind in STATUS_KINDS:
            idle.request(kind, "GET", urls["run_status" if kind == "run_status" else "upload_progress"])
    idle_samples, samples[:] = list(samples), []

    uploads = []
    for number in range(2):
        dataset = Dataset.objects.create(owner=user, name=f"soak upload {number + 1}")
        uploads.append(start_zip_upload(dataset, f"digits-{number + 1}.zip",
                                     ContentFile(mnist_zip(1000 + number * args.images, args.images)), user))
    runs = [press_train(base, user, small | {"epochs": 12, "seed": seed})[0] for seed in (1, 2)]

    stop = threading.Event()
    threads = [threading.Thread(target=client_loop, args=(Client(args.port, cookies, record), urls, digit_png, csrf,
                                                          stop), daemon=True) for _ in range(args.clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    kills = {}
    while time.monotonic() - started < args.seconds:
        if "default" not in kills and Upload.objects.filter(status="running", done__gt=200).exists():
            kills["default"] = _kill_and_restart(processes, "default", started)
        if "training" not in kills and TrainingRun.objects.filter(id__in=[r.id for r in runs], status="running",
                                                                 epoch__gte=2).exists():
            kills["training"] = _kill_and_restart(processes, "training", started)
        time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join(90)
    served = len(samples)

    ended = wait_for(lambda: all(Upload.objects.get(id=u.id).is_finished for u in uploads)
                     and all(TrainingRun.objects.get(id=r.id).is_final for r in runs), 1200, "uploads and runs to end")
    call_command("cleanup", stdout=io.StringIO())  # its report is not a figure: stdout holds the JSON line only
    checks = {"all_ended": ended}
    checks["images_once"] = all(
        Image.objects.filter(dataset_id=u.dataset_id).count() == args.images
        == Upload.objects.get(id=u.id).accepted for u in uploads)
    checks["epochs_once"] = all(
        list(EpochMetric.objects.filter(run=r).values_list("epoch", flat=True))
        == list(range(1, TrainingRun.objects.get(id=r.id).epochs + 1)) for r in runs)
    checks["runs_succeeded"] = all(TrainingRun.objects.get(id=r.id).status == "succeeded" for r in runs)
    orphans = _orphans()
    checks["no_orphans"] = not orphans

    status_times = [s for _, kind, status, s in samples if kind in STATUS_KINDS]
    idle_times = [s for _, kind, status, s in idle_samples]
    errors = sum(1 for _, _, status, _ in samples if status == 0 or status >= 500)
    by_kind = {}
    for _, kind, status, seconds in samples:
        by_kind.setdefault(kind, []).append(seconds)
    return {
        "name": "soak", "seconds": args.seconds, "clients": args.clients, "images_per_upload": args.images,
        "requests": served, "requests_per_s": round(served / args.seconds, 1), "errors": errors,
        "statuses": _count(status for _, _, status, _ in samples),
        "p95_status_ms": round(1000 * p95(status_times), 1),
        "p95_status_ms_idle": round(1000 * p95(idle_times), 1),
        "ratio": round(p95(status_times) / p95(idle_times), 1),
        "median_status_ms": round(1000 * statistics.median(status_times), 1),
        "p95_ms_by_kind": {kind: round(1000 * p95(times), 1) for kind, times in sorted(by_kind.items())},
        "killed_at_s": kills, "checks": checks, "checks_passed": all(checks.values()),
        "orphans": orphans[:10],
        "uploads": [_upload_state(u) for u in uploads], "runs": [_run_state(r) for r in runs],
    }


def _answers(port):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        return True
    except OSError:
        return False


def _kill_and_restart(processes, name, started):
    at = round(time.monotonic() - started, 1)
    processes.kill(name)
    time.sleep(3)
    processes.start(name)
    return at


def _orphans():
    """Files under the media folder that the clean-up's own rules still call orphaned after it ran."""
    from housekeeping_app.cleanup import run_cleanup

    return [f"{item.kind}: {item.name}" for item in run_cleanup(dry_run=True).removed]


def _upload_state(upload):
    upload.refresh_from_db()
    return {"status": upload.status, "attempts": upload.attempts, "accepted": upload.accepted, "error": upload.error}


def _run_state(run):
    run.refresh_from_db()
    return {"status": run.status, "attempts": run.attempts, "epochs": run.epochs, "error": run.error[:200],
            "test_accuracy": run.test_accuracy}


def _count(values):
    counts = {}
    for value in values:
        counts[str(value)] = counts.get(str(value), 0) + 1
    return counts


if __name__ == "__main__":
    main()
