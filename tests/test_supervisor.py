"""`make run` under supervisord: a worker killed with SIGKILL (as the kernel does when memory runs
out) is started again while the web server keeps answering, and the queue page shows it."""
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.urls import reverse

from tests.conftest import ROOT, wait_for
from training_app.queue_views import _supervisor

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def supervised_site(tmp_path):
    """`make run`'s supervisord with the repository's supervisord.conf, on a fresh data folder
    (its own SQLite file and filesystem broker) and a free port."""
    data_dir = tmp_path / "data"
    (data_dir / "logs").mkdir(parents=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "SUPERVISOR_SOCKET")}
    env |= {"DATA_DIR": str(data_dir), "HOST": "127.0.0.1", "PORT": str(port), "DEBUG": "0",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
    log = (tmp_path / "supervisord.out").open("ab")
    process = subprocess.Popen([str(Path(sys.executable).parent / "supervisord"), "-n", "-c", "supervisord.conf"],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    site = {"url": f"http://127.0.0.1:{port}", "socket": data_dir / "supervisor.sock", "log": tmp_path / "supervisord.out"}
    try:
        wait_for(lambda: site["socket"].exists() or process.poll() is not None, timeout=30, what="supervisord")
        assert process.poll() is None, site["log"].read_text()
        wait_for(lambda: all(state(site, name) == "RUNNING" for name in ("web", "default", "training", "beat")),
                 timeout=90, interval=0.5, what="every program to run")
        wait_for(lambda: web_answers(site), timeout=60, interval=0.5, what="the web server to answer")
        yield site
    finally:
        process.send_signal(signal.SIGTERM)  # what Ctrl-C does: supervisord stops every program
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def info(site, name):
    return _supervisor(site["socket"]).supervisor.getProcessInfo(name)


def state(site, name):
    return info(site, name)["statename"]


def web_answers(site):
    """The status of /healthz (503 "degraded" is an answer too), or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"{site['url']}/healthz", timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


@pytest.mark.worker
def test_a_killed_training_worker_comes_back_while_the_site_keeps_answering(supervised_site, alice, settings):
    site = supervised_site
    web_pid, old_pid = info(site, "web")["pid"], info(site, "training")["pid"]
    assert web_answers(site) in (200, 503)
    # The workers yield the cores to the web server (`nice`, which execs celery: supervisord's pid is celery's).
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, web_pid) == ours
    assert os.getpriority(os.PRIO_PROCESS, old_pid) == min(19, ours + 10)
    assert "celery" in Path(f"/proc/{old_pid}/cmdline").read_text()

    os.killpg(old_pid, signal.SIGKILL)  # the worker and its pool process, as the kernel's OOM killer would
    answers = []
    back = wait_for(lambda: answers.append(web_answers(site)) or
                    (info(site, "training")["statename"] == "RUNNING" and info(site, "training")["pid"] != old_pid),
                    timeout=60, interval=0.5, what="the training worker to be started again")
    assert back
    assert set(answers) <= {200, 503}, answers  # the web server answered all along
    assert info(site, "web")["pid"] == web_pid and state(site, "default") == "RUNNING" and state(site, "beat") == "RUNNING"

    # The queue page shows the programs, and that the training worker stopped and came back.
    settings.SUPERVISOR_SOCKET = site["socket"]
    # Page and pid are read together until they agree: on a slow machine the new worker can still
    # be settling (supervisord's startsecs) between the two reads.
    def page_shows_the_running_worker():
        page = alice.get(reverse("training:queue")).content.decode()
        shown = f'data-name="training" data-state="RUNNING" data-pid="{info(site, "training")["pid"]}"' in page
        return page if shown else None

    page = wait_for(page_shows_the_running_worker, timeout=30, interval=1, what="the queue page to show the worker")
    assert "Programs on this server" in page
    training_row = page.split('data-name="training"')[1].split("</tr>")[0]
    assert "last stopped at" in training_row and "started again" in training_row


def test_without_supervisord_the_queue_page_shows_no_programs(alice, settings, tmp_path):
    settings.SUPERVISOR_SOCKET = tmp_path / "no.sock"
    assert "Programs on this server" not in alice.get(reverse("training:queue")).content.decode()


def test_a_supervisord_that_does_not_answer_shows_nothing_and_breaks_nothing(alice, settings, tmp_path):
    left_over = tmp_path / "supervisor.sock"  # the socket file of a supervisord that is gone
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(left_over))
    settings.SUPERVISOR_SOCKET = left_over
    response = alice.get(reverse("training:queue"))
    assert response.status_code == 200 and "Programs on this server" not in response.content.decode()


def test_the_tests_start_programs_with_supervisords_command_lines():
    from tests.conftest import supervised_command, with_venv_program

    web = supervised_command("web", {"HOST": "127.0.0.1", "PORT": "8123"})
    assert "127.0.0.1:8123" in web and web[0] == "gunicorn"  # not `nice`d: the pages come first
    assert supervised_command("training")[:9] == ["nice", "-n", "10", "celery", "-A", "dlsite", "worker", "-Q", "training"]
    assert "training@%h" in supervised_command("training")  # supervisord's "%%h" is celery's "%h"
    for name in ("default", "beat"):
        assert supervised_command(name)[:4] == ["nice", "-n", "10", "celery"]
    # `nice` execs celery, which the tests then signal as supervisord does: by the pid they started.
    assert with_venv_program(supervised_command("beat"), "/venv/bin")[:4] == ["nice", "-n", "10", "/venv/bin/celery"]
    assert with_venv_program(web, "/venv/bin")[0] == "/venv/bin/gunicorn"
