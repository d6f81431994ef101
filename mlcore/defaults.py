"""Training settings chosen from what a dataset is like, so that a newcomer can press "Train"
without touching any of them. Each choice says why in `reasons`, shown beside the form."""
from __future__ import annotations

import copy
from dataclasses import dataclass

from .builder import weights_path
from .presets import PRESET_SPECS, preset_spec

PHOTO_SIDE = 64  # images with a shorter side at least this big are treated as photos
SMALL_SIDE = 32  # up to this, images are trained at their own size


@dataclass(frozen=True)
class DatasetFacts:
    images: int  # trainable images, all splits
    classes: int  # classes with images
    typical_side: int  # the median of the shorter sides, in pixels
    channels: int  # 1 when every image is grayscale, else 3
    largest_class: int
    smallest_class: int


def suggest(facts: DatasetFacts, weights_dir=None) -> dict:
    """Settings for the training form (names as on TrainingRun), plus "reasons": [text, ...]."""
    reasons = []
    photos = facts.typical_side >= PHOTO_SIDE
    if photos and facts.channels == 3 and weights_path("mobilenetv2", weights_dir):
        preset, size = "mobilenetv2", 96
        reasons.append("Colour photos: MobileNetV2, already trained on 1.4 million photos, learns a lot from few "
                       "of yours. Images are shown to it at 96 × 96 pixels.")
    elif photos:
        preset, size = "deeper_cnn", PHOTO_SIDE
        reasons.append(f"Photos: the deeper convolutional network, at {PHOTO_SIDE} × {PHOTO_SIDE} pixels to keep "
                       "training quick.")
    else:
        preset, size = "small_cnn", max(8, min(facts.typical_side, SMALL_SIDE))
        reasons.append(f"Small images: the small convolutional network of the Keras MNIST example, at "
                       f"{size} × {size} pixels.")

    big = facts.images >= 20_000
    if big:
        # Measured on MNIST (docs/benchmarks.md): batch 128, Adam at 0.003 falling along a cosine
        # passes 99% test accuracy in 3 to 5 epochs; the example's constant 0.001 needs 7 (99.06%).
        epochs, batch_size, learning_rate, patience = 5, 128, 0.003, 0
        reasons.append(f"{facts.images:,} images: {epochs} epochs of batches of {batch_size}, with a step size "
                       "that starts large and shrinks smoothly (cosine).")
    elif facts.images >= 2_000:
        epochs, batch_size, learning_rate, patience = 20, 64, 0.001, 5
        reasons.append(f"{facts.images:,} images: up to {epochs} epochs; it stops by itself when the validation "
                       "images stop improving for 5 epochs, and keeps its best epoch.")
    else:
        epochs, batch_size, learning_rate, patience = 40, 32, 0.001, 8
        reasons.append(f"Only {facts.images:,} images: up to {epochs} epochs with random changes to the pictures, "
                       "stopping by itself once the validation images stop improving for 8 epochs.")
    if preset == "mobilenetv2":
        learning_rate = PRESET_SPECS[preset]["learning_rate"]

    augmentation = {}
    if photos:
        augmentation = {"flip": "horizontal", "rotation": 10, "zoom": 10}
        reasons.append("Photos: random left–right flips, small turns and zooms, so it learns what matters "
                       "rather than the exact pictures.")
    elif not big:
        # Not flips: a mirrored digit or letter is a different thing.
        augmentation = {"rotation": 10, "zoom": 10, "translation": 10}
        reasons.append("Few images: small random turns, zooms and shifts (no flips: a mirrored digit or letter "
                       "means something else).")

    imbalanced = facts.smallest_class and facts.largest_class >= 1.5 * facts.smallest_class
    if imbalanced:
        reasons.append(f"Some classes have many more images than others ({facts.largest_class:,} against "
                       f"{facts.smallest_class:,}): rare classes count more while training.")
    return {
        "preset": preset,
        "model_spec": preset_spec(preset),
        "image_size": size,
        "channels": facts.channels,
        "resize_mode": "squash",
        "augmentation": copy.deepcopy(augmentation),
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer": PRESET_SPECS[preset]["optimizer"],
        "learning_rate": learning_rate,
        "lr_schedule": "cosine",
        "early_stopping_patience": patience,
        "class_weighting": "auto" if imbalanced else "none",
        "label_smoothing": 0.0,
        "seed": 1337,
        "fine_tune_epochs": 0,
        "fine_tune_learning_rate": PRESET_SPECS[preset].get("fine_tune_learning_rate", 0.00001),
        "use_all_gpus": False,
        "reasons": reasons,
    }
