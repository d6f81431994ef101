import configparser
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "a-long-test-password"


@pytest.fixture(scope="session", autouse=True)
def _remove_test_data_dir():
    yield
    shutil.rmtree(settings.DATA_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_heartbeat_inside_a_test_transaction(request):
    """A test inside a transaction (pytest-django's `db`) has rows no other connection sees, the
    heartbeat thread's own included: its first beat (after HEARTBEAT_INTERVAL_S) would find no claim
    and stop a slow in-process run as lost. Such tests do not beat; transactional ones and workers do."""
    marker = request.node.get_closest_marker("django_db")
    transactional = (marker is not None and marker.kwargs.get("transaction")) or \
        {"transactional_db", "live_server"} & set(request.fixturenames)
    if transactional:
        yield
        return
    before = settings.HEARTBEAT_INTERVAL_S
    settings.HEARTBEAT_INTERVAL_S = 24 * 3600
    yield
    settings.HEARTBEAT_INTERVAL_S = before


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def other_user(db):
    return get_user_model().objects.create_user("mallory", password=PASSWORD)


@pytest.fixture
def alice(client, user):
    client.force_login(user)
    return client


def wait_for(predicate, timeout=120, interval=0.25, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def supervised_command(name, env=None):
    """The command line of program `name` in supervisord.conf, which `make run` runs, so that the
    tests start workers exactly as it does. As supervisord does, "%(ENV_X)s" there stands for the
    environment variable X (of `env`, else of this process) and "%%" for "%"."""
    config = configparser.RawConfigParser()
    config.read(ROOT / "supervisord.conf")
    section = f"program:{name}"
    if not config.has_section(section):
        raise KeyError(name)
    env = os.environ if env is None else env
    command = re.sub(r"%\(ENV_(\w+)\)s", lambda m: env.get(m[1], m[0]), config.get(section, "command"))
    return shlex.split(command.replace("%%", "%"))


def test_database_url():
    """A URL for the database the tests run on, for the worker processes."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


# What the test workers run with: heartbeats and the reaper on a short clock, so that a
# killed worker is noticed within seconds (the defaults are minutes).
# A queued job no worker took is sent again after UNCLAIMED_AFTER_S: longer than a worker takes to
# start again after a test kills it, or a job waiting for it would fail.
WORKER_SETTINGS = {"HEARTBEAT_INTERVAL_S": "1", "HEARTBEAT_STALE_S": "6", "REAPER_INTERVAL_S": "2",
                   "UNCLAIMED_AFTER_S": "15"}


class Workers:
    """The worker processes of supervisord.conf (all but web), each in its own process group."""

    def __init__(self, env, log_dir):
        self.env, self.log_dir = env, log_dir
        self.processes, self.logs = {}, {}

    def start(self, name):
        bin_dir = Path(sys.executable).parent
        command = [part.replace("%h", f"tests-{os.getpid()}") for part in supervised_command(name)]
        command[0] = str(bin_dir / command[0])
        self.logs[name] = self.log_dir / f"{name}.log"
        self.processes[name] = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=self.logs[name].open("ab"),
                                                stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self):
        return all(p.poll() is None for p in self.processes.values())

    def kill(self, name, sig=signal.SIGKILL):
        """Signal the worker and every process it started, as a crash or a reboot would."""
        os.killpg(self.processes[name].pid, sig)
        self.processes[name].wait(30)

    def log(self, name):
        return self.logs[name].read_text(errors="replace")

    def stop_all(self):
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def celery_workers(django_db_setup, django_db_blocker, tmp_path_factory):
    """The Celery workers and beat of `make run`, as real processes on the real broker,
    reading and writing the test database. Per module, so that tests elsewhere
    see a site with no workers."""
    from dlsite.celery import app

    env = dict(os.environ, DATABASE_URL=test_database_url(), DJANGO_SETTINGS_MODULE="dlsite.settings",
               PYTHONUNBUFFERED="1", **WORKER_SETTINGS)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    app.control.purge()  # messages left on a shared Redis by an earlier run refer to other databases
    workers = Workers(env, tmp_path_factory.mktemp("worker-logs"))
    for name in ("default", "training", "beat"):
        workers.start(name)
    try:
        wait_for(lambda: _queues_served(app) >= {"default", "training"} or not workers.alive(),
                 timeout=90, interval=1, what="the workers to start")
        assert workers.alive(), workers.log("default") + workers.log("training") + workers.log("beat")
        yield workers
    finally:
        workers.stop_all()


def _queues_served(app):
    replies = app.control.inspect(timeout=1).active_queues() or {}
    return {queue["name"] for queues in replies.values() for queue in queues}


def ingest_shapes(owner, name="Shapes"):
    """A ready dataset of 30 small images in three classes, ingested by the real ingestion code."""
    from django.core.files.base import ContentFile

    from datasets_app.ingestion import ingest_upload
    from datasets_app.models import Dataset, Upload
    from tests.images import labelled_zip

    dataset = Dataset.objects.create(owner=owner, name=name)
    upload = Upload(dataset=dataset, original_name="shapes.zip")
    upload.file.save("shapes.zip", ContentFile(labelled_zip(per_class=10)), save=True)
    ingest_upload(Upload.objects.claim(upload.id))
    return dataset


def shapes_for(username):
    """The `shapes` dataset for the person a browser test signed up as."""
    from django.contrib.auth import get_user_model

    return ingest_shapes(get_user_model().objects.get(username=username))


@pytest.fixture
def shapes(user):
    return ingest_shapes(user)


def new_run(dataset, **settings):
    """A queued run on a frozen version of the dataset, as the "Start training" view makes it."""
    from datasets_app.versions import freeze
    from training_app.models import TrainingRun

    from mlcore.presets import preset_spec

    values = {"preset": "small_cnn", "image_size": 16, "epochs": 2, "batch_size": 8, "learning_rate": 0.01,
              "channels": dataset.channels(), "version": freeze(dataset, dataset.owner)} | settings
    if "model_spec" not in values:
        values["model_spec"] = preset_spec(values["preset"])
    return TrainingRun.objects.create(owner=dataset.owner, dataset=dataset, **values)


@pytest.fixture
def shapes_model(shapes):
    """A run trained (in this process) on the `shapes` dataset: a model to classify with."""
    from training_app.tasks import train

    run = new_run(shapes, epochs=2)
    train(run.id)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory):
    """The two weights files under the names Keras expects, made here from randomly initialised bases
    (the real ones come from the internet; see the README). Returns the folder and the saved weights."""
    import keras
    import numpy as np

    from mlcore.builder import BASES

    folder = tmp_path_factory.mktemp("weights")
    saved = {}
    for name, base in BASES.items():
        if base.bundled:  # its real weights come with the site (mlcore/efficientnet_lite.py)
            continue
        model = getattr(keras.applications, base.application)(include_top=False, weights=None, input_shape=(32, 32, 3))
        for weight in model.weights:
            # Random kernels differ from any other build's anyway; shifting also the ones and zeros
            # (batch normalisation, the input normalisation) makes their loading visible too.
            if weight.dtype.startswith("float"):
                weight.assign(np.asarray(weight) * 1.01 + 0.001)
        model.save(folder / base.weights_file)  # Keras' legacy HDF5 format, like the published files
        saved[name] = [np.asarray(w) for w in model.weights]
    return folder, saved
