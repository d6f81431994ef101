"""Reading an uploaded zip into a dataset: the work behind the ingestion task."""
import hashlib
import io
import zipfile

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from mlcore.archive import ArchiveLimits, ArchiveRejected, plan_zip, read_entries
from mlcore.images import ImageRejected, decode_image
from mlcore.splits import stratified_split

from .models import Image, ImageClass, Upload

BATCH = 200


def archive_limits():
    return ArchiveLimits(max_entries=settings.MAX_ZIP_ENTRIES, max_total_bytes=settings.MAX_ZIP_UNPACKED_BYTES)


def check_zip(fileobj):
    """Validate an uploaded zip from its directory alone, before it is stored.

    Returns the plan; raises ArchiveRejected with a message for the person.
    """
    plan = plan_zip(fileobj, archive_limits())
    if not plan.images:
        raise ArchiveRejected(
            "This zip holds no images in class folders. Put each class's images in a folder "
            "named after the class (for example cats/1.jpg and dogs/2.jpg) and zip those folders."
        )
    if len(plan.labels) < 2:
        raise ArchiveRejected(
            f"This zip has only one class folder (“{plan.labels[0]}”). A classifier needs at least "
            "two: put each class's images in a folder of its own."
        )
    return plan


def ingest_upload(upload: Upload):
    """Decode every planned image, store the good ones, report the others.

    Images are written in batches, so a failure midway keeps nothing half done:
    the images of this upload are removed again and the dataset is as before.
    """
    limits = archive_limits()
    dataset = upload.dataset
    skipped = []
    try:
        with upload.file.open("rb") as zip_file:
            plan = plan_zip(zip_file, limits)
            skipped.extend(plan.skipped)
            total = len(plan.images)
            upload.record_progress(0, total)
            classes = {c.name: c for c in dataset.classes.all()}
            pending, done = [], 0
            for planned, data, reason in read_entries(zip_file, plan, limits):
                done += 1
                if data is not None:
                    try:
                        decoded = decode_image(data, settings.MAX_IMAGE_PIXELS)
                    except ImageRejected as exc:
                        reason = str(exc)
                if reason:
                    skipped.append((planned.name, reason))
                else:
                    if planned.label not in classes:
                        classes[planned.label], _ = ImageClass.objects.get_or_create(dataset=dataset, name=planned.label)
                    pending.append(_store_image(upload, classes[planned.label], planned, data, decoded))
                if len(pending) >= BATCH or done == total:
                    Image.objects.bulk_create(pending)
                    pending = []
                    upload.record_progress(done, total)
    except (ArchiveRejected, zipfile.BadZipFile) as exc:
        _discard(upload)
        upload.fail(str(exc), skipped)
        return
    except Exception:
        _discard(upload)
        upload.fail("Something went wrong while reading this zip; nothing from it was kept.", skipped)
        raise
    with transaction.atomic():
        assign_splits(upload)
        upload.finish(upload.images.count(), [list(item) for item in skipped])


def _store_image(upload, image_class, planned, data, decoded):
    digest = hashlib.sha256(data).hexdigest()
    extension = {"JPEG": "jpg"}.get(decoded.format, decoded.format.lower())
    name = f"datasets/{upload.dataset_id}/{digest[:2]}/{digest}.{extension}"
    if not default_storage.exists(name):  # the same bytes twice are stored once
        name = default_storage.save(name, ContentFile(data))
    return Image(
        dataset_id=upload.dataset_id, image_class=image_class, upload=upload, file=name,
        original_name=planned.name, split=planned.split or "", width=decoded.width,
        height=decoded.height, channels=decoded.channels, sha256=digest,
    )


def _discard(upload):
    """Remove the rows this upload created; files shared with other images stay."""
    upload.images.all().delete()
    upload.dataset.classes.filter(images__isnull=True).delete()


def assign_splits(upload):
    """Give this upload's images a split: their folder's, else stratified and seeded."""
    dataset = upload.dataset
    images = list(upload.images.select_related("image_class").order_by("id"))
    given = [image.split or None for image in images]
    splits = stratified_split(
        [image.image_class.name for image in images], given,
        val_fraction=dataset.val_fraction, test_fraction=dataset.test_fraction, seed=dataset.split_seed,
    )
    for image, split in zip(images, splits):
        image.split = split
    Image.objects.bulk_update(images, ["split"], batch_size=1000)


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
