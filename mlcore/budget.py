"""How long a run will take, in words a person understands, and the time budgets they can choose.

The worker keeps to a budget (training.train_model's `deadline`): after the first epoch it knows
how many more fit, fits the step-size schedule to them and starts no epoch that would end late.
This module gives the estimate shown before "Start training", from speeds measured on this site's
workers (finished runs of the same network) where there are some, else from the reference speeds
below, measured on a 2-core CPU (docs/benchmarks.md).
"""
from __future__ import annotations

from dataclasses import dataclass

TIME_BUDGETS = [
    (0, "No limit: every epoch, or until it stops improving"),
    (120, "About 2 minutes"),
    (300, "About 5 minutes"),
    (900, "About 15 minutes"),
    (1800, "About 30 minutes"),
    (3600, "About an hour"),
]
# Share of a budget kept for what comes after training: testing on the test images and saving (2 s for
# 587 flower photos at 128 x 128 from scratch, about 15 s at 224 x 224 through EfficientNet-Lite0).
AFTER_TRAINING_SHARE = 0.05

# Training images a second at REFERENCE_SIDE pixels square on a 2-core CPU, and, for a pretrained
# base, images a second it reads once (its frozen features). Measured here, under light load.
REFERENCE_SIDE = 64
TRAIN_IMAGES_PER_S = {"dense": 3000, "wide": 2500, "small_cnn": 900, "deeper_cnn": 450}
# Lite1 and Lite2 at their own sizes (240, 260), measured 2026-12-07: the no-top base with its weights,
# predict(batch_size=32) on 64 random pictures after one warm-up batch, best of 5 rounds, under `nice`
# while other jobs shared the 2 cores (load 5.5). Wall-clock rates swung 3-fold with that load, so the
# figures are pictures per second of the process's CPU time, which it does not change: Lite0 57 at 224 in
# the same rounds (its 60 is from a quieter machine), Lite1 38, Lite2 29 (best wall clock: 93, 49, 35).
PRETRAINED_IMAGES_PER_S = {"efficientnet_lite0": 60 * (224 / 64) ** 2, "efficientnet_lite1": 38 * (240 / 64) ** 2,
                           "efficientnet_lite2": 29 * (260 / 64) ** 2, "mobilenetv2": 80 * (224 / 64) ** 2,
                           "efficientnetb0": 35 * (224 / 64) ** 2}
# Fine-tuning a pretrained base's last block and head on activations read once (training.PartialTrunk):
# training images a second at the base's own size (mirror images count), measured on the flower photos,
# 4,106 a epoch in 11 to 34 s on 2 shared cores.
# Lite2 at 260: 12.8 to 22.9 s an epoch of the same photos, about the same pace at its own size.
FINE_TUNE_IMAGES_PER_S = {"efficientnet_lite0": 150 * (224 / 64) ** 2, "efficientnet_lite1": 150 * (240 / 64) ** 2,
                          "efficientnet_lite2": 150 * (260 / 64) ** 2}
PACK_IMAGES_PER_S = 250  # decoding and resizing the pictures once, before the first run at a size


@dataclass(frozen=True)
class Estimate:
    seconds: float
    measured: bool  # from this site's own finished runs, rather than the reference speeds

    def in_words(self) -> str:
        minutes = self.seconds / 60
        if minutes < 1:
            text = "under a minute"
        elif minutes < 1.5:
            text = "about a minute"
        elif minutes < 90:
            text = f"about {round(minutes)} minutes"
        else:
            text = f"about {minutes / 60:.1f} hours"
        source = "measured on this site's worker" if self.measured else "on a small 2-core computer; a GPU is faster"
        return f"{text} ({source})"


def scale_speed(images_per_s: float, from_side: int, to_side: int) -> float:
    """The work per image grows with its pixels."""
    return images_per_s * (from_side / to_side) ** 2


def estimate(network: str, image_size: int, train: int, val: int, test: int, epochs: int, *,
             pretrained: bool, mirrored: bool, pack_ready: bool = False, measured_images_per_s: tuple | None = None,
             budget_s: int = 0, fine_tune_epochs: int = 0, crop_views: bool = False) -> Estimate:
    """Seconds from "Start training" to a saved model. `network` is a preset key (or a base's name for a
    custom network on it); `measured_images_per_s` is (images a second, at this side) from this site.

    A frozen pretrained base reads each training picture once (twice with mirror images) and the
    validation and test pictures once, and its top's epochs cost next to nothing. Other networks
    train `epochs` times over the training pictures, and read the validation ones every epoch.
    `fine_tune_epochs` of a pretrained base's top follow, on what the base's frozen part saw (the
    plan of mlcore.defaults.PHOTO_PLANS). With `crop_views` (few photos, defaults.few_photos_plan) the base
    reads 12 views of each training and validation picture. A budget caps the estimate: the worker keeps to it."""
    measured = measured_images_per_s is not None and not pretrained  # epochs of a top alone say nothing of its base
    if measured:
        speed = scale_speed(measured_images_per_s[0], measured_images_per_s[1], image_size)
    elif pretrained:
        speed = scale_speed(PRETRAINED_IMAGES_PER_S.get(network, 60 * (224 / 64) ** 2), REFERENCE_SIDE, image_size)
    else:
        speed = scale_speed(TRAIN_IMAGES_PER_S.get(network, 250), REFERENCE_SIDE, image_size)
    if pretrained:
        # Reading a picture costs about a third of training on it, which is what `speed` measures for
        # the other networks; for a pretrained base it is already the reading speed.
        seconds = (train * (2 if mirrored else 1) + val + test) / speed
        if crop_views:
            seconds = (12 * (train + val) + test) / speed
        if fine_tune_epochs:
            tuning = scale_speed(FINE_TUNE_IMAGES_PER_S.get(network, 150 * (224 / 64) ** 2), REFERENCE_SIDE, image_size)
            seconds += fine_tune_epochs * (train * (2 if mirrored else 1) + val / 3) / tuning
    else:
        seconds = epochs * (train + val / 3) / speed + test / (3 * speed)
    if not pack_ready:
        seconds += (train + val + test) / PACK_IMAGES_PER_S
    seconds += 5  # starting the worker's process and loading the pictures
    if budget_s:
        seconds = min(seconds, budget_s)
    return Estimate(seconds, measured)


# With a budget, a network trained from nothing should get at least this many epochs; a smaller input
# size is chosen when the one asked for would allow fewer.
MIN_EPOCHS_IN_BUDGET = 10
SMALLEST_SIDE = 32


def size_for_budget(network: str, image_size: int, train: int, val: int, test: int, *, pretrained: bool,
                    mirrored: bool, budget_s: int, measured_images_per_s: tuple | None = None) -> int:
    """The largest of `image_size`, three quarters and half of it (never under SMALLEST_SIDE, in
    steps of 8 pixels) at which the run fits the budget: for a pretrained base, its one look at the
    pictures; otherwise MIN_EPOCHS_IN_BUDGET epochs. The smallest when none fits; `image_size`
    itself without a budget."""
    if not budget_s:
        return image_size
    sizes = sorted({max(min(image_size, SMALLEST_SIDE), 8 * round(image_size * share / 8)) for share in (1, 0.75, 0.5)},
                   reverse=True)
    for size in sizes:
        seconds = estimate(network, size, train, val, test, MIN_EPOCHS_IN_BUDGET, pretrained=pretrained,
                           mirrored=mirrored, measured_images_per_s=measured_images_per_s).seconds
        if seconds <= budget_s * (1 - AFTER_TRAINING_SHARE):
            return size
    return sizes[-1]
