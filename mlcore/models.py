"""The networks the training form offers by name, built from their specs (see builder.py and presets.py).

Every model starts with Rescaling, so it takes raw uint8 pixels and a saved
model needs no preprocessing code beside it.
"""
from __future__ import annotations

from .presets import PRESET_SPECS, needs_weights, preset_spec  # noqa: F401  (re-exported)


def make_model(preset: str, input_shape: tuple[int, int, int], num_classes: int):
    """The Keras model of a preset that needs no pretrained weights."""
    from .builder import build_model

    if preset not in PRESET_SPECS or needs_weights(preset):
        raise ValueError(f"unknown preset {preset!r}")
    return build_model(preset_spec(preset), input_shape, num_classes, name=preset)
