"""Training choices in mlcore: schedules, optimizers, class weights, augmentation, resize modes, label
smoothing, early stopping and cancel going back to the best epoch, and the fine-tuning phase with resume."""
import math
import time

import keras
import numpy as np
import pytest
from PIL import Image

from mlcore import devices
from mlcore.builder import SpecError, build_model
from mlcore.defaults import DatasetFacts, suggest
from mlcore.images import image_to_array
from mlcore.options import augmentation_layers, class_weights, make_optimizer, make_schedule, normalise_augmentation
from mlcore.presets import PRESET_SPECS, preset_spec
from mlcore.training import (
    TrainingConfig,
    finished_epochs_in_backup,
    make_dataset,
    train_model,
)


def tiny(n=24, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8), np.arange(n) % 2


def config(**settings):
    values = {"spec": preset_spec("dense"), "image_size": (8, 8), "channels": 1, "num_classes": 2, "epochs": 1,
              "batch_size": 8} | settings
    return TrainingConfig(**values)


# ---- settings as numbers


def test_class_weights_make_every_class_count_equally():
    weights = class_weights(np.array([0, 0, 0, 1]), 3)
    assert weights[0] == pytest.approx(4 / (2 * 3)) and weights[1] == pytest.approx(2.0)
    assert weights[2] == 1.0  # a class with no training images: any weight, it never occurs
    assert 3 * weights[0] == pytest.approx(1 * weights[1])  # both classes weigh the same in total


def test_schedules_start_at_the_step_size_and_fall_as_described():
    assert make_schedule("constant", 0.01, 100) == 0.01
    step = make_schedule("step", 0.01, 100)
    assert [float(step(i)) for i in (0, 49, 51, 76)] == pytest.approx([0.01, 0.01, 0.001, 0.0001])
    cosine = make_schedule("cosine", 0.01, 100)
    values = [float(cosine(i)) for i in range(0, 101, 10)]
    assert values[0] == pytest.approx(0.01) and values == sorted(values, reverse=True)
    assert values[-1] == pytest.approx(0.0001)  # alpha: never quite zero
    with pytest.raises(ValueError):
        make_schedule("sometimes", 0.01, 100)


def test_sgd_comes_with_momentum():
    assert make_optimizer("sgd", 0.01).momentum == pytest.approx(0.9)
    assert isinstance(make_optimizer("rmsprop", 0.01), keras.optimizers.RMSprop)


def test_label_smoothing_gives_the_dataset_one_hot_labels():
    x, y = tiny(4)
    pixels, labels = next(iter(make_dataset(x, y, 4, training=False, seed=1, num_classes=2)))
    assert labels.shape == (4, 2) and np.array_equal(np.argmax(labels, axis=1), y)


# ---- augmentation


def test_augmentation_settings_are_checked_in_plain_words():
    assert normalise_augmentation(None) == {"flip": "none", "rotation": 0, "zoom": 0, "translation": 0,
                                            "contrast": 0, "brightness": 0}
    with pytest.raises(SpecError, match="Rotate up to"):
        normalise_augmentation({"rotation": 400})
    with pytest.raises(SpecError, match="does not know"):
        normalise_augmentation({"shear": 10})
    assert augmentation_layers({}) == []
    names = [layer.name for layer in augmentation_layers({"flip": "horizontal", "rotation": 10, "zoom": 10,
                                                          "translation": 5, "contrast": 20, "brightness": 20})]
    assert names == ["random_flip", "random_rotation", "random_zoom", "random_translation", "random_contrast",
                     "random_brightness"]


def test_augmentation_changes_pictures_only_while_training():
    x, _ = tiny(6, 16)
    model = build_model(preset_spec("dense"), (16, 16, 1), 2,
                        augmentation={"flip": "horizontal_and_vertical", "rotation": 30, "brightness": 30}, seed=3)
    layer = model.get_layer("augmentation")
    pixels = x.astype("float32")
    assert np.array_equal(np.asarray(layer(pixels, training=False)), pixels)
    changed = np.asarray(layer(pixels, training=True))
    assert changed.shape == pixels.shape and not np.allclose(changed, pixels)
    assert changed.min() >= 0 and changed.max() <= 255  # still pixels: the model scales them after


