"""A run's model in other formats (mlcore/formats.py): each written, loaded again in a fresh process by
its own runtime and compared with the original; made by a real worker from the run page; and the
"serve it yourself" bundle started as its README says and sent a picture."""
import io
import json
import socket
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import requests
from django.urls import reverse

from mlcore import formats
from mlcore.builder import build_model, build_without_weights
from mlcore.images import decode_image
from mlcore.serving import ModelInfo, Predictor
from tests.conftest import wait_for
from tests.images import image_bytes
from training_app.models import ModelExport

SPEC = {"layers": [{"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
                   {"type": "MaxPooling2D", "pool_size": 2}, {"type": "Flatten"}], "base": None}
SHAPE = (12, 12, 1)
RANDOM_CHANGES = {"flip": "horizontal", "rotation": 20, "contrast": 20}


@pytest.fixture(scope="module")
def small_model():
    """A small grey network with random changes (which act only in training), its description and pictures."""
    model = build_model(SPEC, SHAPE, 3, augmentation=RANDOM_CHANGES, seed=1)
    pixels = np.random.default_rng(0).integers(0, 256, (24, *SHAPE), dtype=np.uint8)
    original = np.asarray(model(pixels.astype(np.float32), training=False))
    return model, ModelInfo(["cats", "dogs", "owls"], SHAPE[:2], 1, "pad"), pixels, original


@pytest.mark.parametrize("kind", list(formats.FORMATS))
def test_each_format_loads_in_a_fresh_process_and_answers_as_the_original(kind, small_model, tmp_path):
    model, info, pixels, original = small_model
    exported = formats.without_augmentation(model, lambda: build_without_weights(SPEC, SHAPE, 3))
    archive = formats.write(kind, exported, info, tmp_path / kind, representative=pixels[:12])

    with zipfile.ZipFile(archive) as contents:
        about = json.loads(contents.read("about.json"))
        readme = contents.read("README.md").decode()
    assert about["class_names"] == ["cats", "dogs", "owls"] and about["image_size"] == [12, 12]
    assert about["channels"] == 1 and about["resize"] == "pad" and about["format"] == kind
    assert "cats, dogs, owls" in readme or kind == "flask"

    answers = formats.check_in_fresh_process(kind, tmp_path / kind, pixels)
    assert answers.shape == original.shape
    if kind == "tflite_int8":  # 8 bits a probability: steps of 1/256
        assert np.abs(answers - original).max() < 0.05
        assert about["quantization"]["output"][0] == pytest.approx(1 / 256)
    else:
        assert np.abs(answers - original).max() < 1e-4


def test_random_changes_are_left_out_of_exports_as_tflite_cannot_take_them(small_model, tmp_path):
    model, info, pixels, _ = small_model
    with pytest.raises(formats.ExportFailed, match="TensorFlow Lite could not be made from this model"):
        formats.write("tflite", model, info, tmp_path / "with-random-changes", representative=pixels)
    stripped = formats.without_augmentation(model, lambda: build_without_weights(SPEC, SHAPE, 3))
    assert "augmentation" not in [layer.name for layer in stripped.layers]
    assert "augmentation" in [layer.name for layer in model.layers]  # the original is left as it was


def test_a_format_that_does_not_load_says_so(small_model, tmp_path):
    model, info, pixels, _ = small_model
    formats.write("onnx", model, info, tmp_path / "onnx", representative=pixels)
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(formats.ExportFailed, match="ONNX was made but onnxruntime could not load it"):
        formats.check_in_fresh_process("onnx", tmp_path / "onnx", pixels)


# ---- From the run page, by a real worker


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def picture(width, height):
    """A PNG that is not square, so that the bundle has to resize it the run's way."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(image_bytes("vertical", 40))).resize((width, height)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_makes_checks_and_offers_each_export_and_the_bundle_serves(celery_workers, shapes_model, client,
                                                                             tmp_path):
    run = shapes_model
    client.force_login(run.owner)
    for kind in ("flask", "tflite_int8"):
        answer = client.post(reverse("training:export_make", args=[run.pk, kind]), HTTP_ACCEPT="application/json")
        assert answer.status_code == 200
        assert {row["kind"]: row["busy"] for row in answer.json()["exports"]}[kind]
    def both_ended():
        ended = list(ModelExport.objects.filter(run=run, status__in=["ready", "failed"]))
        return ended if len(ended) == 2 else None

    exports = wait_for(both_ended, timeout=300, interval=1, what="both exports to be made and checked")
    by_kind = {export.kind: export for export in exports}
    assert all(export.status == "ready" for export in exports), [export.error for export in exports]
    assert by_kind["flask"].max_difference < 1e-4 and by_kind["flask"].checked_pictures > 0
    assert by_kind["tflite_int8"].accuracy is not None and by_kind["tflite_int8"].original_accuracy is not None

    page = client.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert "Checked with its own Flask server on" in page and "the same answers as the original" in page
    assert "Checked with the TensorFlow Lite interpreter: right on" in page

    download = client.get(reverse("training:export_download", args=[run.pk, "flask"]))
    assert download.status_code == 200 and download["Content-Disposition"].endswith(f'run-{run.id}-flask.zip"')
    bundle = tmp_path / "bundle"
    with zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))) as contents:
        contents.extractall(bundle)
    assert {"app.py", "model_input.py", "model.onnx", "about.json", "README.md", "requirements.txt"} <= {
        path.name for path in bundle.iterdir()}

    port = free_port()
    server = subprocess.Popen([sys.executable, "app.py", str(port)], cwd=bundle, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        about = wait_for(lambda: _get_json(url), timeout=60, interval=0.25, what="the bundle's server")
        assert about["class_names"] == run.class_names
        wide = picture(30, 12)
        answer = requests.post(f"{url}/classify", files={"images": ("wide.png", wide, "image/png")}, timeout=30)
        assert answer.status_code == 200
        result = answer.json()["results"][0]
        site = Predictor(run.model_path, ModelInfo(run.class_names, (run.image_size,) * 2, run.channels,
                                                   run.resize_mode))
        expected = site.predict_image(decode_image(wide).image)
        served = np.array([result["probabilities"][name] for name in run.class_names])
        assert np.abs(served - expected).max() < 1e-4  # resized exactly as the site does
        assert result["class"] == run.class_names[int(np.argmax(expected))] and result["name"] == "wide.png"

        refused = requests.post(f"{url}/classify", files={"images": ("notes.png", b"not a picture")}, timeout=30)
        assert refused.status_code == 400 and "not a picture this server can read" in refused.json()["message"]
        assert requests.post(f"{url}/classify", timeout=30).json()["message"].startswith("Send one or more")
    finally:
        server.terminate()
        server.wait(30)


def _get_json(url):
    try:
        return requests.get(url, timeout=2).json()
    except requests.ConnectionError:
        return None


@pytest.mark.django_db
def test_exports_are_offered_only_for_a_run_with_a_model_and_known_formats(client, shapes, user):
    from tests.conftest import new_run

    run = new_run(shapes)  # queued: no model yet
    client.force_login(user)
    assert client.post(reverse("training:export_make", args=[run.pk, "onnx"])).status_code == 404
    run.status, run.model_file, run.class_names = "succeeded", "models/gone/model.keras", ["a", "b"]
    run.save()
    assert client.post(reverse("training:export_make", args=[run.pk, "exe"])).status_code == 404
    assert client.get(reverse("training:export_download", args=[run.pk, "onnx"])).status_code == 404  # not made


@pytest.mark.django_db
def test_asking_again_while_it_is_being_made_sends_no_second_worker(shapes, settings):
    from tests.conftest import new_run

    run = new_run(shapes, status="succeeded", model_file="models/x/model.keras", class_names=["a", "b"])
    first, send = ModelExport.request(run, "onnx")
    assert send
    again, send_again = ModelExport.request(run, "onnx")
    assert again.id == first.id and not send_again
    ModelExport.objects.claim(first.id).fail("The converter failed")  # as its worker does
    retried, send_retry = ModelExport.request(run, "onnx")
    assert send_retry and retried.status == "queued" and retried.error == ""


@pytest.mark.django_db
def test_a_made_export_whose_file_went_is_made_again_not_a_500(client, shapes, user, settings):
    from tests.conftest import new_run

    run = new_run(shapes, status="succeeded", model_file="models/x/model.keras", class_names=["a", "b"])
    ModelExport.objects.create(run=run, kind="onnx", status="ready", file="models/x/exports/gone.zip", size_bytes=1,
                               checked_pictures=1, max_difference=0.0)
    client.force_login(user)
    answer = client.get(reverse("training:export_download", args=[run.pk, "onnx"]))
    assert answer.status_code == 302 and answer["Location"].endswith("#exports")
    assert ModelExport.objects.get(run=run, kind="onnx").status == "failed"


@pytest.mark.parametrize("kind", ["keras", "tflite", "onnx"])
def test_a_fine_tuned_pretrained_model_exports_and_answers_as_the_site(kind, tmp_path):
    """The 15-minute plan's model (mlcore.defaults.PHOTO_PLANS): EfficientNet-Lite0's last block and head
    fine-tuned on activations read once (training.PartialTrunk), then exported from a shell as the site does."""
    from mlcore.presets import preset_spec
    from mlcore.training import TrainingConfig, train_model

    spec = preset_spec("efficientnet_lite0")
    spec["base"]["fine_tune_layers"] = 11
    rng = np.random.default_rng(0)
    labels = np.arange(16) % 2
    pixels = rng.integers(0, 128, (16, 32, 32, 3)).astype(np.uint8)
    pixels[labels == 1, :, :16] += 100  # learnable, and not the same seen in a mirror
    # A top that barely learns and a fine-tuning that does: the exported model is the fine-tuned one.
    config = TrainingConfig(spec=spec, image_size=(32, 32), channels=3, num_classes=2, epochs=1, batch_size=8,
                            learning_rate=0.00001, fine_tune_epochs=4, fine_tune_learning_rate=0.003,
                            augmentation={"flip": "horizontal"}, label_smoothing=0.1)  # as the plan trains it
    outcome = train_model(config, pixels, labels, pixels, labels)
    assert outcome.phases[1]["phase"] == "fine_tune" and outcome.phases[1]["kept"]
    original = np.asarray(outcome.model(pixels.astype(np.float32), training=False))
    exported = formats.without_augmentation(outcome.model, lambda: build_without_weights(spec, (32, 32, 3), 2))
    formats.write(kind, exported, ModelInfo(["a", "b"], (32, 32), 3, "squash"), tmp_path / kind,
                  representative=pixels[:4])
    answers = formats.check_in_fresh_process(kind, tmp_path / kind, pixels)
    assert np.abs(answers - original).max() < 1e-4


@pytest.fixture(scope="module")
def fine_tuned_mirror_model():
    """The 15-minute plan's kind of model (EfficientNet-Lite0's last block fine-tuned, random flips in
    training) made to answer from each picture and its mirror image together, as a run does when that did
    better on its validation pictures (training.PartialTrunk.mirror_check)."""
    from mlcore.presets import preset_spec
    from mlcore.serving import with_mirror_average
    from mlcore.training import TrainingConfig, train_model

    spec = preset_spec("efficientnet_lite0")
    spec["base"]["fine_tune_layers"] = 11
    rng = np.random.default_rng(1)
    labels = np.arange(16) % 2
    pixels = rng.integers(0, 128, (16, 32, 32, 3)).astype(np.uint8)
    pixels[labels == 1, :, :16] += 100
    config = TrainingConfig(spec=spec, image_size=(32, 32), channels=3, num_classes=2, epochs=1, batch_size=8,
                            learning_rate=0.001, fine_tune_epochs=2, fine_tune_learning_rate=0.003,
                            augmentation={"flip": "horizontal"})
    trained = train_model(config, pixels, labels, pixels, labels).model
    averaging = with_mirror_average(trained, lambda: build_without_weights(spec, (32, 32, 3), 2))
    return trained, averaging, spec, pixels


def test_a_mirror_averaging_model_averages_the_scores_of_a_picture_and_its_mirror_image(fine_tuned_mirror_model):
    import keras

    from mlcore.familiarity import features_and_probabilities
    from mlcore.serving import averages_mirrors, has_pretrained_base

    trained, averaging, _, pixels = fine_tuned_mirror_model
    features = keras.Model(trained.input, trained.get_layer("probabilities").input)
    alone, mirrored = (np.asarray(features(p.astype(np.float32), training=False)) for p in (pixels, pixels[:, :, ::-1]))
    kernel, bias = trained.get_layer("probabilities").get_weights()
    expected = keras.ops.convert_to_numpy(keras.ops.softmax((alone + mirrored) / 2 @ kernel + bias))
    answers = np.asarray(averaging(pixels.astype(np.float32), training=False))
    assert np.abs(answers - expected).max() < 1e-5
    # A picture and its mirror image now get the same answer, which the trained model alone did not give.
    flipped = np.asarray(averaging(pixels[:, :, ::-1].astype(np.float32), training=False))
    assert np.abs(flipped - answers).max() < 1e-5
    assert np.abs(np.asarray(trained(pixels[:, :, ::-1].astype(np.float32), training=False))
                  - np.asarray(trained(pixels.astype(np.float32), training=False))).max() > 1e-3
    assert averages_mirrors(averaging) and not averages_mirrors(trained) and has_pretrained_base(averaging)
    # "Not sure" reads what the output layer reads: the averaged features.
    both_features, probabilities = features_and_probabilities(averaging)(pixels.astype(np.float32))
    assert np.abs(np.asarray(both_features) - (alone + mirrored) / 2).max() < 1e-4
    assert np.abs(np.asarray(probabilities) - answers).max() < 1e-5


@pytest.mark.parametrize("kind", list(formats.FORMATS))
def test_a_fine_tuned_mirror_averaging_model_exports_and_answers_as_the_site(kind, fine_tuned_mirror_model, tmp_path):
    _, averaging, spec, pixels = fine_tuned_mirror_model
    saved = tmp_path / "saved"
    from mlcore.serving import Predictor, save_model

    info = ModelInfo(["a", "b"], (32, 32), 3, "squash")
    save_model(averaging, info, saved)
    site = Predictor(saved / "model.keras", info)  # loaded as the classify page and the API load it (safe mode)
    original = np.asarray(site.model(pixels.astype(np.float32), training=False))
    exported = formats.without_augmentation(site.model, lambda: build_without_weights(spec, (32, 32, 3), 2))
    formats.write(kind, exported, info, tmp_path / kind, representative=pixels[:4])
    answers = formats.check_in_fresh_process(kind, tmp_path / kind, pixels)
    assert np.abs(answers - original).max() < (0.05 if kind == "tflite_int8" else 1e-4)
