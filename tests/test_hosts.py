"""A site on several computers (README, "Running on several machines"): `make worker` and the check
it asks first, the GPUs a worker reports and the computers the pages list, and the systemd units
and environment file of deploy/."""
import os
import re
import shlex
import shutil
import subprocess
import sys
from configparser import RawConfigParser
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from dlsite.workers import hosts, worker_host_problems
from mlcore.devices import visible_gpus
from tests.conftest import ROOT, supervised_command

DEPLOY = ROOT / "deploy"
UNITS = ["dlsite-web.service", "dlsite-default.service", "dlsite-beat.service", "dlsite-training@.service"]


# ---- the check before `make worker`: one refusal each, and the settings it accepts

@pytest.fixture
def shared_settings(settings, monkeypatch):
    """The settings of a GPU host done right: Redis, PostgreSQL, a bucket, the site's key."""
    settings.CELERY_BROKER_URL = "redis://web-host:6379/0"
    settings.STORAGE_IS_LOCAL = False
    monkeypatch.setitem(django_settings.DATABASES["default"], "ENGINE", "django.db.backends.postgresql")
    monkeypatch.setenv("SECRET_KEY", "the-site-s-key")
    return settings


def test_shared_broker_database_bucket_and_key_are_accepted(shared_settings):
    assert worker_host_problems() == []


def test_a_filesystem_broker_is_refused(shared_settings):
    shared_settings.CELERY_BROKER_URL = "filesystem://"
    [problem] = worker_host_problems()
    assert problem.startswith("CELERY_BROKER_URL is not set") and "Redis" in problem


def test_an_sqlite_database_is_refused(shared_settings, monkeypatch):
    monkeypatch.setitem(django_settings.DATABASES["default"], "ENGINE", "django.db.backends.sqlite3")
    [problem] = worker_host_problems()
    assert problem.startswith("DATABASE_URL is not set") and "PostgreSQL" in problem


def test_files_in_a_local_folder_are_refused(shared_settings):
    shared_settings.STORAGE_IS_LOCAL = True
    [problem] = worker_host_problems()
    assert "folder on this computer" in problem and "STORAGE_URL" in problem


def test_a_key_of_the_computers_own_is_refused(shared_settings, monkeypatch):
    monkeypatch.delenv("SECRET_KEY")
    [problem] = worker_host_problems()
    assert problem.startswith("SECRET_KEY is not set")


def check_worker_host(tmp_path, env):
    """`manage.py check_worker_host` in a fresh process with only `env` and a data folder."""
    base = {"PATH": os.environ["PATH"], "DATA_DIR": str(tmp_path / "data"), "DJANGO_SETTINGS_MODULE": "dlsite.settings"}
    return subprocess.run([sys.executable, "manage.py", "check_worker_host"], cwd=ROOT, env=base | env,
                          capture_output=True, text=True, timeout=120)


def env_file(path):
    """NAME=value pairs of an environment file, read as `make worker` reads it: by the shell."""
    printed = subprocess.run(["bash", "-c", f"set -a; . {shlex.quote(str(path))}; env -0"], env={},
                             capture_output=True, text=True, check=True).stdout
    return dict(item.split("=", 1) for item in printed.split("\0") if "=" in item)