def test_a_model_with_augmentation_saves_and_loads_safely(tmp_path):
    model = build_model(preset_spec("small_cnn"), (16, 16, 1), 2, augmentation={"rotation": 10, "zoom": 10})
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True, compile=False)
    x, _ = tiny(2, 16)
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-6)


# ---- resize modes


def test_resize_modes_squash_crop_and_pad_a_wide_picture():
    # 40 x 20: a white square on the left, a black one on the right, and a grey middle band.
    wide = np.zeros((20, 40), np.uint8)
    wide[:, :20] = 255
    wide[:, 15:25] = 128
    image = Image.fromarray(wide, "L")
    squash = image_to_array(image, (10, 10), 1, "squash")[..., 0]
    crop = image_to_array(image, (10, 10), 1, "crop")[..., 0]
    pad = image_to_array(image, (10, 10), 1, "pad")[..., 0]
    assert squash[:, 0].min() == 255 and squash[:, -1].max() == 0  # the whole width, squeezed
    assert crop[:, 0].min() > 100 and crop[:, -1].max() < 140  # only the middle 20 columns: the band's edges
    assert pad[0].max() == 0 and pad[-1].max() == 0 and pad[5, 0] == 255  # black bars above and below
    with pytest.raises(ValueError):
        image_to_array(image, (10, 10), 1, "stretch")


# ---- fitting


def test_every_choice_trains_together():
    x, y = tiny(32)
    seen = []
    outcome = train_model(
        config(epochs=2, optimizer="sgd", lr_schedule="cosine", class_weighting="auto", label_smoothing=0.1,
               augmentation={"flip": "horizontal", "rotation": 5}, early_stopping_patience=3, seed=7,
               learning_rate=0.05),
        x, y, x[:8], y[:8], on_epoch=lambda epoch, logs: seen.append((epoch, logs)))
    assert [epoch for epoch, _ in seen] == [1, 2]
    rates = [logs["learning_rate"] for _, logs in seen]
    assert rates[0] < 0.05 and rates[1] < rates[0]  # cosine: falling from the start
    assert all(math.isfinite(logs["val_loss"]) for _, logs in seen)
    assert outcome.model.predict(x[:2], verbose=0).shape == (2, 2)


def test_the_same_seed_gives_the_same_model():
    x, y = tiny(16)
    first = train_model(config(seed=5), x, y, x[:4], y[:4]).model
    second = train_model(config(seed=5), x, y, x[:4], y[:4]).model
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def learning_by_heart(seed):
    """Random labels a wide dense network can only learn by heart: validation loss soon rises while
    training loss falls. Returns training and validation arrays and the network."""
    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, 256, (64, 8, 8, 1), dtype=np.uint8), rng.integers(0, 2, 64)
    xv, yv = rng.integers(0, 256, (32, 8, 8, 1), dtype=np.uint8), rng.integers(0, 2, 32)
    return x, y, xv, yv, {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 256}], "base": None}


def assert_has_the_weights_of(model, epoch, logs_by_epoch, xv, yv):
    """The model's validation loss now is the one recorded after `epoch`: it has that epoch's weights."""
    loss = keras.losses.SparseCategoricalCrossentropy()(yv, model(xv, training=False))
    assert float(loss) == pytest.approx(logs_by_epoch[epoch]["val_loss"], rel=1e-3)


def test_early_stopping_ends_the_run_with_its_best_epoch():
    x, y, xv, yv, spec = learning_by_heart(seed=1)
    logs_by_epoch = {}
    outcome = train_model(config(spec=spec, epochs=40, early_stopping_patience=2, learning_rate=0.01), x, y, xv, yv,
                          on_epoch=lambda epoch, logs: logs_by_epoch.__setitem__(epoch, logs))
    assert outcome.stopped_early and len(logs_by_epoch) < 40
    best = min(logs_by_epoch, key=lambda epoch: logs_by_epoch[epoch]["val_loss"])
    assert outcome.best_epoch == best and best == max(logs_by_epoch) - 2
    assert_has_the_weights_of(outcome.model, best, logs_by_epoch, xv, yv)


