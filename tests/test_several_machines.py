"""The site spread over machines that share nothing but PostgreSQL, Redis and an S3 bucket.

Each "machine" is a set of processes with a data folder and HOME of its own, empty at the start: the
web server (and beat), a training worker on host gpu-a, the default worker on host cpu-host, and later
a second training worker on host gpu-b. The bucket is moto's S3 server on 127.0.0.1. A program
uploads, trains, classifies one picture and a zip, exports and downloads through the API; every file
must pass through the bucket, and each folder must hold only its own process's cache. Then the
training worker of gpu-a is killed with SIGKILL mid-run and gpu-b's takes the run over and finishes it.

PostgreSQL and Redis are those of this machine (127.0.0.1, as .ci/run uses them), in both passes of
the suite: a database made for this test and a Redis database of its own (MACHINES_REDIS_DB).
"""
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import redis
import requests

from tests import s3
from tests.conftest import ROOT, WORKER_SETTINGS, supervised_command, wait_for, with_venv_program
from tests.images import CLASSES, image_bytes, labelled_zip, make_zip

pytestmark = pytest.mark.worker

POSTGRES = os.environ.get("MACHINES_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS = "redis://127.0.0.1:6379"
MACHINES_REDIS_DB = 15
# Settings a process of the test site must not take from the test run's own environment.
NOT_INHERITED = ("DATA_DIR", "MEDIA_ROOT", "PACK_DIR", "LOCAL_CACHE_DIR", "PRETRAINED_WEIGHTS_DIR", "DATABASE_URL",
                 "CELERY_BROKER_URL", "STORAGE_URL", "DJANGO_SETTINGS_MODULE", "SUPERVISOR_SOCKET")


def _reachable():
    try:
        psycopg.connect(POSTGRES, connect_timeout=3).close()
        redis.Redis.from_url(REDIS, socket_timeout=3).ping()
        return True
    except Exception:
        return False


class Machine:
    """The processes of one host: each with the host's data folder and HOME, and its own log."""

    def __init__(self, name, folder, env):
        self.name, self.folder = name, folder
        self.home = folder / "home"
        self.home.mkdir(parents=True)
        self.env = dict(env, DATA_DIR=str(folder), HOME=str(self.home))
        self.processes, self.logs = {}, {}

    def start(self, program, **extra):
        env = dict(self.env, **extra)
        command = with_venv_program([part.replace("%h", self.name) for part in supervised_command(program, env)])
        self.logs[program] = self.folder.parent / f"{self.name}-{program}.log"
        self.processes[program] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.logs[program].open("ab"),
                                                   stderr=subprocess.STDOUT, start_new_session=True)

    def manage(self, *args):
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def kill(self, program):
        os.killpg(self.processes[program].pid, signal.SIGKILL)
        self.processes[program].wait(30)

    def stop(self):
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def log(self):
        return "\n".join(f"--- {self.name} {program}\n" + path.read_text(errors="replace")[-4000:]
                         for program, path in self.logs.items())

    def files(self):
        """Every file in this host's data folder, relative to it."""
        return sorted(p.relative_to(self.folder).as_posix() for p in self.folder.rglob("*") if p.is_file())


