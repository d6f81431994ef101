"""The networks the training form offers by name, built from their specs (see builder.py and presets.py).

Every model starts with Rescaling, so it takes raw uint8 pixels and a saved
model needs no preprocessing code beside it.
"""
from __future__ import annotations

from .presets import PRESET_SPECS, needs_weights, preset_spec

# The training form's and the run's choices. Kept to these two until the run stores a spec (the
# builder's presets are in presets.PRESET_SPECS); a new key here would need a migration.
PRESETS = {
    "dense": "Dense network (the tutorial's: Flatten, Dense 128, Dense 128)",
    "small_cnn": "Small convolutional network (the Keras MNIST example)",
}


def make_model(preset: str, input_shape: tuple[int, int, int], num_classes: int):
    """The Keras model of a preset that needs no pretrained weights."""
    from .builder import build_model

    if preset not in PRESET_SPECS or needs_weights(preset):
        raise ValueError(f"unknown preset {preset!r}")
    return build_model(preset_spec(preset), input_shape, num_classes, name=preset)