def test_cancel_goes_back_to_the_best_epoch_so_far():
    x, y, xv, yv, spec = learning_by_heart(seed=2)
    logs_by_epoch = {}
    outcome = train_model(config(spec=spec, epochs=30, learning_rate=0.01), x, y, xv, yv,
                          on_epoch=lambda epoch, logs: logs_by_epoch.__setitem__(epoch, logs),
                          should_stop=lambda: len(logs_by_epoch) >= 6, progress_interval_s=0)
    assert outcome.stopped and not outcome.stopped_early and len(logs_by_epoch) == 7
    best = min(logs_by_epoch, key=lambda epoch: logs_by_epoch[epoch]["val_loss"])
    assert outcome.best_epoch == best
    assert_has_the_weights_of(outcome.model, best, logs_by_epoch, xv, yv)


# ---- transfer learning: both phases, and a crash while fine-tuning


@pytest.mark.parametrize("key", ["mobilenetv2", "efficientnetb0"])
def test_each_transfer_preset_trains_an_epoch_from_the_weights_folder(key, weights_dir):
    folder, _ = weights_dir
    x, y = tiny(8, 32)
    outcome = train_model(config(spec=preset_spec(key), image_size=(32, 32), weights_dir=str(folder)),
                          x, y, x[:4], y[:4])
    assert outcome.model.get_layer(key).trainable is False
    assert outcome.model.predict(x[:2], verbose=0).shape == (2, 2)


def test_fine_tuning_runs_after_the_first_phase_and_resumes_after_a_crash(weights_dir, tmp_path):
    folder, _ = weights_dir
    x, y = tiny(8, 32)
    spec = preset_spec("mobilenetv2")
    spec["base"]["fine_tune_layers"] = 3
    settings = config(spec=spec, image_size=(32, 32), weights_dir=str(folder), epochs=2, fine_tune_epochs=2,
                      fine_tune_learning_rate=PRESET_SPECS["mobilenetv2"]["fine_tune_learning_rate"])
    assert settings.total_epochs == 4
    backup = str(tmp_path / "backup")

    class Crash(Exception):
        pass

    seen = []

    def crash_in_epoch_4(epoch, logs):
        seen.append((epoch, logs["learning_rate"]))
        if epoch == 4:
            raise Crash

    with pytest.raises(Crash):
        train_model(settings, x, y, x[:4], y[:4], on_epoch=crash_in_epoch_4, backup_dir=backup)
    assert [epoch for epoch, _ in seen] == [1, 2, 3, 4]
    assert seen[2][1] == pytest.approx(0.00001)  # fine-tuning at its own, lower step size
    assert finished_epochs_in_backup(backup, 2) == 3

    seen = []
    outcome = train_model(settings, x, y, x[:4], y[:4], on_epoch=lambda epoch, logs: seen.append(epoch),
                          backup_dir=backup)
    assert seen == [4]  # neither the first phase nor epoch 3 again
    base = outcome.model.get_layer("mobilenetv2")
    assert base.trainable and any(layer.trainable for layer in base.layers[-3:])


# ---- defaults and devices


