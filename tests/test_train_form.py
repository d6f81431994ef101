"""The "Train a model" page: the suggested settings and why, the network it stores, the plain errors,
"train again with changes", and the previews of the pictures as the network will see them."""
import base64
import io
import json

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from PIL import Image

from datasets_app.models import Dataset, Upload
from mlcore.builder import normalise_spec
from mlcore.preview import augment, png_bytes, png_data_url
from mlcore.presets import preset_spec
from tests.conftest import ingest_shapes, new_run
from tests.images import make_zip
from training_app.models import TrainingRun

pytestmark = pytest.mark.django_db

SMALL_DENSE = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 16, "activation": "relu"}], "base": None}


def new_page(client, dataset, **query):
    return client.get(reverse("training:new", args=[dataset.pk]), query)


def plain_form_data(response, **changes):
    """What the page's form sends with JavaScript off: every setting as shown (the network's JSON is
    only in the page for a network built by hand), with `changes`."""
    form = response.context["form"]
    data = {}
    for field in form:
        value = field.value()
        if field.name == "model_spec" or value is None or value is False:
            continue
        data[field.name] = "on" if value is True else value
    return data | changes


def data_url_image(url):
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(url[len(prefix):])))


# ---- the page


def test_the_page_shows_the_suggested_settings_and_why(alice, shapes):
    response = new_page(alice, shapes)
    page = response.content.decode()
    assert response.status_code == 200
    # Suggested for 30 small grayscale images (mlcore/defaults.py), each with its reason.
    for reason in response.context["reasons"]:
        assert reason in page
    assert "Why these settings" in page and "Only 30 images" in page
    assert 'name="image_size" value="16"' in page
    assert 'name="epochs" value="40"' in page
    assert 'id="id_channels_0" checked' in page  # grayscale
    assert 'name="augment_rotation" value="10"' in page
    assert '<option value="small_cnn" selected>' in page  # the plain form's choice of network
    # The builder opens the suggested preset by name, at the suggested size and colour.
    assert 'data-preset="small_cnn"' in page and 'data-size-input="id_image_size"' in page
    options = response.context["form"].builder_start()["options"]
    assert (options["imageSize"], options["channels"], options["dataset"]) == (16, 1, shapes.pk)
    assert "spec" not in options
    for section in ("The network", "Pictures going in", "Random changes while training (augmentation)",
                    "How it learns"):
        assert section in page
    assert 'id="start-training"' in page
    assert 'name="model_spec"' not in page  # the builder adds it; without JavaScript the preset says it all
    assert reverse("training:preview_input", args=[shapes.pk]) in page


def test_the_plain_form_without_javascript_trains_the_chosen_preset(alice, shapes):
    data = plain_form_data(new_page(alice, shapes), preset="dense")
    response = alice.post(reverse("training:new", args=[shapes.pk]), data)
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("training:detail", args=[run.pk])
    assert run.preset == "dense" and run.model_spec == normalise_spec(preset_spec("dense"))
    assert (run.image_size, run.channels, run.epochs, run.early_stopping_patience) == (16, 1, 40, 8)
    assert run.augmentation["rotation"] == 10 and run.augmentation["flip"] == "none"


def test_a_network_changed_in_the_builder_is_stored_as_built_by_hand(alice, shapes):
    data = plain_form_data(new_page(alice, shapes), preset="small_cnn", model_spec=json.dumps(SMALL_DENSE),
                           augment_flip="horizontal", augment_contrast="20", label_smoothing="0.1")
    response = alice.post(reverse("training:new", args=[shapes.pk]), data)
    run = TrainingRun.objects.get()
    assert response.status_code == 302
    assert run.preset == "custom" and run.model_spec == normalise_spec(SMALL_DENSE)
    assert run.augmentation == {"flip": "horizontal", "rotation": 10, "zoom": 10, "translation": 10,
                                "contrast": 20, "brightness": 0}
    assert run.label_smoothing == 0.1


def test_a_network_that_cannot_be_built_is_explained_and_starts_nothing(alice, shapes):
    ends_in_maps = {"layers": [{"type": "Conv2D", "filters": 8}], "base": None}
    response = alice.post(reverse("training:new", args=[shapes.pk]), {
        "preset": "custom", "model_spec": json.dumps(ends_in_maps)})
    page = response.content.decode()
    assert response.status_code == 200
    assert "The network ends with image-shaped feature maps" in page
    assert 'id="network-errors"' in page and "Some settings need a change" in page
    assert not TrainingRun.objects.exists()
    # The builder opens the person's network as it was, to be mended there.
    assert response.context["form"].builder_start()["options"]["spec"] == ends_in_maps


def test_a_transfer_network_without_its_weights_is_not_available(alice, shapes, settings):
    settings.PRETRAINED_WEIGHTS_DIR = ""
    response = alice.post(reverse("training:new", args=[shapes.pk]), {
        "preset": "mobilenetv2", "image_size": 32, "channels": 3})
    page = response.content.decode()
    assert response.status_code == 200
    assert "Not available on this site yet: MobileNetV2 needs its pretrained weights file" in page
    assert not TrainingRun.objects.exists()


