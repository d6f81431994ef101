"""The layer builder's check works shapes and parameters out without Keras (mlcore.builder.summarise),
and agrees with Keras (mlcore.builder.validate builds the model) on every preset, on networks built by
hand and on the plain reasons a network cannot be built."""
import json

import pytest
from django.urls import reverse

from mlcore import builder
from mlcore.base_facts import FACTS
from mlcore.builder import BASES, SpecError, measure_base, summarise, validate
from mlcore.presets import PRESET_SPECS, preset_spec
from tests.test_train_form import new_page, plain_form_data
from training_app.models import TrainingRun

FROM_SCRATCH = [key for key, preset in PRESET_SPECS.items() if preset["spec"]["base"] is None]
TRANSFER = [key for key, preset in PRESET_SPECS.items() if preset["spec"]["base"] is not None]
AUGMENTATION = {"flip": "horizontal", "rotation": 10, "zoom": 5, "translation": 5, "contrast": 5, "brightness": 5}


def conv(filters=8, **settings):
    return {"type": "Conv2D", "filters": filters, **settings}


def outcome(check, spec, input_shape, num_classes=3, augmentation=None):
    """The summary, or ("refused", message, layer)."""
    try:
        return check(spec, input_shape, num_classes, augmentation=augmentation)
    except SpecError as error:
        return ("refused", error.message, error.layer)


def assert_agrees(spec, input_shape, num_classes=3, augmentation=None):
    keras_says = outcome(validate, spec, input_shape, num_classes, augmentation)
    assert outcome(summarise, spec, input_shape, num_classes, augmentation) == keras_says
    return keras_says


@pytest.mark.parametrize("key", FROM_SCRATCH)
@pytest.mark.parametrize("input_shape", [(8, 8, 1), (16, 16, 1), (33, 33, 3), (57, 57, 1), (128, 128, 3)])
def test_every_preset_from_scratch_agrees_with_keras(key, input_shape):
    assert_agrees(preset_spec(key), input_shape)
    assert_agrees(preset_spec(key), input_shape, num_classes=7, augmentation=AUGMENTATION)


@pytest.mark.parametrize("key", TRANSFER)
@pytest.mark.parametrize("input_shape", [(28, 28, 3), (32, 32, 3), (33, 33, 1), (97, 97, 3)])
def test_every_transfer_preset_agrees_with_keras(key, input_shape):
    summary = assert_agrees(preset_spec(key), input_shape)
    if input_shape[0] >= 32:
        assert summary["rows"][-4]["name"] == key  # the base was there, with its shape and parameters


@pytest.mark.parametrize("key", TRANSFER)
def test_fine_tuning_counts_agree_with_keras(key):
    most = FACTS[key].layers - 1
    for layers in (1, 10, most, most + 1):
        tuned = preset_spec(key)
        tuned["base"]["fine_tune_layers"] = layers
        assert_agrees(tuned, (32, 32, 3), augmentation={"flip": "horizontal"})


@pytest.mark.parametrize("name", list(BASES))
def test_the_facts_of_each_pretrained_base_are_keras_own(name):
    assert measure_base(name) == FACTS[name]


CUSTOM = [
    [conv(4, kernel_size=3, strides=2, padding="valid"), conv(6, kernel_size=5, strides=3, padding="same"),
     {"type": "AveragePooling2D", "pool_size": 3, "padding": "same"}, {"type": "Flatten"},
     {"type": "Dense", "units": 10, "activation": "tanh"}, {"type": "BatchNormalization"}, {"type": "Dropout"}],
    [conv(16, kernel_size=7, padding="valid"), {"type": "BatchNormalization"}, {"type": "Activation"},
     {"type": "MaxPooling2D", "pool_size": 3}, {"type": "GlobalAveragePooling2D"}, {"type": "Dense", "units": 5}],
    [{"type": "Dropout", "rate": 0.1}, {"type": "Flatten"}, {"type": "Dense", "units": 4096},
     {"type": "Dense", "units": 3}],
    # refused: a window that no longer fits, a Dense on maps, image layers after the flat list, maps at the end
    [conv(kernel_size=5, padding="valid"), conv(kernel_size=5, padding="valid"), {"type": "Flatten"}],
    [{"type": "MaxPooling2D", "pool_size": 8}, {"type": "MaxPooling2D", "pool_size": 2}, {"type": "Flatten"}],
    [conv(), {"type": "MaxPooling2D"}, {"type": "Dropout"}, {"type": "Dense"}],
    [{"type": "Dense"}],
    [conv(), {"type": "GlobalAveragePooling2D"}, {"type": "Dense"}, {"type": "AveragePooling2D"}],
    [conv(), {"type": "Flatten"}, {"type": "Dense"}, conv()],
    [conv(), {"type": "MaxPooling2D"}],
    [{"type": "Flatten"}, {"type": "Dense", "units": 4096}, {"type": "Dense", "units": 4096}],
    [{"type": "Dense", "units": 0}],
]


@pytest.mark.parametrize("layers", CUSTOM, ids=range(len(CUSTOM)))
@pytest.mark.parametrize("input_shape", [(8, 8, 1), (9, 9, 3), (31, 31, 1), (256, 256, 3)])
def test_networks_built_by_hand_agree_with_keras_and_are_refused_in_the_same_words(layers, input_shape):
    assert_agrees({"layers": layers, "base": None}, input_shape)


def test_what_is_not_a_network_is_refused_in_the_same_words():
    for spec in ("Conv2D please", {"layers": [{"type": "LSTM"}]}, {"layers": [], "base": {"name": "resnet"}}):
        assert_agrees(spec, (16, 16, 1))
    assert_agrees(preset_spec("dense"), (16, 16, 2))
    assert_agrees(preset_spec("dense"), (16, 16, 1), augmentation={"flip": "sideways"})


# ---- the web process checks networks without building them


@pytest.fixture
def no_keras_models(monkeypatch):
    """Building any network in this test fails it: the checks must work without Keras models."""
    def building(*args, **kwargs):
        raise AssertionError("a Keras model was built in the web process")

    monkeypatch.setattr(builder, "_assemble", building)


def test_the_builder_check_builds_no_keras_model(alice, no_keras_models):
    large = {"layers": [conv(256), conv(256), {"type": "Flatten"}, {"type": "Dense", "units": 128}], "base": None}
    for spec in (large, preset_spec("efficientnetb0"), {"layers": [conv()], "base": None}):
        response = alice.post(reverse("training:builder_check"),
                              json.dumps({"spec": spec, "image_size": 64, "channels": 3}),
                              content_type="application/json")
        assert response.status_code == 200
    answer = response.json()
    assert answer["ok"] is False and "ends with image-shaped feature maps (64 × 64 × 8)" in answer["message"]


@pytest.mark.django_db
def test_the_training_form_builds_no_keras_model(alice, shapes, no_keras_models):
    spec = {"layers": [conv(16), {"type": "GlobalAveragePooling2D"}], "base": None}
    data = plain_form_data(new_page(alice, shapes), preset="custom", model_spec=json.dumps(spec))
    response = alice.post(reverse("training:new", args=[shapes.pk]), data)
    assert response.status_code == 302
    assert TrainingRun.objects.get().model_spec["layers"][0]["filters"] == 16
