"""The network as a layer spec: checks in plain words, presets, pretrained bases, and the check endpoint."""
import json

import keras
import numpy as np
import pytest
from django.urls import reverse

from datasets_app.models import Dataset
from mlcore.builder import (
    BASES,
    MAX_PARAMS,
    SpecError,
    build_model,
    unfreeze_top,
    validate,
)
from mlcore.options import make_optimizer
from mlcore.presets import make_model
from mlcore.presets import PRESET_SPECS, available_presets, preset_spec

TRANSFER = ["mobilenetv2", "efficientnetb0"]  # on files the operator adds (tests/conftest.py makes stand-ins)
BUNDLED = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]  # real weights that come with the site
FROM_SCRATCH = [key for key in PRESET_SPECS if key not in TRANSFER + BUNDLED]


def conv(filters=8, **settings):
    return {"type": "Conv2D", "filters": filters, **settings}


def spec(*layers, base=None):
    return {"layers": list(layers), "base": base}


def refusal(a_spec, input_shape=(28, 28, 1), num_classes=3):
    with pytest.raises(SpecError) as caught:
        validate(a_spec, input_shape, num_classes)
    return caught.value


# ---- the spec's settings


def test_it_refuses_a_layer_kind_it_does_not_know():
    error = refusal(spec({"type": "Flatten"}, {"type": "LSTM", "units": 3}))
    assert error.layer == 2
    assert "Layer 2 is of a kind this site does not know (LSTM)" in error.message
    assert "Dense" in error.message  # says which kinds there are


@pytest.mark.parametrize("layer, words", [
    ({"type": "Dense", "units": 0}, "Layer 2 (Dense): “Neurons” must be a whole number from 1 to 4096."),
    ({"type": "Dense", "units": "many"}, "Layer 2 (Dense): “Neurons” must be a whole number from 1 to 4096."),
    ({"type": "Dense", "units": True}, "Layer 2 (Dense): “Neurons” must be a whole number from 1 to 4096."),
    ({"type": "Dropout", "rate": 1.5}, "Layer 2 (Dropout): “Share switched off” must be a number from 0.0 to 0.9."),
    ({"type": "Dense", "activation": "magic"}, "Layer 2 (Dense): “Activation” must be one of relu, linear"),
    ({"type": "Dense", "size": 3}, "Layer 2 (Dense) has a setting it does not know: size."),
])
def test_it_refuses_a_bad_setting_naming_the_layer(layer, words):
    error = refusal(spec({"type": "Flatten"}, layer))
    assert error.layer == 2 and words in error.message


def test_it_fills_missing_settings_with_defaults_and_takes_whole_floats():
    summary = validate(spec({"type": "Flatten"}, {"type": "Dense", "units": 16.0}), (8, 8, 1), 2)
    assert summary["spec"]["layers"][1] == {"type": "Dense", "units": 16, "activation": "relu"}


def test_it_refuses_what_is_not_a_spec():
    assert "missing" in refusal("Conv2D please").message
    assert "at most 40 layers" in refusal(spec(*[{"type": "Dropout"}] * 41)).message
    for base in ({"name": "resnet"}, {"name": ["mobilenetv2"]}, "mobilenetv2"):
        assert ("must be one of: EfficientNet-Lite0, EfficientNet-Lite1, EfficientNet-Lite2, MobileNetV2, "
                "EfficientNetB0") in refusal(spec(base=base)).message


# ---- how the layers fit together


def test_a_dense_layer_after_a_convolution_needs_flatten_first():
    error = refusal(spec(conv(), {"type": "Dense", "units": 8}))
    assert error.layer == 2
    assert "a Dense layer after a Conv2D layer needs Flatten or GlobalAveragePooling2D first" in error.message


def test_a_dense_layer_after_pooling_or_on_the_image_itself_is_explained():
    after_pool = refusal(spec(conv(), {"type": "MaxPooling2D"}, {"type": "Dropout"}, {"type": "Dense"}))
    assert after_pool.layer == 4
    assert "a Dense layer after a MaxPooling2D layer needs Flatten or GlobalAveragePooling2D first" in after_pool.message
    on_image = refusal(spec({"type": "Dense"}))
    assert "needs a flat list of numbers, but here it gets the image itself (28 × 28 × 1)" in on_image.message


def test_dropout_on_feature_maps_is_fine():
    # Keras' examples put Dropout after convolution blocks too; only Dense needs the flat list.
    assert validate(spec(conv(), {"type": "Dropout", "rate": 0.25}, {"type": "Flatten"}), (8, 8, 1), 2)["total_params"]


