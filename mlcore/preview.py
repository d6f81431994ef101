"""Pictures for the training form's previews: the images as the model will see them, and the random
changes (augmentation) it will see while training. No Django here; training_app/preview_views.py
reads the request and the files and calls these.

The pixels come from the same functions training uses (images.image_to_array and
options.augmentation_layers), so a preview shows exactly what training will do.
"""
from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from .images import image_to_array
from .options import augmentation_is_on, augmentation_layers, normalise_augmentation

MAX_SAMPLES = 12  # more pictures than this in one preview is never needed
MAX_VARIANTS = 8


def model_inputs(images, size: int, channels: int, resize: str) -> np.ndarray:
    """PIL images to the uint8 batch (n, size, size, channels) a model of this size takes."""
    return np.stack([image_to_array(image, (size, size), channels, resize) for image in images[:MAX_SAMPLES]])


def augment(batch: np.ndarray, augmentation, variants: int = 4, seed: int = 0) -> np.ndarray:
    """`variants` random changes of every image of a uint8 batch (n, h, w, c), made by the Keras layers
    training uses: uint8 (n, variants, h, w, c). With every setting off, the images come back unchanged."""
    variants = max(1, min(int(variants), MAX_VARIANTS))
    n = len(batch)
    repeated = np.repeat(batch[:MAX_SAMPLES], variants, axis=0).astype(np.float32)
    clean = normalise_augmentation(augmentation)
    if n and augmentation_is_on(clean):
        import keras  # only here: importing TensorFlow costs seconds, and the input preview needs none of it

        changes = keras.Sequential(augmentation_layers(clean, seed=seed))
        repeated = np.asarray(changes(repeated, training=True))
    out = np.clip(np.rint(repeated), 0, 255).astype(np.uint8)
    return out.reshape((n, variants, *batch.shape[1:]))


def png_bytes(array: np.ndarray) -> bytes:
    """A uint8 (h, w, 1) or (h, w, 3) array as a PNG file."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), "L" if array.ndim == 2 else "RGB").save(buffer, "PNG")
    return buffer.getvalue()


def png_data_url(array: np.ndarray) -> str:
    """The array as a data: URL an <img> can show without another request."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(array)).decode("ascii")