def test_a_setting_out_of_range_opens_the_more_settings_and_says_why(alice, shapes):
    data = plain_form_data(new_page(alice, shapes), seed="-1")
    page = alice.post(reverse("training:new", args=[shapes.pk]), data).content.decode()
    assert '<details class="tf-more" id="more-settings" open>' in page
    assert "Ensure this value is greater than or equal to 0." in page
    assert not TrainingRun.objects.exists()


def test_train_again_with_changes_opens_the_earlier_runs_settings(alice, shapes):
    run = new_run(shapes, preset="dense", model_spec=preset_spec("dense"), image_size=20, epochs=7, batch_size=4,
                  learning_rate=0.01, resize_mode="pad", augmentation={"rotation": 30, "flip": "vertical"},
                  optimizer="sgd", seed=5)
    response = new_page(alice, shapes, **{"from": run.pk})
    page = response.content.decode()
    assert f"Settings copied from <a href=\"{reverse('training:detail', args=[run.pk])}\">run {run.pk}</a>; " \
           "change what you like." in page
    for name, value in [("image_size", "20"), ("epochs", "7"), ("batch_size", "4"), ("learning_rate", "0.01"),
                        ("seed", "5"), ("augment_rotation", "30")]:
        assert f'name="{name}" value="{value}"' in page
    assert 'value="pad" required id="id_resize_mode_2" checked' in page
    assert '<option value="vertical" selected>' in page and 'value="sgd" required id="id_optimizer_1" checked' in page
    assert 'data-preset="dense"' in page
    assert response.context["form"].builder_start()["options"]["imageSize"] == 20


def test_train_again_opens_a_network_built_by_hand_as_it_was(alice, shapes):
    run = new_run(shapes)
    TrainingRun.objects.filter(pk=run.pk).update(preset="custom", model_spec=SMALL_DENSE)
    response = new_page(alice, shapes, **{"from": run.pk})
    page = response.content.decode()
    start = response.context["form"].builder_start()
    assert start["preset"] == "" and start["options"]["spec"] == SMALL_DENSE
    assert '<option value="custom" selected>' in page
    # Without JavaScript the hand-built network is sent from a hidden box inside <noscript>.
    assert '<noscript><input type="hidden" name="model_spec"' in page


def test_another_persons_run_is_not_copied(alice, shapes, other_user):
    theirs = new_run(ingest_shapes(other_user), epochs=9)
    response = new_page(alice, shapes, **{"from": theirs.pk})
    assert "Settings copied" not in response.content.decode()
    assert response.context["form"].initial["epochs"] == 40


# ---- the previews


def ingest(owner, files):
    """A dataset from a zip of class folders, through the real ingestion code."""
    from datasets_app.ingestion import ingest_upload

    dataset = Dataset.objects.create(owner=owner, name="Wide pictures")
    upload = Upload(dataset=dataset, original_name="wide.zip")
    upload.file.save("wide.zip", ContentFile(make_zip(files)), save=True)
    ingest_upload(Upload.objects.claim(upload.id))
    return dataset


def png(array):
    buffer = io.BytesIO()
    Image.fromarray(array, "L").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def wide(user):
    """Pictures 40 wide and 20 tall: the left quarter black, the rest white (a little different each)."""
    files = {}
    for c, name in enumerate(("left", "right")):
        for i in range(6):
            pixels = np.full((20, 40), 250 - c * 10 - i, np.uint8)
            pixels[:, :10] = 0
            files[f"wide/{name}/{i}.png"] = png(pixels)
    return ingest(user, files)


def preview(client, dataset, kind="input", **query):
    return client.get(reverse(f"training:preview_{kind}", args=[dataset.pk]), query)


@pytest.mark.parametrize("resize, black_columns, black_rows", [
    ("squash", 5, 0),  # stretched: the black quarter stays a quarter
    ("crop", 0, 0),  # the middle square: the black quarter is cut off
    ("pad", 5, 5),  # the whole picture, with black bands above and below
])
def test_the_input_preview_shows_the_pictures_as_the_network_sees_them(alice, wide, resize, black_columns,
                                                                       black_rows):
    response = preview(alice, wide, size=20, channels=1, resize=resize)
    body = response.json()
    assert response.status_code == 200 and body["ok"] and body["message"] == ""
    assert (body["size"], body["channels"], body["resize"]) == (20, 1, resize)
    assert len(body["images"]) == 6
    assert [image["label"] for image in body["images"]] == ["left", "right"] * 3  # every class in turn
    for image in body["images"]:
        picture = data_url_image(image["src"])
        assert (picture.size, picture.mode) == ((20, 20), "L")
        pixels = np.asarray(picture)
        dark = pixels < 128
        assert dark[black_rows:20 - black_rows, :].all(axis=0).sum() == black_columns
        assert dark.all(axis=1).sum() == 2 * black_rows


def test_the_input_preview_in_colour_and_at_other_sizes(alice, shapes):
    for size in (8, 37, 320):
        body = preview(alice, shapes, size=size, channels=3, resize="crop").json()
        pictures = [data_url_image(image["src"]) for image in body["images"]]
        assert len(pictures) == 6 and {(p.size, p.mode) for p in pictures} == {((size, size), "RGB")}
    # The same pictures every time, so that a change of setting is all that changes.
    assert preview(alice, shapes, size=16).json() == preview(alice, shapes, size=16).json()


