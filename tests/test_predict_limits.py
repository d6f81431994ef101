"""The predict page decodes pictures in the web process with bounded memory: JPEGs at a reduced
scale, other formats only up to MAX_PREDICT_PIXELS (refused from the header), files only up to
MAX_PREDICT_FILE_BYTES; a refused file is explained and the others of the post are still classified."""
import io

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image, JpegImagePlugin

from mlcore.images import ImageTooLarge, decode_image, decode_reduced, image_to_array
from predict_app.services import predictor_for
from tests.conftest import new_run
from tests.images import image_bytes
from training_app.tasks import train


def encoded(width, height, fmt, mode="RGB"):
    """A smooth picture (a few hundred KB at most even when huge, as in the finding: 154 KB for 6,300²)."""
    x = np.linspace(0, 255, width, dtype=np.float32)[np.newaxis, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, np.newaxis]
    grey = ((x + y) / 2).astype(np.uint8)
    image = Image.fromarray(grey, "L").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture
def trained(shapes):
    run = new_run(shapes)
    train(run.id)
    run.refresh_from_db()
    return run


def post(client, run, files):
    response = client.post(reverse("predict:index"), {"run": run.pk, "images": files})
    assert response.status_code == 200
    return response.context["results"]


def small_png(name="spot.png"):
    return SimpleUploadedFile(name, image_bytes("spot", 16), "image/png")


def test_a_png_too_large_to_decode_here_is_refused_from_its_header_and_the_others_are_classified(alice, trained):
    big = SimpleUploadedFile("big.png", encoded(6300, 6300, "PNG", "L"), "image/png")
    refused, classified = post(alice, trained, [big, small_png()])
    assert refused == {"name": "big.png", "error": "This picture is too large (6300 × 6300 pixels); the limit is "
                                                   "16,000,000 pixels. Resize it and try again."}
    assert classified["label"] in {"horizontal", "spot", "vertical"}


def test_a_big_jpeg_is_decoded_at_a_reduced_scale(alice, trained, monkeypatch):
    asked = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        answer = draft(self, mode, size)
        asked.append((size, self.size))
        return answer

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    photo = SimpleUploadedFile("photo.jpg", encoded(4800, 3600, "JPEG"), "image/jpeg")  # over 16 M pixels as PNG
    (result,) = post(alice, trained, [photo])
    assert result["label"] in {"horizontal", "spot", "vertical"}
    assert asked == [((256, 256), (600, 450))]  # decoded at 1/8 scale: 270,000 pixels instead of 17 million


def test_a_file_over_the_size_limit_is_refused_and_the_others_are_classified(alice, trained, settings):
    settings.MAX_PREDICT_FILE_BYTES = 4_000
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise, "L").save(buffer, "PNG")  # about 4.2 KB
    heavy = SimpleUploadedFile("noise.png", buffer.getvalue(), "image/png")
    refused, classified = post(alice, trained, [heavy, small_png()])
    assert refused == {"name": "noise.png", "error": "This file is larger than 3.9 KB, the limit here. "
                                                     "Resize the picture or save it smaller, and try again."}
    assert classified["label"] in {"horizontal", "spot", "vertical"}


def test_the_pixel_limit_is_a_setting(alice, trained, settings):
    settings.MAX_PREDICT_PIXELS = 100 * 100
    wide = SimpleUploadedFile("wide.bmp", encoded(120, 100, "BMP"), "image/bmp")
    refused, classified = post(alice, trained, [wide, small_png()])
    assert refused["error"].startswith("This picture is too large (120 × 100 pixels); the limit is 10,000 pixels.")
    assert "label" in classified


def test_predictions_in_one_batch_are_those_of_each_picture_alone(trained):
    predictor = predictor_for(trained)
    images = [decode_image(image_bytes(kind, 16, seed=n)).image for n, kind in enumerate(["spot", "vertical", "spot"])]
    alone = np.stack([predictor.predict_image(image) for image in images])
    arrays = [image_to_array(image, predictor.info.image_size, predictor.info.channels) for image in images]
    np.testing.assert_allclose(predictor.predict_arrays(arrays, batch_size=2), alone, atol=1e-6)


# ---- the decoder


def test_decode_reduced_refuses_from_the_header_without_decoding(monkeypatch):
    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    huge = encoded(6300, 6300, "PNG", "L")
    monkeypatch.setattr(Image.Image, "load", no_decoding)
    with pytest.raises(ImageTooLarge) as caught:
        decode_reduced(huge, 256, 16_000_000)
    assert (caught.value.width, caught.value.height, caught.value.limit) == (6300, 6300, 16_000_000)


@pytest.mark.parametrize("fmt, mode, size, want", [
    ("JPEG", "RGB", (4000, 3000), (500, 375)),  # 1/8 scale while decoding, never less than 256 a side
    ("JPEG", "L", (1000, 800), (500, 400)),  # 1/2
    ("PNG", "RGB", (3000, 2000), (1000, 667)),  # decoded whole (6 M pixels), then box-averaged by 3
    ("GIF", "P", (2600, 2600), (520, 520)),  # a palette picture is averaged once it is grey
    ("PNG", "L", (300, 200), (300, 200)),  # small enough already
])
def test_decode_reduced_keeps_at_least_twice_the_side_needed(fmt, mode, size, want):
    decoded = decode_reduced(encoded(*size, fmt, mode), 256, 16_000_000)
    assert decoded.image.size == want and decoded.format == fmt and decoded.image.mode in ("L", "RGB")