def test_defaults_suit_the_dataset():
    mnist = suggest(DatasetFacts(images=70_000, classes=10, typical_side=28, channels=1, largest_class=7877,
                                 smallest_class=6313))
    assert (mnist["preset"], mnist["image_size"], mnist["channels"], mnist["batch_size"]) == ("small_cnn", 28, 1, 128)
    assert mnist["lr_schedule"] == "cosine" and mnist["augmentation"] == {} and mnist["class_weighting"] == "none"
    few_photos_facts = DatasetFacts(images=400, classes=5, typical_side=240, channels=3, largest_class=220,
                                    smallest_class=40, training_images=330)
    few_photos = suggest(few_photos_facts)
    assert (few_photos["preset"], few_photos["image_size"]) == ("efficientnet_lite0", 224)
    assert few_photos["augmentation"] == {"flip": "horizontal"}  # the one change its frozen features can read ahead
    assert few_photos["class_weighting"] == "auto" and few_photos["early_stopping_patience"] > 0
    assert (few_photos["batch_size"], few_photos["epochs"]) == (64, 40)
    assert all(isinstance(reason, str) and reason for reason in few_photos["reasons"])
    scratch = suggest(few_photos_facts, pretrained=False)
    assert scratch["preset"] == "deeper_cnn" and scratch["augmentation"]["flip"] == "horizontal"
    digits = suggest(DatasetFacts(images=1797, classes=10, typical_side=8, channels=1, largest_class=182,
                                  smallest_class=174))
    assert (digits["preset"], digits["image_size"], digits["augmentation"]) == ("small_cnn", 8, {})


def test_a_handful_of_photos_a_class_gets_enough_steps_and_no_early_stopping():
    # 10 flower photos a class in train/, 587 in test/: the training photos decide, not all of them.
    handful = suggest(DatasetFacts(images=637, classes=5, typical_side=240, channels=3, largest_class=143,
                                   smallest_class=110, training_images=45))
    assert handful["preset"] == "efficientnet_lite0"
    assert (handful["batch_size"], handful["epochs"], handful["learning_rate"]) == (16, 20, 0.003)  # 12 views an epoch
    assert handful["early_stopping_patience"] == 0
    assert any(reason.startswith("Only 45 training photos") for reason in handful["reasons"])
    # Without the training split's count (an older caller), all the images stand for it.
    assert suggest(DatasetFacts(images=150, classes=5, typical_side=240, channels=3, largest_class=30,
                                smallest_class=30))["batch_size"] == 16
    # Without the pretrained network nothing changes for a few photos.
    scratch = suggest(DatasetFacts(images=60, classes=3, typical_side=240, channels=3, largest_class=20,
                                   smallest_class=20, training_images=48), pretrained=False)
    assert scratch["preset"] == "deeper_cnn" and scratch["batch_size"] == 32


@pytest.mark.django_db
def test_the_suggested_settings_read_the_training_split_of_a_dataset(shapes):
    facts = shapes.training_facts()
    assert 0 < facts.training_images < facts.images  # some went to validation and test


def test_defaults_prefer_the_offline_pretrained_network_for_photos_even_with_keras_files_there(weights_dir):
    folder, _ = weights_dir
    photos = suggest(DatasetFacts(images=500, classes=3, typical_side=200, channels=3, largest_class=200,
                                  smallest_class=150), str(folder))
    assert photos["preset"] == "efficientnet_lite0" and photos["learning_rate"] == 0.001


def test_on_a_machine_without_a_gpu_training_uses_the_cpu_in_float32():
    found = devices.configure()
    assert found == devices.Devices([], False) and found.describe() == "CPU"
    assert keras.mixed_precision.global_policy().name == "float32"
    assert devices.Devices(["NVIDIA H100", "NVIDIA H100"], True).describe() == "2 × NVIDIA H100 (mixed precision)"


def test_a_model_trained_in_mixed_precision_is_saved_in_float32():
    from mlcore.serving import float32_twin

    x, _ = tiny(4, 16)
    spec = preset_spec("small_cnn")
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = build_model(spec, (16, 16, 1), 2, augmentation={"rotation": 5})
        assert mixed.get_layer("conv2d_1").compute_dtype == "float16"
        twin = float32_twin(mixed, lambda: build_model(spec, (16, 16, 1), 2, augmentation={"rotation": 5}))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(layer.compute_dtype == "float32" for layer in twin.layers)
    np.testing.assert_allclose(twin(x, training=False), mixed(x, training=False), atol=2e-2)
    assert float32_twin(twin, lambda: None) is twin  # nothing to do in float32


# ---- the plan a time budget buys for photos (mlcore.defaults.PHOTO_PLANS), and its fine-tuning phase

PHOTO_FACTS = DatasetFacts(images=2900, classes=5, typical_side=240, channels=3, largest_class=700, smallest_class=550)