@pytest.mark.parametrize("flat_by", ["Flatten", "GlobalAveragePooling2D"])
@pytest.mark.parametrize("kind", ["Conv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D"])
def test_image_layers_after_the_image_became_a_flat_list_are_refused(kind, flat_by):
    error = refusal(spec(conv(), {"type": flat_by}, {"type": "Dense"}, {"type": kind}))
    assert error.layer == 4
    assert (f"Layer 4: a {kind} layer needs image-shaped input, but {flat_by} (layer 2) has already turned the "
            f"image into a flat list of numbers. Move the {kind} layer before the {flat_by} layer.") == error.message


def test_a_network_that_ends_in_feature_maps_is_told_to_flatten():
    error = refusal(spec(conv(), {"type": "MaxPooling2D"}))
    assert error.layer is None
    assert "ends with image-shaped feature maps (14 × 14 × 8)" in error.message
    assert "add Flatten or GlobalAveragePooling2D at the end" in error.message


def test_pooling_that_shrinks_the_image_below_one_pixel_is_explained():
    pool = {"type": "MaxPooling2D", "pool_size": 2}
    error = refusal(spec(pool, pool, pool, pool, {"type": "Flatten"}), input_shape=(8, 8, 1))
    assert error.layer == 4
    assert "Layer 4 (MaxPooling2D) would shrink the 1 × 1 feature maps below 1 × 1 pixel" in error.message
    assert "choose a larger image size" in error.message


def test_a_convolution_without_padding_that_no_longer_fits_is_explained():
    error = refusal(spec(conv(kernel_size=5, padding="valid"), conv(kernel_size=5, padding="valid"), {"type": "Flatten"}),
                    input_shape=(8, 8, 1))
    assert error.layer == 2
    assert "Layer 2 (Conv2D) would shrink the 4 × 4 feature maps below 1 × 1 pixel" in error.message


def test_a_network_too_big_to_train_here_is_refused_before_keras_allocates_it():
    error = refusal(spec({"type": "Flatten"}, {"type": "Dense", "units": 4096}), input_shape=(256, 256, 3))
    assert error.layer == 2
    assert "805,310,464 parameters" in error.message and "Over 50 million is too big to train here" in error.message
    just_under = spec({"type": "Flatten"}, {"type": "Dense", "units": 4})  # 196,608 inputs
    assert validate(just_under, (256, 256, 3), 2)["total_params"] < MAX_PARAMS


@pytest.mark.parametrize("base", TRANSFER + BUNDLED)
def test_a_pretrained_base_needs_images_of_at_least_32_pixels(base):
    error = refusal(preset_spec(base), input_shape=(28, 28, 3))
    assert f"{BASES[base].label} needs images of at least 32 × 32 pixels" in error.message
    assert "Choose an image size of 32 or more." in error.message


def test_grayscale_images_are_given_to_a_pretrained_base_as_grey_colour_images():
    summary = validate(preset_spec("mobilenetv2"), (32, 32, 1), 3)
    rows = {row["name"]: row for row in summary["rows"]}
    assert rows["grey_to_rgb"]["output_shape"] == "32 × 32 × 3"


def test_fine_tuning_more_layers_than_the_base_has_is_refused():
    too_many = preset_spec("mobilenetv2")
    too_many["base"]["fine_tune_layers"] = 300
    assert "MobileNetV2 has 153 layers, so at most 153 can be fine-tuned." in refusal(too_many, (32, 32, 3)).message


# ---- presets and the summary


@pytest.mark.parametrize("key", FROM_SCRATCH)
def test_each_preset_validates_and_its_summary_matches_keras(key):
    summary = validate(preset_spec(key), (32, 32, 3), 3)
    model = build_model(preset_spec(key), (32, 32, 3), 3)
    assert summary["total_params"] == model.count_params() == sum(row["params"] for row in summary["rows"])
    assert summary["trainable_params"] == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert [row["type"] for row in summary["rows"]] == [type(layer).__name__ for layer in model.layers]
    assert summary["rows"][0]["output_shape"] == "32 × 32 × 3"
    assert summary["rows"][-1] == {"layer": None, "name": "probabilities", "type": "Dense",
                                   "label": "Output: one probability per class (added for you)", "output_shape": "3",
                                   "params": summary["rows"][-1]["params"],
                                   "trainable_params": summary["rows"][-1]["params"]}
    numbered = [row["layer"] for row in summary["rows"] if row["layer"]]
    assert numbered == list(range(1, len(PRESET_SPECS[key]["spec"]["layers"]) + 1))


