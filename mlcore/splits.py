"""Splitting a labelled set of images into train, validation and test."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

SPLITS = ("train", "val", "test")


def stratified_split(labels: list[str], given: list[str | None] | None = None,
                     val_fraction: float = 0.1, test_fraction: float = 0.1,
                     seed: int = 1337) -> list[str]:
    """Return a split name for each item, in the items' order.

    Each class is split on its own (stratified), with a seeded shuffle, so the
    same images always land in the same split. Splits already `given` (from a
    train/ or test/ folder) are kept; a split that no folder provided is taken
    out of the training images.
    """
    given = list(given) if given is not None else [None] * len(labels)
    result = [split or "train" for split in given]
    rng = np.random.default_rng(seed)
    wanted = [
        (name, fraction) for name, fraction in (("val", val_fraction), ("test", test_fraction))
        if fraction > 0 and name not in given
    ]
    if not wanted:
        return result
    by_class: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        if result[index] == "train":
            by_class[label].append(index)
    train_share = 1.0 - sum(fraction for split, fraction in (("val", val_fraction), ("test", test_fraction))
                            if split in given)
    for label in sorted(by_class):
        indices = by_class[label]
        order = rng.permutation(len(indices))
        start = 0
        for name, fraction in wanted:
            # Every class of three images or more gives at least one to each split,
            # so each class is validated and tested.
            count = int(round(len(indices) * fraction / train_share))
            if len(indices) >= 3:
                count = max(count, 1)
            for position in order[start:start + count]:
                result[indices[position]] = name
            start += count
    return result
