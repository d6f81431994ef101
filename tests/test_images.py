import io

import numpy as np
import pytest
from PIL import Image

from mlcore.images import ImageRejected, decode_image, image_to_array, load_model_input
from tests.images import image_bytes


def encode(image, fmt="PNG", **options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF"])
def test_it_decodes_each_supported_format(fmt):
    decoded = decode_image(image_bytes("spot", 20, fmt))
    assert decoded.format == fmt
    assert (decoded.width, decoded.height, decoded.channels) == (20, 20, 1)


def test_it_rejects_a_file_that_is_not_an_image():
    with pytest.raises(ImageRejected, match="not an image"):
        decode_image(b"%PDF-1.4 this is a pdf")


def test_it_rejects_an_unsupported_format():
    with pytest.raises(ImageRejected, match="not an image in a supported format"):
        decode_image(encode(Image.new("RGB", (8, 8)), "TIFF"))


def test_it_rejects_a_truncated_image():
    data = image_bytes("spot", 64, "PNG")
    with pytest.raises(ImageRejected, match="damaged"):
        decode_image(data[: len(data) // 2])


def test_it_rejects_an_empty_file():
    with pytest.raises(ImageRejected, match="empty"):
        decode_image(b"")


def test_it_rejects_an_image_with_a_hundred_times_too_many_pixels():
    data = encode(Image.new("L", (1000, 1000)))
    with pytest.raises(ImageRejected, match="too large"):
        decode_image(data, max_pixels=10_000)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_it_applies_exif_orientation(fmt):
    image = Image.new("RGB", (30, 10), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    decoded = decode_image(encode(image, fmt, exif=exif.tobytes()))
    assert (decoded.width, decoded.height) == (10, 30)


def test_pillows_decompression_bomb_warning_is_an_error(monkeypatch):
    # Pillow warns (rather than refuses) between its cap and twice its cap; here that is an error.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    with pytest.raises(ImageRejected, match="decompression bomb"):
        decode_image(encode(Image.new("L", (40, 40))), max_pixels=10**9)


def test_a_colour_mode_it_cannot_read_is_refused_with_its_name():
    from mlcore.images import _to_model_mode

    with pytest.raises(ImageRejected, match="colour mode.*HSV"):
        _to_model_mode(Image.new("HSV", (4, 4)))


@pytest.mark.parametrize("mode, channels", [("RGBA", 3), ("P", 3), ("CMYK", 3), ("I;16", 1), ("1", 1), ("LA", 3)])
def test_it_converts_every_mode_to_grey_or_rgb(mode, channels):
    image = Image.new("RGB", (8, 8), (10, 200, 30)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    decoded = decode_image(encode(image, fmt))
    assert decoded.image.mode == ("L" if channels == 1 else "RGB")


def test_transparent_pixels_become_white():
    decoded = decode_image(encode(Image.new("RGBA", (4, 4), (0, 0, 0, 0))))
    assert decoded.image.getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_images_are_scaled_to_eight_bits():
    image = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    assert decode_image(encode(image)).image.getpixel((0, 0)) == 255


def test_image_to_array_resizes_to_height_width_channels():
    image = decode_image(image_bytes("spot", 40, "PNG")).image
    assert image_to_array(image, (12, 20), 1).shape == (12, 20, 1)
    assert image_to_array(image, (64, 64), 3).shape == (64, 64, 3)
    assert image_to_array(image, (12, 20), 3).dtype == np.uint8


def test_model_input_keeps_raw_pixel_values():
    pixels = load_model_input(image_bytes("horizontal", 16, "PNG"), (16, 16), 1)
    assert pixels.max() > 150 and pixels.min() < 50
