"""Packed copies of a dataset version: every image decoded and resized once, as uint8 arrays.

Training reads a pack, never thousands of small files per epoch. A pack is built
once per (version, input size, colour mode) and shared by every run that asks for
the same; it is a folder of .npy files per split, written to a temporary folder and
renamed into place, so a reader never sees half a pack and two builders at once
cannot spoil each other's work.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .images import ImageRejected, load_model_input

SPLITS = ("train", "val", "test")
CHUNK_IMAGES = 500


@dataclass(frozen=True)
class PackItem:
    path: str  # the image file
    label: int
    split: str
    image_id: int


@dataclass(frozen=True)
class PackSpec:
    size: tuple[int, int]  # (height, width)
    channels: int
    max_pixels: int
    resize: str = "squash"  # see options.RESIZE_MODES


def pack_is_ready(folder: str) -> bool:
    return os.path.exists(os.path.join(folder, "train_x.npy"))


def load_pack(folder: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{split: (pixels uint8 (n, h, w, c), labels int64, image ids int64)}."""
    return {
        split: tuple(np.load(os.path.join(folder, f"{split}_{part}.npy")) for part in ("x", "y", "ids"))
        for split in SPLITS
    }


def _pixels(chunk: tuple[list[PackItem], PackSpec]) -> list[np.ndarray | None]:
    """Decode and resize one chunk; None for a file that no longer reads (it decoded at ingestion)."""
    items, spec = chunk
    out = []
    for item in items:
        try:
            with open(item.path, "rb") as f:
                out.append(load_model_input(f.read(), spec.size, spec.channels, spec.max_pixels, spec.resize))
        except (OSError, ImageRejected):
            out.append(None)
    return out


def build_pack(items: list[PackItem], spec: PackSpec, folder: str, *, processes: int = 1,
               pool_factory: Callable | None = None,
               on_progress: Callable[[int, int], None] | None = None) -> str:
    """Decode every item into arrays and write them to `folder`; returns `folder`.

    With `processes` > 1 and a `pool_factory(processes)` giving a multiprocessing-style
    pool, chunks are decoded in parallel (the caller chooses the pool: inside a Celery
    worker it must be billiard's).
    """
    if pack_is_ready(folder):
        return folder
    height, width = spec.size
    arrays = {split: np.zeros((sum(i.split == split for i in items), height, width, spec.channels), np.uint8)
              for split in SPLITS}
    labels = {split: [] for split in SPLITS}
    ids = {split: [] for split in SPLITS}
    filled = dict.fromkeys(SPLITS, 0)
    chunks = [(items[start:start + CHUNK_IMAGES], spec) for start in range(0, len(items), CHUNK_IMAGES)]

    pool = pool_factory(processes) if processes > 1 and pool_factory and len(chunks) > 1 else None
    try:
        results = pool.imap(_pixels, chunks) if pool else map(_pixels, chunks)
        done = 0
        for (chunk_items, _), pixels in zip(chunks, results):
            for item, image in zip(chunk_items, pixels):
                if image is None:
                    continue
                arrays[item.split][filled[item.split]] = image
                filled[item.split] += 1
                labels[item.split].append(item.label)
                ids[item.split].append(item.image_id)
            done += len(chunk_items)
            if on_progress:
                on_progress(done, len(items))
    finally:
        if pool:
            pool.terminate()
            pool.join()

    os.makedirs(os.path.dirname(folder) or ".", exist_ok=True)
    partial = tempfile.mkdtemp(prefix=".building-", dir=os.path.dirname(folder) or ".")
    try:
        for split in SPLITS:
            np.save(os.path.join(partial, f"{split}_x.npy"), arrays[split][:filled[split]])
            np.save(os.path.join(partial, f"{split}_y.npy"), np.array(labels[split], np.int64))
            np.save(os.path.join(partial, f"{split}_ids.npy"), np.array(ids[split], np.int64))
        os.rename(partial, folder)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if not pack_is_ready(folder):  # another process finished the same pack first: use theirs
            raise
    return folder
