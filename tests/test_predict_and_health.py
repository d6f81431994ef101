import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

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


def test_health_is_503_with_reasons_when_no_worker_is_listening(client, db):
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "broker": "ok", "workers": {"default": 0, "training": 0},
                               "status": "degraded"}