def test_the_augmentation_preview_shows_random_changes_of_two_pictures(alice, shapes):
    off = preview(alice, shapes, "augmentation", size=16, channels=1).json()
    assert off["ok"] and not off["on"] and len(off["rows"]) == 2
    for row in off["rows"]:
        assert len(row["variants"]) == 4 and set(row["variants"]) == {row["original"]}

    query = {"size": 24, "channels": 3, "resize": "pad", "rotation": 90, "zoom": 20, "flip": "horizontal"}
    body = preview(alice, shapes, "augmentation", **query).json()
    assert body["on"] and body["augmentation"]["rotation"] == 90
    for row in body["rows"]:
        pictures = [data_url_image(src) for src in [row["original"], *row["variants"]]]
        assert {(p.size, p.mode) for p in pictures} == {((24, 24), "RGB")}
        assert len(set(row["variants"]) - {row["original"]}) >= 3  # changed, and differently each time
    assert preview(alice, shapes, "augmentation", **query).json() == body  # the same for the same settings
    assert preview(alice, shapes, "augmentation", variant=1, **query).json()["rows"] != body["rows"]


@pytest.mark.parametrize("kind, query, words", [
    ("input", {"size": "4"}, "The image size must be a whole number from 8 to 320."),
    ("input", {"size": "400"}, "The image size must be a whole number from 8 to 320."),
    ("input", {"size": "big"}, "The image size must be a whole number from 8 to 320."),
    ("input", {}, "The image size must be a whole number from 8 to 320."),
    ("input", {"size": "16", "channels": "2"}, "The colour must be 1 (grayscale) or 3 (colour)."),
    ("input", {"size": "16", "resize": "stretch"}, "must be one of squash, crop, pad"),
    ("augmentation", {"size": "16", "rotation": "-5"},
     "“Rotate up to (degrees)” must be a whole number from 0 to 180."),
    ("augmentation", {"size": "16", "zoom": "51"}, "“Zoom up to (%)” must be a whole number from 0 to 50."),
    ("augmentation", {"size": "16", "flip": "sideways"}, "“Flip” must be one of none, horizontal"),
    ("augmentation", {"size": "16", "variant": "x"}, "The variant must be a whole number"),
])
def test_a_bad_preview_setting_is_a_400_in_plain_words(alice, shapes, kind, query, words):
    response = preview(alice, shapes, kind, **query)
    assert response.status_code == 400
    assert response.json()["ok"] is False and words in response.json()["message"]


@pytest.mark.parametrize("kind", ["input", "augmentation"])
def test_previews_of_someone_elses_dataset_are_not_found(alice, other_user, kind):
    theirs = ingest_shapes(other_user)
    assert preview(alice, theirs, kind, size=16).status_code == 404


def test_previews_ask_to_log_in(client, shapes):
    assert preview(client, shapes, size=16).status_code == 302


def test_a_dataset_without_training_images_says_so(alice, user):
    empty = Dataset.objects.create(owner=user, name="Empty")
    for kind, key in (("input", "images"), ("augmentation", "rows")):
        body = preview(alice, empty, kind, size=16, rotation=10).json()
        assert body["ok"] and body[key] == [] and "no training images yet" in body["message"]


# ---- mlcore.preview, without Django


def test_augment_keeps_the_shape_and_leaves_pictures_alone_when_all_is_off():
    batch = np.random.default_rng(0).integers(0, 256, (3, 10, 10, 1), dtype=np.uint8)
    same = augment(batch, {}, variants=2)
    assert same.shape == (3, 2, 10, 10, 1) and same.dtype == np.uint8
    assert all(np.array_equal(same[i, v], batch[i]) for i in range(3) for v in range(2))
    changed = augment(batch, {"brightness": 50, "contrast": 50}, variants=2, seed=3)
    assert changed.shape == (3, 2, 10, 10, 1) and not np.array_equal(changed[:, 0], batch)


def test_png_round_trip_in_grey_and_colour():
    for shape, mode in (((5, 7, 1), "L"), ((5, 7, 3), "RGB")):
        array = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
        picture = Image.open(io.BytesIO(png_bytes(array)))
        assert picture.mode == mode and np.array_equal(np.asarray(picture).reshape(shape), array)
        assert data_url_image(png_data_url(array)).size == (7, 5)


@pytest.mark.parametrize("depth", [40, 1_000])
def test_a_network_description_nested_too_deeply_is_refused_in_plain_words(alice, shapes, depth):
    """About a thousand `[` in `model_spec` made the form's json.loads raise RecursionError: a 500."""
    response = alice.post(reverse("training:new", args=[shapes.pk]), plain_form_data(
        new_page(alice, shapes), preset="custom", model_spec='{"layers": ' + "[" * depth + "]" * depth + "}"))
    assert response.status_code == 200
    assert "The network description is nested more than 32 levels deep" in response.content.decode()
    assert not TrainingRun.objects.exists()
