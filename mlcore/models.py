"""Model builders, one per preset, in the style of the keras-io examples.

Every model starts with Rescaling, so it takes raw uint8 pixels and a saved
model needs no preprocessing code beside it.
"""
from __future__ import annotations

PRESETS = {
    "dense": "Dense network (the tutorial's: Flatten, Dense 128, Dense 128)",
    "small_cnn": "Small convolutional network (the Keras MNIST example)",
}


def make_model(preset: str, input_shape: tuple[int, int, int], num_classes: int):
    import keras
    from keras import layers

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}")
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    if preset == "dense":
        x = layers.Flatten()(x)
        x = layers.Dense(128, activation="relu")(x)
        x = layers.Dense(128, activation="relu")(x)
    else:
        # "same" padding, unlike the example, so that images as small as 8 x 8 fit.
        x = layers.Conv2D(32, 3, activation="relu", padding="same")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Conv2D(64, 3, activation="relu", padding="same")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Flatten()(x)
        x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=preset)
