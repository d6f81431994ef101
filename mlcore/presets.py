"""Ready-made networks, as specs (see builder.py) with the optimizer and learning rate they train best with.

Each preset opens in the browser's layer builder, so a person can start from one and change it.
"""
from __future__ import annotations

import copy

from .builder import missing_weights_message
from .efficientnet_lite import VARIANTS


def _conv(filters, activation="relu"):
    return {"type": "Conv2D", "filters": filters, "kernel_size": 3, "strides": 1, "padding": "same",
            "activation": activation}


def _dense(units):
    return {"type": "Dense", "units": units, "activation": "relu"}


def _conv_bn_relu(filters, strides=1):
    # Convolution without its own activation, then batch normalisation, then the activation: the
    # order the Keras examples use, so the normalisation sees the raw convolution outputs.
    return [{**_conv(filters, "linear"), "strides": strides}, {"type": "BatchNormalization"},
            {"type": "Activation", "activation": "relu"}]


def _conv_block(filters):
    # Pooling keeps the leftover edge ("same"): the same numbers as "valid" wherever the side is even
    # (every block at 128 x 128, where it was measured), and 28 x 28 pictures still fit the five halvings
    # (14, 7, 4, 2, 1) instead of shrinking below one pixel.
    return [*_conv_bn_relu(filters), {"type": "MaxPooling2D", "pool_size": 2, "padding": "same"}]


# The EfficientNet-Lite family, in order; each preset's "native_size" is the side its network was trained at.
LITE = list(VARIANTS.values())


def _transfer(name):
    return {"layers": [{"type": "GlobalAveragePooling2D"}, {"type": "Dropout", "rate": 0.2}],
            "base": {"name": name, "fine_tune_layers": 0}}


def _transfer_preset(name, label, description, native_size=None):
    """A preset that trains a new top on a pretrained base: every one learns with the same settings."""
    preset = {"label": label, "description": description, "spec": _transfer(name),
              "optimizer": "adam", "learning_rate": 0.001, "fine_tune_learning_rate": 0.00001}
    return {**preset, "native_size": native_size} if native_size else preset


def _lite_preset(number, description):
    """An EfficientNet-Lite preset: its label and native size follow from its place in the family."""
    name = f"efficientnet_lite{number}"
    return _transfer_preset(name, f"Transfer learning: EfficientNet-Lite{number} (works offline)",
                            description + " Its weights come with this site, so it needs no download. Needs "
                                          "images of at least 32 pixels.", LITE[number].image_size)


PRESET_SPECS = {
    "dense": {
        "label": "Dense network",
        "description": "The tutorial's network: Flatten, then two Dense layers of 128 neurons. Quick; good for "
                       "small, centred images such as handwritten digits.",
        "spec": {"layers": [{"type": "Flatten"}, _dense(128), _dense(128)], "base": None},
        "optimizer": "adam", "learning_rate": 0.001,
    },
    "wide": {
        "label": "Wide dense network",
        "description": "One wide Dense layer of 512 neurons, trained with RMSprop.",
        "spec": {"layers": [{"type": "Flatten"}, _dense(512)], "base": None},
        "optimizer": "rmsprop", "learning_rate": 0.001,
    },
    "small_cnn": {
        "label": "Small convolutional network",
        "description": "The Keras MNIST example: two convolution and pooling blocks, then Dropout. A good first "
                       "choice for most small images.",
        # "same" padding, unlike the example, so that images as small as 8 x 8 fit.
        "spec": {"layers": [_conv(32), {"type": "MaxPooling2D", "pool_size": 2, "padding": "valid"},
                            _conv(64), {"type": "MaxPooling2D", "pool_size": 2, "padding": "valid"},
                            {"type": "Flatten"}, {"type": "Dropout", "rate": 0.5}], "base": None},
        "optimizer": "adam", "learning_rate": 0.001,
    },
    "deeper_cnn": {
        "label": "Deeper convolutional network",
        "description": "A first convolution that halves the picture, then four convolution blocks (32 to 256 "
                       "filters) with batch normalisation, then global average pooling. Suits photos better than "
                       "the small network when no pretrained network is wanted; slower to train.",
        # Measured on the flower photos at 128 x 128 (docs/benchmarks.md, "photos_scratch"): 0.76 to 0.78
        # after 14 epochs, where the three-block network of before got 0.65 to 0.71 at 64 and 96 pixels.
        "spec": {"layers": [*_conv_bn_relu(32, strides=2), *_conv_block(32), *_conv_block(64), *_conv_block(128),
                            *_conv_block(256), {"type": "GlobalAveragePooling2D"}, {"type": "Dropout", "rate": 0.3}],
                 "base": None},
        "optimizer": "adam", "learning_rate": 0.001,
    },
    "efficientnet_lite0": _lite_preset(0, "Reuses EfficientNet-Lite0, already trained on 1.4 million photos, and "
                                          "trains only a new top. The best start for photos: right about 9 times "
                                          "out of 10 on five kinds of flowers after a few minutes on a "
                                          "laptop-class processor."),
    "efficientnet_lite1": _lite_preset(1, "Like EfficientNet-Lite0, one size up: deeper, made for photos of 240 × "
                                          "240 pixels, a little more accurate on ImageNet and slower to look at "
                                          "each photo."),
    "efficientnet_lite2": _lite_preset(2, "Like EfficientNet-Lite0, two sizes up: deeper and wider, made for "
                                          "photos of 260 × 260 pixels, more accurate on ImageNet and the slowest "
                                          "of the three."),
    "mobilenetv2": _transfer_preset("mobilenetv2", "Transfer learning: MobileNetV2",
                                    "Reuses MobileNetV2, already trained on 1.4 million photos, and trains only a "
                                    "new top. Learns a lot from few photos. Needs colour images of at least 32 "
                                    "pixels (grayscale images are given to it as grey colour images)."),
    "efficientnetb0": _transfer_preset("efficientnetb0", "Transfer learning: EfficientNetB0",
                                       "Reuses EfficientNetB0, already trained on 1.4 million photos, and trains "
                                       "only a new top. More accurate than MobileNetV2 and slower. Needs images "
                                       "of at least 32 pixels."),
}


def native_size(key: str) -> int | None:
    """The picture side a preset's pretrained network was trained at (the EfficientNet-Lite family), or None."""
    return PRESET_SPECS[key].get("native_size")


def preset_spec(key: str) -> dict:
    """A copy of a preset's spec, safe to change."""
    return copy.deepcopy(PRESET_SPECS[key]["spec"])


def needs_weights(key: str) -> str | None:
    """The name of the pretrained base a preset needs, or None."""
    base = PRESET_SPECS[key]["spec"]["base"]
    return base["name"] if base else None


def available_presets(weights_dir) -> list[dict]:
    """Every preset, JSON-ready, with `available` and, where it is not, the plain reason."""
    found = []
    for key, preset in PRESET_SPECS.items():
        base = needs_weights(key)
        reason = missing_weights_message(base, weights_dir) if base else None
        found.append({"key": key, **copy.deepcopy(preset), "available": reason is None, "reason": reason or ""})
    return found


def make_model(preset: str, input_shape: tuple[int, int, int], num_classes: int):
    """The Keras model of a preset that needs no pretrained weights. Every model starts with
    Rescaling, so it takes raw uint8 pixels and a saved model needs no preprocessing code beside it."""
    from .builder import build_model

    if preset not in PRESET_SPECS or needs_weights(preset):
        raise ValueError(f"unknown preset {preset!r}")
    return build_model(preset_spec(preset), input_shape, num_classes, name=preset)