def test_a_bigger_budget_buys_fine_tuning_and_no_limit_keeps_the_frozen_top():
    from mlcore.defaults import LAST_BLOCK_AND_HEAD, PHOTO_PLANS, PhotoPlan, fine_tune_reason, photo_plan

    for budget in (0, 120, 300):
        quick = suggest(PHOTO_FACTS, budget_s=budget)
        assert quick["preset"] == "efficientnet_lite0" and quick["fine_tune_epochs"] == 0
        assert quick["model_spec"]["base"]["fine_tune_layers"] == 0 and quick["time_budget_s"] == 0
        assert quick["label_smoothing"] == 0  # the frozen top did worse with it (0.923 against 0.930)
    for budget in (900, 3600):
        slow = suggest(PHOTO_FACTS, budget_s=budget)
        assert slow["model_spec"]["base"] == {"name": slow["preset"], "fine_tune_layers": LAST_BLOCK_AND_HEAD}
        assert slow["fine_tune_epochs"] > 0 and slow["fine_tune_learning_rate"] < slow["learning_rate"]
        assert slow["time_budget_s"] == budget  # the worker keeps both phases inside it
        assert any("fine-tunes" in reason for reason in slow["reasons"])
        assert photo_plan(budget).base == slow["preset"]
        assert slow["label_smoothing"] == photo_plan(budget).label_smoothing
    # Lite2's plan, as measured on the flower photos: without label smoothing its fine-tuning overfits.
    lite2 = dict(PHOTO_PLANS)[900][0]
    assert lite2 == PhotoPlan("efficientnet_lite2", 260, LAST_BLOCK_AND_HEAD, 12, 0.0003, 0.1)
    assert "label smoothing 0.1" in fine_tune_reason(lite2, 900)
    # Without pretrained weights there is no plan to follow.
    assert suggest(PHOTO_FACTS, pretrained=False, budget_s=900)["preset"] == "deeper_cnn"


def test_the_plan_falls_back_to_lite0_where_a_bigger_base_is_missing_or_has_no_weights(monkeypatch, tmp_path):
    from mlcore import defaults
    from mlcore.defaults import PhotoPlan, photo_plan

    monkeypatch.setattr(defaults, "PHOTO_PLANS", [
        (0, [PhotoPlan("efficientnet_lite0", 224)]),
        (900, [PhotoPlan("efficientnet_lite9", 300, 11, 10),  # not a base of this site (yet)
               PhotoPlan("mobilenetv2", 224, 11, 10),  # a base whose weights file is not in the folder
               PhotoPlan("efficientnet_lite0", 224, 11, 10)]),
    ])
    assert photo_plan(900, str(tmp_path)) == PhotoPlan("efficientnet_lite0", 224, 11, 10)
    assert photo_plan(300, str(tmp_path)) == PhotoPlan("efficientnet_lite0", 224)
    planned = suggest(PHOTO_FACTS, str(tmp_path), budget_s=900)
    assert planned["preset"] == "efficientnet_lite0" and planned["image_size"] == 224


def lite0_fine_tuning(**settings):
    spec = preset_spec("efficientnet_lite0")
    spec["base"]["fine_tune_layers"] = 11  # the last block and the head
    return config(**{"spec": spec, "image_size": (32, 32), "channels": 3, "epochs": 1, "fine_tune_epochs": 2,
                     "augmentation": {"flip": "horizontal"}, "batch_size": 8} | settings)


