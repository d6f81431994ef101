"""The whole journey through the web views, with real Celery worker processes on a real broker."""
import io
import json

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse

from datasets_app.models import Dataset, Upload
from tests.conftest import wait_for
from tests.images import image_bytes, labelled_zip
from training_app.models import TrainingRun

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_upload_train_evaluate_and_predict_through_the_workers(celery_workers, alice, user):
    with override_settings(HEALTHZ_TOKEN="journey"):  # the details are for staff and monitors with the token
        health = alice.get(reverse("healthz"), headers={"X-Healthz-Token": "journey"})
    assert health.status_code == 200, health.content
    assert health.json()["workers"] == {"default": 1, "training": 1}

    archive = labelled_zip(per_class=12, extra={"shapes/spot/broken.png": b"\x89PNG\r\n\x1a\nnot really"})
    response = alice.post(reverse("datasets:list"), {
        "name": "Shapes", "file": SimpleUploadedFile("shapes.zip", archive, "application/zip")})
    dataset = Dataset.objects.get(name="Shapes", owner=user)
    assert response.status_code == 302

    upload = wait_for(lambda: Upload.objects.filter(dataset=dataset, status__in=["done", "failed"]).first(),
                      timeout=60, what="ingestion")
    assert upload.status == "done", upload.error
    assert upload.accepted == 36
    assert list(upload.outcomes.values_list("file_name", "kind")) == [("shapes/spot/broken.png", "rejected")]
    assert dataset.split_counts() == {"train": 30, "val": 3, "test": 3}

    response = alice.post(reverse("training:new", args=[dataset.pk]), {
        "preset": "small_cnn", "image_size": 16, "epochs": 3, "batch_size": 8, "learning_rate": 0.01})
    run = TrainingRun.objects.get(dataset=dataset)
    assert response.status_code == 302

    wait_for(lambda: TrainingRun.objects.get(pk=run.pk).is_final, timeout=180, what="training")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error + celery_workers.log("training")
    assert run.attempts == 1
    assert list(run.epoch_metrics.values_list("epoch", flat=True)) == [1, 2, 3]
    assert run.class_names == ["horizontal", "spot", "vertical"]
    assert sum(map(sum, run.confusion)) == 3
    assert 0.0 <= run.test_accuracy <= 1.0

    status = alice.get(reverse("training:status", args=[run.pk])).json()
    assert status["status"] == "succeeded" and status["percent"] == 100.0

    files = [SimpleUploadedFile(f"{kind}.png", image_bytes(kind, 16, seed=99), "image/png")
             for kind in ("horizontal", "vertical")]
    page = alice.post(reverse("predict:index"), {"run": run.pk, "images": files})
    assert page.status_code == 200
    results = page.context["results"]
    assert [r["name"] for r in results] == ["horizontal.png", "vertical.png"]

    # The downloaded file, loaded in plain Keras, gives the same probabilities.
    import keras
    from PIL import Image

    download = alice.get(reverse("training:model", args=[run.pk]))
    path = celery_workers.logs["default"].parent / "downloaded.keras"
    path.write_bytes(b"".join(download.streaming_content))
    info = json.loads(b"".join(alice.get(reverse("training:model_info", args=[run.pk])).streaming_content))
    model = keras.models.load_model(path)
    pixels = np.asarray(Image.open(io.BytesIO(image_bytes("horizontal", 16, seed=99))).convert("L"))
    plain = model.predict(pixels[np.newaxis, :, :, np.newaxis], verbose=0)[0]
    served = {row["name"]: row["p"] for row in results[0]["probabilities"]}
    assert info["class_names"] == run.class_names
    np.testing.assert_allclose([served[name] for name in info["class_names"]], plain, atol=1e-5)


def test_a_large_upload_is_examined_by_a_pool_inside_the_worker(celery_workers, alice, user):
    """Enough files for the ingestion's process pool, started from inside a Celery pool process
    (a daemon, which the standard library would refuse) that holds a broker connection."""
    from datasets_app.sources import POOL_MIN_FILES

    per_class = POOL_MIN_FILES // 2 + 5
    archive = labelled_zip(per_class=per_class, classes=("horizontal", "vertical"), size=8)
    response = alice.post(reverse("datasets:list"), {
        "name": "Many", "file": SimpleUploadedFile("many.zip", archive, "application/zip")})
    assert response.status_code == 302
    dataset = Dataset.objects.get(name="Many", owner=user)
    upload = wait_for(lambda: Upload.objects.filter(dataset=dataset, status__in=["done", "failed"]).first(),
                      timeout=120, what="ingestion")
    assert upload.status == "done", upload.error + celery_workers.log("default")
    assert upload.accepted + upload.duplicates == 2 * per_class
    assert dataset.images.count() == upload.accepted
