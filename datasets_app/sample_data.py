"""The sample data a new user can start from, made from what the installed packages ship (nothing is
downloaded)."""
import io
import zipfile


def sample_digits_zip() -> bytes:
    """scikit-learn's bundled handwritten digits (1,797 images, 8 x 8 pixels) as a zip of class folders."""
    import numpy as np
    from PIL import Image as PILImage
    from sklearn.datasets import load_digits

    digits = load_digits()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index, (pixels, target) in enumerate(zip(digits.images, digits.target)):
            png = io.BytesIO()
            PILImage.fromarray((pixels * (255 / 16)).round().astype(np.uint8), "L").save(png, "PNG")
            archive.writestr(f"digits/{target}/{index:04d}.png", png.getvalue())
    return buffer.getvalue()