def test_the_command_refuses_a_computer_with_nothing_shared_in_plain_words(tmp_path):
    result = check_worker_host(tmp_path, {})
    assert result.returncode == 1
    assert "This computer cannot run the site's workers yet:" in result.stderr  # after axes' own line
    for name in ("CELERY_BROKER_URL", "DATABASE_URL", "STORAGE_URL", "SECRET_KEY"):
        assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_the_command_accepts_the_example_environment_file(tmp_path):
    """The example's settings pass (nothing is connected to: the check reads the settings only)."""
    env = env_file(DEPLOY / "dlsite.env.example")
    assert env["STORAGE_URL"].startswith("s3://") and "&region_name=" in env["STORAGE_URL"]
    result = check_worker_host(tmp_path, env | {"DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 0, result.stderr
    assert "This computer can run the site's workers" in result.stdout


def test_make_worker_checks_first_then_starts_only_training_workers():
    commands = subprocess.run(["make", "-n", "worker", "ENV_FILE=deploy/dlsite.env.example"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout
    assert commands.index(f'. "{ROOT}/deploy/dlsite.env.example"') < commands.index("manage.py check_worker_host && ")
    assert commands.index("check_worker_host") < commands.index("exec nice -n 10 scripts/gpu-workers --cpu-if-none")
    for absent in ("migrate", "gunicorn", "supervisord", "beat"):
        assert absent not in commands


# ---- the GPUs a worker sees, and the computers the pages list

NVIDIA_SMI = """GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5c1c0e4e-aaaa-bbbb-cccc-000000000000)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-9f3e2d1c-aaaa-bbbb-cccc-111111111111)
"""


@pytest.mark.parametrize("cuda_visible_devices, seen", [
    (None, ["GPU 0: NVIDIA H100 80GB HBM3", "GPU 1: NVIDIA H100 80GB HBM3"]),
    ("1", ["GPU 1: NVIDIA H100 80GB HBM3"]),
    ("GPU-9f3e", ["GPU 1: NVIDIA H100 80GB HBM3"]),  # a UUID, or its start, as CUDA takes it
    ("0,7,1", ["GPU 0: NVIDIA H100 80GB HBM3"]),  # CUDA stops at the first entry that is no GPU
    ("", []),
    ("-1", []),
])
def test_a_worker_sees_the_gpus_cuda_visible_devices_leaves_it(cuda_visible_devices, seen):
    assert visible_gpus(NVIDIA_SMI, cuda_visible_devices) == seen


def test_without_nvidias_driver_a_worker_sees_no_gpu():
    assert visible_gpus("", None) == [] and visible_gpus("", "0") == []


def test_workers_are_grouped_by_computer_with_the_gpus_they_see():
    gpu = ["GPU 0: NVIDIA H100 80GB HBM3"], ["GPU 1: NVIDIA H100 80GB HBM3"]
    details = {
        "training-gpu1@gpu-1": {"queues": ["training"], "gpus": gpu[1]},
        "training-gpu0@gpu-1": {"queues": ["training"], "gpus": gpu[0]},
        "default@web": {"queues": ["default"], "gpus": []},
        "training@web": {"queues": ["training"], "gpus": []},
    }
    found = hosts(details)
    assert [(host["host"], host["devices"]) for host in found] == [
        ("gpu-1", "GPU 0: NVIDIA H100 80GB HBM3, GPU 1: NVIDIA H100 80GB HBM3"), ("web", "CPU")]
    assert [(worker["name"], worker["devices"]) for worker in found[0]["workers"]] == [
        ("training-gpu0@gpu-1", "GPU 0: NVIDIA H100 80GB HBM3"), ("training-gpu1@gpu-1", "GPU 1: NVIDIA H100 80GB HBM3")]
    assert [worker["name"] for worker in found[1]["workers"]] == ["default@web", "training@web"]


# ---- sharing one computer with the web server

def test_training_leaves_the_web_server_a_core_from_four_cores_up():
    cores = os.cpu_count() or 1
    expected = cores - 1 if cores >= 4 else cores
    assert django_settings.TRAINING_THREADS == (int(os.environ.get("TRAINING_THREADS") or 0) or expected)


def test_tensorflow_trains_with_the_threads_it_is_given():
    code = ("from mlcore import devices; devices.configure(threads=1); import tensorflow as tf; "
            "print(tf.config.threading.get_intra_op_parallelism_threads(), "
            "tf.config.threading.get_inter_op_parallelism_threads())")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["1", "1"]


# ---- deploy/: the systemd units and the environment file

def unit(name):
    config = RawConfigParser(strict=False, interpolation=None)
    config.optionxform = str  # systemd's names are case-sensitive
    config.read(DEPLOY / name)
    return config


def without_worker_name(command):
    """A command line with the name after -n left out: the units name the GPU in it."""
    at = command.index("-n")
    return command[:at] + command[at + 2:]


@pytest.mark.parametrize("name, program", [("dlsite-default.service", "default"), ("dlsite-beat.service", "beat"),
                                           ("dlsite-training@.service", "training")])
def test_the_units_start_the_workers_nice_as_supervisord_does(name, program):
    service = unit(name)["Service"]
    assert service["Nice"] == "10"
    command = shlex.split(service["ExecStart"].replace("%%", "%"))
    ours = supervised_command(program)[3:]  # after its "nice -n 10"
    assert Path(command[0]).name == ours[0] and command[0].startswith("/opt/dlsite/.venv/bin/")
    if "-n" in ours:
        assert without_worker_name(command[1:]) == without_worker_name(ours[1:])
    else:
        assert command[1:] == ours[1:]


def test_a_training_unit_sees_only_its_own_gpu():
    service = unit("dlsite-training@.service")["Service"]
    assert service["Environment"] == "CUDA_VISIBLE_DEVICES=%i"
    assert "-n training-gpu%i@%%h" in service["ExecStart"]
    assert service["ExecStartPre"].endswith("manage.py check_worker_host")


def test_the_web_server_is_not_nice_and_migrates_first():
    service = unit("dlsite-web.service")["Service"]
    assert "Nice" not in service
    assert service["ExecStartPre"].endswith("manage.py migrate --noinput")
    web = supervised_command("web", {"HOST": "127.0.0.1", "PORT": "8000"})
    assert service["ExecStart"] == "/opt/dlsite/.venv/bin/" + " ".join(web)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", UNITS)
def test_systemd_accepts_each_unit(name, tmp_path):
    """`systemd-analyze verify`, on a copy that names this checkout and its Python instead of
    /opt/dlsite (verify wants every program to exist); any warning fails too."""
    text = (DEPLOY / name).read_text()
    text = text.replace("/opt/dlsite/.venv/bin", str(Path(sys.executable).parent)).replace("/opt/dlsite", str(ROOT))
    (tmp_path / name).write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / name)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and name.split("@")[0] not in result.stdout + result.stderr, result.stderr


def test_every_unit_reads_the_environment_file_that_the_example_is_for():
    for name in UNITS:
        assert unit(name)["Service"]["EnvironmentFile"] == "/etc/dlsite/dlsite.env", name
    env = env_file(DEPLOY / "dlsite.env.example")
    for needed in ("DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "STORAGE_URL", "AWS_ACCESS_KEY_ID",
                   "AWS_SECRET_ACCESS_KEY", "DEBUG", "ALLOWED_HOSTS", "DATA_DIR"):
        assert env.get(needed), needed
    assert env["DEBUG"] == "0"
    # systemd keeps what follows a value as part of it: no comment may share a line with one.
    for line in (DEPLOY / "dlsite.env.example").read_text().splitlines():
        assert line.startswith("#") or not line or re.fullmatch(r'[A-Z_]+=("[^"]*"|[^\s#"]*)', line), line


def test_gpu_workers_start_the_training_worker_of_supervisord_conf():
    """scripts/gpu-workers (`make worker`) starts each worker as `make run` starts its training worker,
    under another name."""
    script = (ROOT / "scripts" / "gpu-workers").read_text()
    args = shlex.split(re.search(r"^WORKER_ARGS=\((.*)\)$", script, re.M)[1])
    assert ["celery", *args] == without_worker_name(supervised_command("training")[3:])
