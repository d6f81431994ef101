"""Plain-words readings of a run's curves, for people who have never trained a network.

No Django here: the functions take the per-epoch numbers as plain dicts.
"""
from __future__ import annotations

# Validation loss must have stayed above its best for at least this many epochs...
MIN_EPOCHS_RISING = 2
# ...and the latest value must be at least this much (relative) above the best, so that a flat,
# noisy curve is not taken for overfitting.
MIN_RISE = 0.01


def overfitting_hint(metrics) -> str | None:
    """A warning when the network has started to memorise its training images, else None.

    `metrics` is one dict per epoch, in epoch order, with at least "epoch", "loss" and "val_loss"
    (None where unknown). The rule: the lowest validation loss lies at least MIN_EPOCHS_RISING
    epochs back, the latest validation loss is clearly above it, and the training loss has
    still fallen since that best epoch.
    """
    rows = list(metrics)
    if not rows or rows[-1].get("val_loss") is None or rows[-1].get("loss") is None:
        return None  # no validation images, or the latest epoch is not known yet
    known = [row for row in rows if row.get("val_loss") is not None and row.get("loss") is not None]
    if len(known) < MIN_EPOCHS_RISING + 1:
        return None
    best_index = min(range(len(known)), key=lambda i: (known[i]["val_loss"], i))
    best, latest = known[best_index], known[-1]
    rising_for = len(known) - 1 - best_index
    if rising_for < MIN_EPOCHS_RISING:
        return None
    if latest["val_loss"] <= best["val_loss"] * (1 + MIN_RISE) + 1e-12:
        return None
    if latest["loss"] >= best["loss"]:
        return None  # both got worse: something else is wrong (step size too large, say), not memorising
    return (
        "The network is starting to learn the training images by heart: training loss keeps falling, "
        f"but validation loss has risen for {rising_for} epochs since epoch {best['epoch']}, its best. "
        "More images, random changes (augmentation), Dropout, or early stopping help."
    )


def samples_per_second(train_count, seconds) -> float | None:
    """Training images a second in an epoch that took `seconds`; None when either is unknown."""
    if not train_count or not seconds or seconds <= 0:
        return None
    return train_count / seconds