@pytest.mark.parametrize("key", TRANSFER + BUNDLED)
def test_each_transfer_preset_validates_and_its_summary_matches_keras(key, weights_dir):
    folder, _ = weights_dir
    summary = validate(preset_spec(key), (32, 32, 3), 3)
    model = build_model(preset_spec(key), (32, 32, 3), 3, weights_dir=folder)
    assert summary["total_params"] == model.count_params()
    assert summary["trainable_params"] == (1280 + 1) * 3  # only the new output layer learns at first
    base_row = next(row for row in summary["rows"] if row["name"] == key)
    assert base_row["label"] == f"Pretrained {BASES[key].label}" and base_row["trainable_params"] == 0


@pytest.mark.parametrize("key", FROM_SCRATCH)
def test_each_preset_trains_an_epoch_with_its_optimizer_and_takes_raw_pixels(key):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    y = np.arange(16) % 2
    preset = PRESET_SPECS[key]
    model = build_model(preset_spec(key), (32, 32, 3), 2)
    model.compile(optimizer=make_optimizer(preset["optimizer"], preset["learning_rate"]),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    probabilities = np.asarray(model(x[:3], training=False))
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_the_wide_preset_recommends_rmsprop():
    assert (PRESET_SPECS["wide"]["optimizer"], PRESET_SPECS["wide"]["spec"]["layers"][1]["units"]) == ("rmsprop", 512)
    assert isinstance(make_optimizer("rmsprop", 0.001), keras.optimizers.RMSprop)


# ---- pretrained bases from the operator's files


@pytest.mark.parametrize("key", TRANSFER)
def test_a_pretrained_base_is_loaded_from_its_file_and_frozen(key, weights_dir):
    folder, saved = weights_dir
    model = build_model(preset_spec(key), (32, 32, 3), 3, weights_dir=folder)
    base = model.get_layer(key)
    loaded = [np.asarray(w) for w in base.weights]
    assert len(loaded) == len(saved[key])
    for weight, got, want in zip(base.weights, loaded, saved[key]):
        if key == "efficientnetb0" and weight.path.endswith("/variance") and "normalization" in weight.path:
            # As Keras' weights="imagenet" does it: the variance is scaled by the ImageNet deviation.
            np.testing.assert_allclose(got, want * np.array([0.229, 0.224, 0.225]), rtol=1e-6)
        else:
            np.testing.assert_array_equal(got, want)
    assert not base.trainable and base.trainable_weights == []


def test_mobilenet_gets_pixels_scaled_to_minus_one_to_one_and_efficientnet_gets_0_to_255(weights_dir):
    folder, _ = weights_dir
    pixels = np.array([[[[0, 127.5, 255]]]], dtype="float32")
    mobilenet = build_model(preset_spec("mobilenetv2"), (32, 32, 3), 3, weights_dir=folder)
    np.testing.assert_allclose(mobilenet.get_layer("rescale")(pixels),
                               keras.applications.mobilenet_v2.preprocess_input(pixels.copy()), atol=1e-6)
    efficientnet = build_model(preset_spec("efficientnetb0"), (32, 32, 3), 3, weights_dir=folder)
    assert efficientnet.layers[1].name == "efficientnetb0"  # nothing before it: it rescales 0-255 itself


def test_unfreeze_top_unfreezes_n_layers_but_not_batch_normalization(weights_dir):
    folder, _ = weights_dir
    model = build_model(preset_spec("mobilenetv2"), (32, 32, 3), 3, weights_dir=folder)
    base = model.get_layer("mobilenetv2")
    frozen = unfreeze_top(model, 0)
    trainable = unfreeze_top(model, 10)
    top, rest = base.layers[-10:], base.layers[:-10]
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in top)
    for layer in top:
        assert layer.trainable == (not isinstance(layer, keras.layers.BatchNormalization))
    assert not any(layer.trainable for layer in rest)
    assert trainable == frozen + sum(int(np.prod(w.shape)) for layer in top for w in layer.trainable_weights)
    assert unfreeze_top(model, 0) == frozen and not base.trainable
    with pytest.raises(ValueError):
        unfreeze_top(make_model("dense", (8, 8, 1), 2), 3)


def test_the_summary_counts_what_fine_tuning_trains():
    tuned = preset_spec("mobilenetv2")
    tuned["base"]["fine_tune_layers"] = 10
    summary = validate(tuned, (32, 32, 3), 3)
    assert summary["fine_tune_trainable_params"] > summary["trainable_params"] == (1280 + 1) * 3