def photos(n=16, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    # Class 1 is brighter on the left: learnable, and not the same seen in a mirror.
    x = rng.integers(0, 128, (n, 32, 32, 3)).astype(np.uint8)
    x[y == 1, :, :16] += 100
    return x, y


def batch_norm_state(model):
    base = model.get_layer("efficientnet_lite0")
    return {layer.name: layer.get_weights() for layer in base.layers
            if isinstance(layer, keras.layers.BatchNormalization)}


def test_fine_tuning_learns_from_the_frozen_part_read_once_and_keeps_batch_norm_as_it_was():
    from mlcore.training import FrozenTrunk, PartialTrunk

    x, y = photos()
    settings = lite0_fine_tuning(learning_rate=0.00001, fine_tune_learning_rate=0.003, fine_tune_epochs=4)
    before = build_model(settings.spec, (32, 32, 3), 2, augmentation=settings.augmentation)
    assert PartialTrunk.of(before, settings, FrozenTrunk.of(before, settings)) is not None
    epochs = []
    outcome = train_model(settings, x, y, x, y, on_epoch=lambda epoch, logs: epochs.append(epoch))
    assert epochs == [1, 2, 3, 4, 5]
    top, tuned, mirrors = outcome.phases
    assert top["phase"] == "top" and tuned["phase"] == "fine_tune" and mirrors["phase"] == "mirrors"
    # The mirror check measures the model as it ended, here the fine-tuned one, on the same validation pictures.
    assert mirrors["val_accuracy"] == pytest.approx(tuned["val_accuracy"], abs=1 / len(y))
    assert 0 <= mirrors["mirrored_val_accuracy"] <= 1 and mirrors["kept"] is False
    assert tuned["kept"] and (tuned["val_accuracy"], -tuned["val_loss"]) > (top["val_accuracy"], -top["val_loss"])
    # BatchNormalization kept in inference mode: its ImageNet statistics and scales are untouched.
    fresh, trained = batch_norm_state(before), batch_norm_state(outcome.model)
    assert all(np.array_equal(a, b) for name in fresh for a, b in zip(fresh[name], trained[name]))
    base = outcome.model.get_layer("efficientnet_lite0")
    changed = [layer.name for layer in base.layers if layer.weights and not all(
        np.array_equal(a, b) for a, b in zip(layer.get_weights(), before.get_layer("efficientnet_lite0")
                                             .get_layer(layer.name).get_weights()))]
    assert changed and set(changed) <= {layer.name for layer in base.layers[-11:]}


def test_fine_tuning_that_does_worse_on_validation_goes_back_to_the_top_alone():
    x, y = photos()
    # A step size this large wrecks what the base knows.
    settings = lite0_fine_tuning(learning_rate=0.01, epochs=3, fine_tune_learning_rate=5.0)
    fresh = build_model(settings.spec, (32, 32, 3), 2, augmentation=settings.augmentation).get_layer("efficientnet_lite0")
    outcome = train_model(settings, x, y, x, y)
    top, tuned, _ = outcome.phases
    assert tuned["kept"] is False and (tuned["val_accuracy"], -tuned["val_loss"]) <= (top["val_accuracy"], -top["val_loss"])
    base = outcome.model.get_layer("efficientnet_lite0")
    assert all(np.array_equal(a, b) for a, b in zip(base.get_weights(), fresh.get_weights()))
    right = float(np.mean(outcome.model.predict(x, verbose=0).argmax(1) == y))
    assert right == pytest.approx(top["val_accuracy"], abs=1 / len(y))  # float16 activations may tip one picture


def test_fine_tuning_is_skipped_when_its_epochs_would_not_fit_the_budget():
    import time

    x, y = photos()
    outcome = train_model(lite0_fine_tuning(), x, y, x, y, deadline=time.monotonic() + 0.01)
    assert outcome.phases[1:] == [{"phase": "fine_tune", "skipped": "time"}, {"phase": "mirrors", "skipped": "time"}]


def test_a_frozen_base_hands_over_the_features_of_every_training_picture_and_a_fine_tuned_one_none():
    from mlcore.familiarity import features_and_probabilities

    x, y = photos()
    outcome = train_model(lite0_fine_tuning(fine_tune_epochs=0), x, y, x, y)
    # What the trained model's output layer reads for each training picture (not their mirror images).
    expected = features_and_probabilities(outcome.model).predict(x, verbose=0)[0]
    assert outcome.features.shape == (16, 1280)
    assert np.allclose(outcome.features, expected, atol=1e-3)
    assert train_model(lite0_fine_tuning(), x, y, x, y).features is None  # the base changed: its features too


def test_mirror_images_are_kept_only_when_more_validation_pictures_come_out_right():
    from mlcore.training import mirror_verdict

    y = np.array([0, 1, 1])
    alone = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    # The second picture's mirror image is sure it is a 1: scores averaged, it comes out right.
    helps = mirror_verdict(alone, np.array([[0.8, 0.2], [0.1, 0.9], [0.3, 0.7]]), y)
    assert helps == {"phase": "mirrors", "val_accuracy": pytest.approx(2 / 3), "mirrored_val_accuracy": 1.0,
                     "kept": True}
    # As many right: the picture alone is kept (the mirror image doubles the work of every answer).
    same = mirror_verdict(alone, alone, y)
    assert same["mirrored_val_accuracy"] == same["val_accuracy"] and same["kept"] is False
    # Scores before the softmax are averaged, not probabilities: a class the mirror image rules out
    # (probability rounded to 0) loses, however sure the picture alone was.
    assert mirror_verdict(np.array([[0.99, 0.01]]), np.array([[0.0, 1.0]]), np.array([1]))["kept"]



def test_a_network_trained_whole_with_mirror_images_is_asked_whether_answering_from_both_pays():
    x, y = tiny(n=24)
    steps = []
    outcome = train_model(config(augmentation={"flip": "horizontal"}), x, y, x[:10], y[:10],
                          on_phase=lambda phase, done=0, total=0: steps.append((phase, done, total)))
    (check,) = outcome.phases
    assert check["phase"] == "mirrors" and set(check) == {"phase", "val_accuracy", "mirrored_val_accuracy", "kept"}
    assert check["kept"] == (check["mirrored_val_accuracy"] > check["val_accuracy"])
    # Both passes over the validation pictures fill one bar.
    assert steps[0] == ("Trying the validation pictures mirrored", 0, 20) and steps[-1][1:] == (20, 20)
    # No mirror images in training, no validation pictures, or no time left: no question, or "skipped".
    assert train_model(config(), x, y, x[:10], y[:10]).phases is None
    assert train_model(config(augmentation={"flip": "horizontal"}), x, y, x[:0], y[:0]).phases is None
    late = train_model(config(augmentation={"flip": "horizontal"}), x, y, x[:10], y[:10], deadline=time.monotonic())
    assert late.phases == [{"phase": "mirrors", "skipped": "time"}]


def test_a_kept_fine_tuning_with_time_left_learns_again_with_the_validation_pictures():
    x, y = photos()
    xv, yv = photos(8, seed=1)
    settings = lite0_fine_tuning(learning_rate=0.00001, fine_tune_learning_rate=0.003, fine_tune_epochs=4,
                                 refit_with_validation=True)
    phases_seen = []
    outcome = train_model(settings, x, y, xv, yv, deadline=time.monotonic() + 600,
                          on_phase=lambda phase, done=0, total=0: phases_seen.append(phase))
    # A top that barely learns and a fine-tuning that does (as in the test above): fine-tuning is kept.
    assert [phase["phase"] for phase in outcome.phases] == ["top", "fine_tune", "mirrors", "refit"]
    assert outcome.phases[1]["kept"] and outcome.phases[3] == {"phase": "refit", "train": 16, "val": 8, "crops": False}
    assert "Learning again from the training and validation images together" in phases_seen
    assert outcome.best_epoch is None
    # It learned again: not the model the validation figures were measured on.
    plain = train_model(lite0_fine_tuning(learning_rate=0.00001, fine_tune_learning_rate=0.003, fine_tune_epochs=4),
                        x, y, xv, yv)
    assert [phase["phase"] for phase in plain.phases] == ["top", "fine_tune", "mirrors"]
    assert any(not np.array_equal(a, b) for a, b in zip(plain.model.get_weights(), outcome.model.get_weights()))
    # No time left for it: the model the validation pictures chose is kept as it is.
    late = train_model(settings, x, y, xv, yv, deadline=time.monotonic() + 1)
    assert "refit" not in [phase.get("phase") for phase in late.phases]
