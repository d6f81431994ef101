import time

import pytest
from django.core.cache import cache
from django.db import connection
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from dlsite.views import HEALTHZ_CACHE_KEY
from tests.conftest import new_run
from training_app.tasks import train


def test_prediction_shows_each_image_with_its_class_and_every_probability(alice, shapes):
    from tests.images import image_bytes

    run = new_run(shapes)
    train(run.id)
    files = [SimpleUploadedFile("a.png", image_bytes("spot", 16), "image/png"),
             SimpleUploadedFile("notes.png", b"not an image", "image/png")]
    response = alice.post(reverse("predict:index"), {"run": run.pk, "images": files})
    assert response.status_code == 200
    good, bad = response.context["results"]
    assert good["label"] in {"horizontal", "spot", "vertical"}
    assert [row["name"] for row in good["probabilities"]][0] == good["label"]
    assert sum(row["p"] for row in good["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    assert good["preview"].startswith("data:image/png;base64,")
    assert "could not be used" in bad["error"]
    assert b"predicted-label" in response.content


@pytest.fixture
def fresh_health():
    """/healthz answers from the cache for a few seconds; each test here asks afresh."""
    cache.delete(HEALTHZ_CACHE_KEY)
    yield
    cache.delete(HEALTHZ_CACHE_KEY)


NO_JOBS = {"queued": 0, "running": 0, "silent": 0}
DETAILS = {"database": "ok", "broker": "ok", "storage": "ok", "workers": {"default": 0, "training": 0}, "hosts": [], "status": "degraded",
           "jobs": dict.fromkeys(["upload", "trainingrun", "modelexport", "classification", "suggestionjob",
                                   "weightsdownload", "treestrial", "labelreview"], NO_JOBS)}


def test_health_is_503_and_only_the_status_for_anonymous_callers(client, db, fresh_health):
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    assert response.json() == {"status": "degraded"}


def test_health_details_are_for_staff(client, user, fresh_health):
    client.force_login(user)
    assert client.get(reverse("healthz")).json() == {"status": "degraded"}
    user.is_staff = True
    user.save()
    response = client.get(reverse("healthz"))
    assert response.status_code == 503 and response.json() == DETAILS


def test_a_database_without_the_job_tables_is_degraded_and_never_a_server_error(client, user, fresh_health):
    """A site whose database was not migrated (`make run` migrates; a server started by hand may not):
    /healthz says degraded, and why to staff, instead of answering 500."""
    user.is_staff = True
    user.save()
    client.force_login(user)
    with connection.cursor() as cursor:  # undone with the test's transaction
        cursor.execute("DROP TABLE pretrained_app_weightsdownload")
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
    assert "weightsdownload" in response.json()["jobs"]["error"]


def test_health_details_are_for_callers_with_the_token(client, db, settings, fresh_health):
    settings.HEALTHZ_TOKEN = "monitor-token-1"
    assert client.get(reverse("healthz"), headers={"X-Healthz-Token": "monitor-token-1"}).json() == DETAILS
    assert client.get(reverse("healthz") + "?token=monitor-token-1").json() == DETAILS
    assert client.get(reverse("healthz"), headers={"X-Healthz-Token": "guess"}).json() == {"status": "degraded"}
    settings.HEALTHZ_TOKEN = ""  # no token set: an empty one opens nothing
    assert client.get(reverse("healthz") + "?token=").json() == {"status": "degraded"}


def test_health_is_shared_for_a_few_seconds_instead_of_asking_the_workers_each_time(client, db, fresh_health):
    started = time.monotonic()
    client.get(reverse("healthz"))
    first = time.monotonic() - started
    assert first >= 1.0  # the workers were asked: that takes a whole second
    started = time.monotonic()
    for _ in range(10):
        assert client.get(reverse("healthz")).status_code == 503
    assert time.monotonic() - started < 1.0


def test_the_broker_error_text_is_only_for_staff_and_without_its_password(client, user, fresh_health, monkeypatch):
    # Celery reads this variable before its settings: nothing listens on port 1.
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://:hunter2-broker@127.0.0.1:1/0")
    anonymous = client.get(reverse("healthz"))
    user.is_staff = True
    user.save()
    client.force_login(user)
    staff = client.get(reverse("healthz"))
    assert anonymous.status_code == 503 and anonymous.json() == {"status": "degraded"}
    broker = staff.json()["broker"]
    assert broker.startswith("error") and "hunter2-broker" not in broker
