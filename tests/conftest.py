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


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """A test that starts the workers or a browser is marked so, whatever its module says: `make test`
    runs the unmarked ones on every core at once, and these one at a time, since what they wait for is
    timed (scripts/test.py). Before pytest's own hook, which deselects by marker.

    The tests with workers run last, those of a module with workers of its own at the very end: the
    modules that use the shared workers then run one after another, and tests without workers never
    see them (celery_workers)."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "celery_workers" in fixtures:
            item.add_marker(pytest.mark.worker)
        if "browser_page" in fixtures:
            item.add_marker(pytest.mark.browser)
    items.sort(key=_when_its_workers_run)


def _when_its_workers_run(item):
    if "celery_workers" not in getattr(item, "fixturenames", ()):
        return 0
    return 2 if getattr(item.module, "OWN_WORKERS", False) else 1


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
    before = settings.HEARTBEAT_INTERVAL_S
    if transactional and "celery_workers" in request.fixturenames:
        # A run trained here (shapes_model) while the test workers' reaper watches: beat on their short
        # clock (WORKER_SETTINGS), or a slow training on a busy machine is taken for a dead one.
        settings.HEARTBEAT_INTERVAL_S = int(WORKER_SETTINGS["HEARTBEAT_INTERVAL_S"])
    elif not transactional:
        settings.HEARTBEAT_INTERVAL_S = 24 * 3600
    yield
    settings.HEARTBEAT_INTERVAL_S = before


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """A real S3 endpoint on 127.0.0.1 (moto's server, tests/s3.py), shared by the session's tests;
    each test makes its own bucket (`s3.use_bucket`)."""
    from . import s3
    with s3.moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def _chromium():
    """The session's Chromium launches (tests/browser.py `Chromiums`), for `browser_page`."""
    from tests.browser import Chromiums

    chromiums = Chromiums()
    yield chromiums
    chromiums.close()


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


def with_venv_program(command, bin_dir=None):
    """The command with its program (celery, gunicorn) taken from this virtual environment's `bin`,
    also behind the `nice -n 10` that starts the workers (nice then execs it: the pid stays its own)."""
    bin_dir = Path(bin_dir or Path(sys.executable).parent)
    at = 3 if command[:2] == ["nice", "-n"] else 0
    return command[:at] + [str(bin_dir / command[at])] + command[at + 1:]


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


WORKER_PROGRAMS = ("default", "training", "beat")


def _is_stopped(pid):
    """Whether the process is stopped (SIGSTOP), as a test that freezes a worker leaves it if it fails."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    except (OSError, IndexError):
        return False


class Workers:
    """The worker processes of supervisord.conf (all but web), each in its own process group."""

    def __init__(self, env, log_dir):
        self.env, self.log_dir = env, log_dir
        self.processes, self.logs, self.offsets = {}, {}, {}

    def start(self, name):
        command = with_venv_program([part.replace("%h", f"tests-{os.getpid()}") for part in supervised_command(name)])
        self.logs[name] = self.log_dir / f"{name}.log"
        self.processes[name] = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=self.logs[name].open("ab"),
                                                stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self):
        return all(p.poll() is None for p in self.processes.values())

    def complete(self):
        """Every program running, none stopped or frozen by a test."""
        return set(self.processes) >= set(WORKER_PROGRAMS) and self.alive() and not any(
            _is_stopped(process.pid) for process in self.processes.values())

    def mark(self):
        """From here on, log() returns only what the workers write next: a module sharing the workers
        reads its own part."""
        self.offsets = {name: path.stat().st_size if path.exists() else 0 for name, path in self.logs.items()}

    def kill(self, name, sig=signal.SIGKILL):
        """Signal the worker and every process it started, as a crash or a reboot would."""
        os.killpg(self.processes[name].pid, sig)
        self.processes[name].wait(30)

    def log(self, name):
        with self.logs[name].open("rb") as log:
            log.seek(self.offsets.get(name, 0))
            return log.read().decode(errors="replace")

    def stop_all(self, wait_s=15):
        """A warm shutdown, as supervisord gives: SIGTERM to each worker's main process, which stops its
        own pool (signalled as a group, the pool's processes died under a main process that then waited
        for them until it was killed, 30 s each time); after `wait_s` the groups are killed."""
        running = [process for process in self.processes.values() if process.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + wait_s
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for process in self.processes.values():
            try:
                os.killpg(process.pid, signal.SIGKILL)  # what is left of the group: a stuck pool, a server it started
            except ProcessLookupError:
                pass
            process.wait(30)


@pytest.fixture(scope="session")
def _worker_sets():
    """The set of workers the modules share, once started; stopped when the session ends."""
    sets = {}
    yield sets
    _stop_shared_workers(sets)


def _stop_shared_workers(sets):
    workers = sets.pop("shared", None)
    if workers is not None:
        workers.stop_all()


def _start_workers(tmp_path_factory):
    from dlsite.celery import app

    env = dict(os.environ, DATABASE_URL=test_database_url(), DJANGO_SETTINGS_MODULE="dlsite.settings",
               PYTHONUNBUFFERED="1", **WORKER_SETTINGS)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    app.control.purge()  # messages left on a shared Redis by an earlier run refer to other databases
    workers = Workers(env, tmp_path_factory.mktemp("worker-logs"))
    try:
        for name in WORKER_PROGRAMS:
            workers.start(name)
        wait_for(lambda: _queues_served(app) >= {"default", "training"} or not workers.alive(),
                 timeout=90, interval=1, what="the workers to start")
        assert workers.alive(), workers.log("default") + workers.log("training") + workers.log("beat")
    except BaseException:
        workers.stop_all()
        raise
    return workers


@pytest.fixture(scope="module")
def celery_workers(request, django_db_setup, django_db_blocker, tmp_path_factory, _worker_sets):
    """The Celery workers and beat of `make run`, as real processes on the real broker, reading and
    writing the test database.

    Started once and shared by the modules that only use them: starting and stopping a set took about
    20 s a module. The tests with workers run after the others (pytest_collection_modifyitems), so
    tests elsewhere see a site with no workers. A module that leaves a worker dead, or a task still
    running, leaves the next one a fresh set. A module that sets the workers' environment up first
    says `OWN_WORKERS = True`: it gets a set of its own, and the shared one is stopped meanwhile (two
    sets on one broker would share its messages out between them)."""
    from dlsite.celery import app

    if getattr(request.module, "OWN_WORKERS", False):
        _stop_shared_workers(_worker_sets)
        workers = _start_workers(tmp_path_factory)
        try:
            yield workers
        finally:
            workers.stop_all()
        return
    workers = _worker_sets.get("shared")
    if workers is not None and workers.complete() and not _busy(app):
        app.control.purge()
    else:
        _stop_shared_workers(_worker_sets)
        workers = _worker_sets["shared"] = _start_workers(tmp_path_factory)
    workers.mark()
    yield workers
    if not workers.complete() or _busy(app):
        _stop_shared_workers(_worker_sets)


def _busy(app):
    replies = app.control.inspect(timeout=1).active() or {}
    return any(replies.values())


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
