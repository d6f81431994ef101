"""Turning untrusted image bytes into pixels.

`decode_image` is the only way bytes become an image in this project, and
`image_to_array` the only way an image becomes a model input: ingestion,
training and prediction all call them, so what the model sees at training time
is exactly what it sees when serving.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .aspect import fit_to_input
from .options import RESIZE_MODES

ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF")
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
DEFAULT_MAX_PIXELS = 40_000_000  # about a 7,000 x 6,000 photo
# Modes the allowed formats produce that become RGB as they are (grey and transparent ones are handled first).
CONVERTIBLE_TO_RGB = {"RGB", "P", "CMYK", "YCbCr", "RGBX"}
THUMBNAIL_BOX = 160  # pixels; gallery tiles are shown at 80 to 120 CSS pixels


class ImageRejected(ValueError):
    """The bytes are not an image this product accepts; the message says why in plain words."""


class ImageTooLarge(ImageRejected):
    """The picture declares more pixels than allowed; refused from its header, before decoding."""

    def __init__(self, width: int, height: int, limit: int):
        super().__init__(f"the image is too large ({width} x {height} pixels; the limit is {limit:,} pixels)")
        self.width, self.height, self.limit = width, height, limit


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # mode "L" or "RGB", EXIF orientation applied
    format: str  # "PNG", "JPEG", ...

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height

    @property
    def channels(self) -> int:
        return 1 if self.image.mode == "L" else 3


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Fully decode `data`, or raise ImageRejected with a reason a person can act on."""

    def refuse_over_the_limit(image):
        _refuse_over(image.width, image.height, max_pixels)

    return _decode(data, refuse_over_the_limit)


def decode_reduced(data, side: int, max_pixels: int, max_declared_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode a picture that is only needed small (at least `side` pixels on its shorter side, as
    for a prediction), holding no more than about `max_pixels` pixels in memory at once.

    A JPEG, what cameras and phones write, is decoded directly at 1/2, 1/4 or 1/8 of its size
    (libjpeg scales while decoding: Image.draft), so a 48-megapixel photo costs what a 1/8 one
    does. PNG, BMP and GIF cannot be decoded smaller, so one that declares more than `max_pixels`
    is refused (ImageTooLarge) from its header, before a single pixel is decoded. What was decoded
    is then box-averaged down to at least twice `side`, so later copies (colour conversion,
    resizing) stay small."""

    def decode_small(image):
        _refuse_over(image.width, image.height, max_declared_pixels)
        declared = image.size
        if image.format == "JPEG":
            image.draft(None, (side, side))  # the smallest 1/2^k scale that keeps both sides >= side
        if image.width * image.height > max_pixels:
            _refuse_over(*declared, max_pixels)

    return _decode(data, decode_small, shrink_to=side)


def _refuse_over(width: int, height: int, limit: int):
    if width * height > limit:
        raise ImageTooLarge(width, height, limit)


# Modes that Image.reduce averages as they are; others are reduced once they are "L" or "RGB".
_REDUCIBLE_MODES = {"L", "RGB", "RGBA", "LA"}


def _shrink(image: Image.Image, side: int | None) -> Image.Image:
    """Box-average by a whole factor while the shorter side stays at least 2 x `side`."""
    factor = min(image.width, image.height) // (2 * side) if side else 0
    if factor < 2 or image.mode not in _REDUCIBLE_MODES:
        return image
    return image.reduce(factor)


def _decode(data, check_header, shrink_to: int | None = None) -> DecodedImage:
    """Open `data`, call `check_header(image)` (which may refuse, or ask for a reduced decode) while only
    the header is read, then decode to mode "L" or "RGB" with the EXIF orientation applied."""
    if not data:
        raise ImageRejected("the file is empty")
    try:
        with warnings.catch_warnings():
            # Pillow only warns about decompression bombs below twice its own cap.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            check_header(image)
            fmt = image.format
            image.load()  # a real decode: verify() checks little
            image = _shrink(image, shrink_to)
            if image.info.get("exif"):  # JPEG and PNG keep it here; only then can it rotate
                image = ImageOps.exif_transpose(image)
            if image.mode not in ("L", "RGB"):
                image = _shrink(_to_model_mode(image), shrink_to)
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected("not an image in a supported format (PNG, JPEG, BMP or GIF)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected("the image has too many pixels (a decompression bomb)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow reports truncated and corrupt data as OSError or SyntaxError.
        raise ImageRejected(f"the image is damaged and cannot be read ({exc})") from None
    return DecodedImage(image=image, format=fmt)


def _to_model_mode(image: Image.Image) -> Image.Image:
    """Grayscale images stay one channel; everything else becomes RGB.

    Transparent pixels are laid on white, which is what people see in a viewer.
    """
    if image.mode in ("1", "L", "I;16", "I;16B", "I;16L", "I", "F"):
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(image, dtype=np.float64)
            top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
            return Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8), "L")
        return image.convert("L")
    if image.mode == "LA" or (image.mode == "P" and "transparency" in image.info) or image.mode in ("RGBA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode not in CONVERTIBLE_TO_RGB:
        raise ImageRejected(f"the image uses a colour mode this product cannot read ({image.mode})")
    rgb = image.convert("RGB")
    if image.mode == "P":
        # GIF and 8-bit BMP files keep grey pictures as a palette; they stay grey.
        pixels = np.asarray(rgb)
        if np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 1], pixels[..., 2]):
            return rgb.convert("L")
    return rgb


def make_thumbnail(image: Image.Image, box: int = THUMBNAIL_BOX) -> bytes | None:
    """A JPEG no larger than box x box pixels, or None when the image is that small already
    (it is then its own thumbnail, which saves a file per MNIST digit)."""
    if image.width <= box and image.height <= box:
        return None
    thumbnail = image.copy()
    thumbnail.thumbnail((box, box), Image.Resampling.LANCZOS, reducing_gap=2.0)
    buffer = io.BytesIO()
    thumbnail.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def image_to_array(image: Image.Image, size: tuple[int, int], channels: int, resize: str = "squash") -> np.ndarray:
    """Resize to `size` (height, width) the `resize` way (options.RESIZE_MODES) and return uint8 pixels
    shaped (height, width, channels).

    Scaling to [0, 1] is not done here: it is a Rescaling layer inside the model,
    so a saved model takes raw pixels.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {resize!r}")
    image = image.convert("L" if channels == 1 else "RGB")
    return fit_to_input(np.asarray(image, dtype=np.uint8), size, RESIZE_MODES[resize].shape)


def load_model_input(data: bytes, size: tuple[int, int], channels: int,
                     max_pixels: int = DEFAULT_MAX_PIXELS, resize: str = "squash") -> np.ndarray:
    """Bytes of an image file to the uint8 array a model of this project takes."""
    return image_to_array(decode_image(data, max_pixels).image, size, channels, resize)