def test_transfer_learning_in_two_phases_then_save_and_load(weights_dir, tmp_path):
    folder, _ = weights_dir
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (16, 32, 32, 1), dtype=np.uint8)
    y = np.arange(16) % 2
    model = build_model(preset_spec("mobilenetv2"), (32, 32, 1), 2, weights_dir=folder)
    base = model.get_layer("mobilenetv2")
    before = [np.asarray(w) for w in base.weights]
    model.compile(optimizer=make_optimizer("adam", 0.001), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, base.weights))  # frozen, BN included

    unfreeze_top(model, 5)
    model.compile(optimizer=make_optimizer("adam", PRESET_SPECS["mobilenetv2"]["fine_tune_learning_rate"]),
                  loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    changed = {w.path for a, w in zip(before, base.weights) if not np.array_equal(a, np.asarray(w))}
    assert changed and all("bn" not in path.lower() for path in changed)  # BatchNormalization statistics untouched

    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True, compile=False)
    np.testing.assert_allclose(loaded(x[:2], training=False), model(x[:2], training=False), atol=1e-5)


def test_build_model_without_the_weights_file_explains_what_is_missing(tmp_path):
    with pytest.raises(SpecError) as caught:
        build_model(preset_spec("efficientnetb0"), (32, 32, 3), 3, weights_dir=tmp_path)
    assert "efficientnetb0_notop.h5" in caught.value.message and "README" in caught.value.message


# ---- which presets this site offers


@pytest.mark.parametrize("folder", ["", "empty"])
def test_transfer_presets_are_unavailable_without_their_weights_files(folder, tmp_path):
    presets = {p["key"]: p for p in available_presets(tmp_path if folder else "")}
    assert all(presets[key]["available"] and presets[key]["reason"] == "" for key in FROM_SCRATCH + BUNDLED)
    mobilenet = presets["mobilenetv2"]
    assert not mobilenet["available"]
    assert "MobileNetV2 needs its pretrained weights file mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" \
        in mobilenet["reason"]
    # Said to the person choosing a network: who can add the file and how, in plain words, no setting names.
    assert "Someone who runs this site can download it on the “Pretrained networks” page" in mobilenet["reason"]
    assert "manage.py fetch_pretrained" in mobilenet["reason"] and "README" in mobilenet["reason"]
    assert "PRETRAINED_WEIGHTS_DIR" not in mobilenet["reason"]
    assert not presets["efficientnetb0"]["available"] and "efficientnetb0_notop.h5" in presets["efficientnetb0"]["reason"]


def test_transfer_presets_are_available_with_their_weights_files(weights_dir):
    presets = available_presets(weights_dir[0])
    assert all(p["available"] for p in presets)
    assert [p["key"] for p in presets] == ["dense", "wide", "small_cnn", "deeper_cnn", "efficientnet_lite0",
                                           "efficientnet_lite1", "efficientnet_lite2", "mobilenetv2", "efficientnetb0"]
    assert [p.get("native_size") for p in presets if p["key"] in BUNDLED] == [224, 240, 260]


# ---- the networks the training form builds by name are the ones they always were


