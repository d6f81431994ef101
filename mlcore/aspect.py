"""Making a picture the shape and size of the network's input: the pixel work behind the "crop" and
"pad" ways of mlcore.options.RESIZE_MODES, and the resize itself.

It needs only NumPy and OpenCV: the "serve it yourself" bundle (mlcore/formats.py) ships this very
file, so that its server resizes pictures exactly as training did."""
from __future__ import annotations

import cv2
import numpy as np


def centre_crop(array: np.ndarray, aspect: float) -> np.ndarray:
    """The largest centred part of the picture with width / height == aspect."""
    h, w = array.shape[:2]
    if w / h > aspect:
        keep = max(1, round(h * aspect))
        left = (w - keep) // 2
        return array[:, left:left + keep]
    keep = max(1, round(w / aspect))
    top = (h - keep) // 2
    return array[top:top + keep]


def pad(array: np.ndarray, aspect: float) -> np.ndarray:
    """The picture centred on black, grown to width / height == aspect."""
    h, w = array.shape[:2]
    if w / h > aspect:
        extra = round(w / aspect) - h
        top = extra // 2
        return cv2.copyMakeBorder(array, top, extra - top, 0, 0, cv2.BORDER_CONSTANT, value=0)
    extra = round(h * aspect) - w
    left = extra // 2
    return cv2.copyMakeBorder(array, 0, 0, left, extra - left, cv2.BORDER_CONSTANT, value=0)


def fit_to_input(array: np.ndarray, size: tuple[int, int], to_aspect=None) -> np.ndarray:
    """uint8 pixels (height, width[, channels]) made `size` (height, width): first given the input's
    proportions by `to_aspect` (centre_crop, pad, or None to squash), then resized; shaped
    (height, width, channels)."""
    height, width = size
    if array.shape[:2] != (height, width):
        if to_aspect:
            array = to_aspect(array, width / height)
        shrinking = array.shape[0] > height or array.shape[1] > width
        array = cv2.resize(array, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    return np.ascontiguousarray(array)
