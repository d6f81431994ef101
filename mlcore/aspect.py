"""Making a picture the shape of the network's input before it is resized: the pixel work behind
the "crop" and "pad" ways of mlcore.options.RESIZE_MODES."""
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
