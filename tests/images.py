"""Small real image files and zips made on the fly, so the suite needs no data folder."""
import io
import zipfile

import numpy as np
from PIL import Image


def image_bytes(kind="stripes", size=16, fmt="PNG", mode="L", seed=0):
    """A picture whose class can be learned from its pixels: horizontal stripes,
    vertical stripes, or a bright centre, with a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    if kind == "horizontal":
        pixels = (y // 2 % 2) * 200
    elif kind == "vertical":
        pixels = (x // 2 % 2) * 200
    else:
        pixels = (((x - size / 2) ** 2 + (y - size / 2) ** 2) < (size / 3) ** 2) * 200
    pixels = np.clip(pixels + rng.integers(0, 40, pixels.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "L").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


CLASSES = ("horizontal", "vertical", "spot")


def make_zip(files):
    """files: {name in the zip: bytes}. The same files always give the same bytes (a fixed date in each
    entry): a test parametrized with a zip is named by its bytes, and pytest-xdist's processes, each
    collecting the tests at its own second, must agree on the names."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            entry.external_attr = 0o600 << 16  # what writestr gives a name
            archive.writestr(entry, data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def labelled_zip(per_class=12, classes=CLASSES, root="shapes", size=16, extra=None):
    """A zip of class folders, in the layout people upload: root/class/n.png."""
    files = {}
    for c, name in enumerate(classes):
        for i in range(per_class):
            fmt = ("PNG", "JPEG", "BMP", "GIF")[i % 4]
            files[f"{root}/{name}/{i}.{fmt.lower()}"] = image_bytes(name, size, fmt, seed=c * 1000 + i)
    files.update(extra or {})
    return make_zip(files)