@pytest.fixture
def site(tmp_path, s3_endpoint):
    if not _reachable():
        pytest.skip(f"needs PostgreSQL ({POSTGRES}) and Redis ({REDIS}) on this machine")
    database = f"machines_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    broker = f"{REDIS}/{MACHINES_REDIS_DB}"
    redis.Redis.from_url(broker).flushdb()
    bucket = s3.new_bucket(s3_endpoint)
    env = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED}
    env.update(s3.environment(s3_endpoint, bucket), **WORKER_SETTINGS,
               DATABASE_URL=POSTGRES.rsplit("/", 1)[0] + f"/{database}", CELERY_BROKER_URL=broker,
               SECRET_KEY="several-machines-" + uuid.uuid4().hex, HEALTHZ_TOKEN="machines", HEALTHZ_CACHE_S="0", DJANGO_SETTINGS_MODULE="dlsite.settings",
               PYTHONUNBUFFERED="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    machines = {}

    def machine(name):
        machines[name] = Machine(name, tmp_path / name, env)
        return machines[name]

    site = type("Site", (), {})()
    site.env, site.bucket, site.endpoint, site.machine, site.machines = env, bucket, s3_endpoint, machine, machines
    site.database = env["DATABASE_URL"]
    try:
        yield site
    finally:
        for one in machines.values():
            one.stop()
        redis.Redis.from_url(broker).flushdb()
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(ask, done, timeout, what, logs):
    deadline = time.monotonic() + timeout
    answer = None
    while time.monotonic() < deadline:
        answer = ask()
        if done(answer):
            return answer
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; the last answer was {answer}\n{logs()}")


def test_hosts_sharing_only_the_database_the_broker_and_a_bucket(site):
    web, gpu_a, cpu = site.machine("web-host"), site.machine("gpu-a"), site.machine("cpu-host")

    def logs():
        return "\n".join(m.log() for m in site.machines.values())

    web.manage("migrate", "--noinput")
    key = web.manage("shell", "-c", (
        "from django.contrib.auth import get_user_model; from api_app.models import ApiToken;"
        "u = get_user_model().objects.create_user('ada', password='a-long-test-password');"
        "print(ApiToken.objects.create_for(u, 'machines')[1])")).strip().splitlines()[-1]
    port = _free_port()
    web.start("web", HOST="127.0.0.1", PORT=str(port))
    web.start("beat")
    gpu_a.start("training")
    cpu.start("default")
    url = f"http://127.0.0.1:{port}/api/v1"
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {key}"

    def get(path):
        answer = api.get(url + path, timeout=60)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def web_answers():
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code < 500
        except requests.ConnectionError:
            return False

    wait_for(web_answers, timeout=60, what="the web server")
    created = api.post(f"{url}/datasets/", files={"file": ("shapes.zip", labelled_zip(per_class=12))},
                       data={"name": "Shapes"}, timeout=60)
    assert created.status_code == 201, created.text
    dataset = until(lambda: get(f"/datasets/{created.json()['id']}/"),
                    lambda d: d["last_upload"] and d["last_upload"]["status"] in ("done", "failed"), 120,
                    "the upload to be read", logs)
    assert dataset["last_upload"]["status"] == "done" and dataset["images"] == 36, dataset

    started = api.post(f"{url}/datasets/{dataset['id']}/runs/", timeout=60,
                       json={"preset": "small_cnn", "image_size": 16, "epochs": 2, "batch_size": 8})
    assert started.status_code == 201, started.text
    run = until(lambda: get(f"/runs/{started.json()['id']}/"), lambda r: r["is_final"], 240, "the run", logs)
    assert run["status"] == "succeeded", (run, logs())

    pictures = [("images", (f"{kind}.png", image_bytes(kind, 16, seed=7), "image/png")) for kind in ("horizontal", "vertical")]
    answer = api.post(f"{url}/models/{run['id']}/classify/", files=pictures, timeout=60)
    assert answer.status_code == 200, answer.text
    assert [r["class"] for r in answer.json()["results"]] and all(r["class"] in CLASSES for r in answer.json()["results"])

    many = make_zip({f"{i}.png": image_bytes(CLASSES[i % 3], 16, seed=i) for i in range(4)})
    job = api.post(f"{url}/models/{run['id']}/classifications/", files={"file": ("many.zip", many)}, timeout=60)
    assert job.status_code == 201, job.text
    job = until(lambda: get(f"/classifications/{job.json()['id']}/"), lambda j: j["status"] in ("done", "failed"), 120,
                "the classification of the zip", logs)
    assert (job["status"], job["done"]) == ("done", 4), job
    results = get(f"/classifications/{job['id']}/results/")
    assert sorted(p["name"] for p in results["pictures"]) == [f"{i}.png" for i in range(4)]

    made = api.post(f"{url}/models/{run['id']}/exports/keras/", timeout=60)
    assert made.status_code in (200, 201, 202), made.text
    until(lambda: {e["format"]: e for e in get(f"/models/{run['id']}/exports/")["exports"]}.get("keras", {}),
          lambda e: e.get("status") in ("ready", "failed"), 240, "the export", logs)
    exported = api.get(f"{url}/models/{run['id']}/exports/keras/download/", timeout=60)
    assert exported.status_code == 200 and exported.content[:2] == b"PK", exported.text[:300]
    model = api.get(f"{url}/models/{run['id']}/download/", timeout=60)
    assert model.status_code == 200 and model.content[:2] == b"PK", model.text[:300]

    # Everything kept is in the bucket...
    kept = s3.keys(site.endpoint, site.bucket)
    # (The uploaded zip was kept there too, until it was read: the default worker read it from the bucket.)
    for prefix in ("datasets/", "versions/", f"models/{run['id']}/attempt-", "classifications/", "packs/"):
        assert any(k.startswith(prefix) for k in kept), (prefix, kept)
    assert any(k.startswith(f"models/{run['id']}/exports/") for k in kept), kept
    # ... and no host kept anything of another's: no media folder anywhere, only caches and logs.
    for one in (web, gpu_a, cpu):
        assert not [name for name in one.files() if name.startswith("media/")], (one.name, one.files())
    # The web server classified with its own cached copy of the model; the training host kept its pack.
    assert [n for n in web.files() if n.startswith("local-cache/") and n.endswith("model.keras")], web.files()
    assert not [n for n in web.files() if n.endswith(".npy")], web.files()
    assert [n for n in gpu_a.files() if n.startswith("local-cache/") and n.endswith("train_x.npy")], gpu_a.files()

    # /healthz lists each host with its workers and devices, and the bucket as reachable.
    health = requests.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Healthz-Token": "machines"}, timeout=30).json()
    assert health["storage"] == "ok", health
    assert {(h["host"], w["name"], h["devices"]) for h in health["hosts"] for w in h["workers"]} == {
        ("gpu-a", "training@gpu-a", "CPU"), ("cpu-host", "default@cpu-host", "CPU")}, health

    # A training worker killed mid-run: another host's worker takes it over from the bucket and finishes.
    longer = api.post(f"{url}/datasets/{dataset['id']}/runs/", timeout=60,
                      json={"preset": "small_cnn", "image_size": 16, "epochs": 60, "batch_size": 4})
    assert longer.status_code == 201, longer.text
    until(lambda: get(f"/runs/{longer.json()['id']}/"), lambda r: len(r["metrics"]) >= 2, 240,
          "two epochs of the longer run", logs)
    gpu_a.kill("training")
    gpu_b = site.machine("gpu-b")
    gpu_b.start("training")
    run = until(lambda: get(f"/runs/{longer.json()['id']}/"), lambda r: r["is_final"], 300,
                "the run to be taken over", logs)
    assert run["status"] == "succeeded", (run, logs())
    with psycopg.connect(site.database) as db:
        attempts, resumed = db.execute("SELECT attempts, resumed_after_epoch FROM training_app_trainingrun WHERE id = %s",
                                       (run["id"],)).fetchone()
    assert attempts == 2, (attempts, logs())
    assert resumed and resumed >= 1, (resumed, logs())  # continued from gpu-a's backup, through the bucket
    assert not [name for name in gpu_b.files() if name.startswith("media/")], gpu_b.files()