def test_make_model_builds_the_same_small_cnn_as_before():
    model = make_model("small_cnn", (28, 28, 1), 10)
    assert [type(layer).__name__ for layer in model.layers] == [
        "InputLayer", "Rescaling", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dropout", "Dense"]
    conv1, conv2, out = 3 * 3 * 32 + 32, 3 * 3 * 32 * 64 + 64, 7 * 7 * 64 * 10 + 10
    assert model.count_params() == conv1 + conv2 + out
    assert (model.name, model.layers[0].name, model.layers[1].name, model.layers[-1].name) == (
        "small_cnn", "pixels", "rescale", "probabilities")
    assert model.layers[1].scale == pytest.approx(1 / 255)
    assert model.get_layer("dropout_6").rate == 0.5


def test_make_model_builds_the_same_dense_network_as_before():
    model = make_model("dense", (28, 28, 1), 10)
    assert [type(layer).__name__ for layer in model.layers] == [
        "InputLayer", "Rescaling", "Flatten", "Dense", "Dense", "Dense"]
    assert model.count_params() == 28 * 28 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10


def test_make_model_refuses_presets_that_need_weights_or_do_not_exist():
    for preset in ("mobilenetv2", "resnet"):
        with pytest.raises(ValueError):
            make_model(preset, (32, 32, 3), 2)


# ---- the check endpoint and the page


def check(client, body):
    return client.post(reverse("training:builder_check"), json.dumps(body), content_type="application/json")


def test_the_check_answers_with_the_summary_for_the_datasets_classes(alice, shapes):
    response = check(alice, {"spec": preset_spec("small_cnn"), "image_size": 28, "channels": 1, "dataset": shapes.pk})
    assert response.status_code == 200
    answer = response.json()
    assert answer["ok"] is True
    assert answer["total_params"] == answer["trainable_params"] == make_model("small_cnn", (28, 28, 1), 3).count_params()
    assert answer["rows"][-1]["output_shape"] == "3"  # three classes in the dataset
    assert answer["rows"][2] == {"layer": 1, "name": "conv2d_1", "type": "Conv2D", "label": "Convolution",
                                 "output_shape": "28 × 28 × 32", "params": 320, "trainable_params": 320}


def test_the_check_answers_a_spec_error_in_plain_words(alice):
    response = check(alice, {"spec": spec(conv(), {"type": "Dense"}), "image_size": 28, "channels": 1})
    assert response.status_code == 200
    assert response.json() == {"ok": False, "layer": 2, "message": (
        "Layer 2: a Dense layer after a Conv2D layer needs Flatten or GlobalAveragePooling2D first: a Conv2D layer "
        "gives image-shaped feature maps (28 × 28 × 8), and Dense needs a flat list of numbers.")}


@pytest.mark.parametrize("body, words", [
    ({"image_size": 4}, "The image size must be a whole number from 8 to 320 pixels."),
    ({"image_size": "big"}, "The image size must be a whole number from 8 to 320 pixels."),
    ({"channels": 2}, "Images must be grayscale (1 channel) or colour (3 channels)."),
    ({"channels": 1.0}, "Images must be grayscale (1 channel) or colour (3 channels)."),
    ({"num_classes": 1}, "The number of classes must be a whole number from 2 to 1000."),
    ({"spec": None}, "The network description is missing"),
])
def test_the_check_answers_bad_settings_in_plain_words(alice, body, words):
    response = check(alice, {"spec": preset_spec("dense"), "image_size": 16, "channels": 1} | body)
    assert response.status_code == 200
    assert response.json()["ok"] is False and words in response.json()["message"]


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", "\xff"])
def test_the_check_refuses_a_body_that_is_not_a_json_object(alice, raw):
    response = alice.post(reverse("training:builder_check"), raw.encode("latin-1"), content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"ok": False, "message": "The request must be a JSON object."}


def test_the_check_of_another_persons_dataset_is_not_found(alice, other_user):
    theirs = Dataset.objects.create(owner=other_user, name="Theirs")
    assert check(alice, {"spec": preset_spec("dense"), "dataset": theirs.pk}).status_code == 404
    assert check(alice, {"spec": preset_spec("dense"), "dataset": "1; drop"}).status_code == 400


def test_the_check_needs_a_login(client, db):
    response = check(client, {"spec": preset_spec("dense")})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_check_is_a_post(alice):
    assert alice.get(reverse("training:builder_check")).status_code == 405


def test_the_builder_page_offers_the_presets_and_explains_the_unavailable(alice, shapes, settings):
    settings.PRETRAINED_WEIGHTS_DIR = ""
    response = alice.get(reverse("training:builder", args=[shapes.pk]))
    assert response.status_code == 200
    options = response.context["options"]
    assert options["channels"] == shapes.channels() and options["dataset"] == shapes.pk
    assert {p["key"]: p["available"] for p in options["presets"]} == {
        "dense": True, "wide": True, "small_cnn": True, "deeper_cnn": True, "efficientnet_lite0": True,
        "efficientnet_lite1": True, "efficientnet_lite2": True, "mobilenetv2": False, "efficientnetb0": False}
    assert 'id="builder-options"' in response.content.decode() and "js/builder.js" in response.content.decode()


def test_the_builder_page_offers_transfer_learning_when_the_weights_are_there(alice, shapes, settings, weights_dir):
    settings.PRETRAINED_WEIGHTS_DIR = str(weights_dir[0])
    options = alice.get(reverse("training:builder", args=[shapes.pk])).context["options"]
    assert all(p["available"] for p in options["presets"])


def test_the_builder_page_of_another_persons_dataset_is_not_found(alice, other_user):
    theirs = Dataset.objects.create(owner=other_user, name="Theirs")
    assert alice.get(reverse("training:builder", args=[theirs.pk])).status_code == 404


@pytest.mark.parametrize("depth", [40, 1_000, 100_000])
def test_the_check_refuses_json_nested_too_deeply_with_a_message(alice, depth):
    """About a thousand `[` made Python's parser raise RecursionError: a 500."""
    nested = "[" * depth + "]" * depth
    for raw in (nested, '{"spec": ' + nested + "}"):
        response = alice.post(reverse("training:builder_check"), raw, content_type="application/json")
        assert response.status_code == 400
        assert "nested more than 32 levels deep" in response.json()["message"]
