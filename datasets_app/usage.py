"""What a person keeps in datasets, as the per-person limits count it (dlsite/quotas.py): registered
there in DatasetsAppConfig.ready, so that the apps checking a limit need not import this one.
Sizes come from the storage's listing (dlsite/storage.py), the local folder's or the bucket's."""
from django.core.files.storage import default_storage

from dlsite import storage

from .models import Dataset, Image, Upload


def images_stored(user) -> int:
    return Image.objects.filter(dataset__owner=user).count()


def bytes_stored(user) -> int:
    """Bytes of one person's stored images (thumbnails included) and uploads (zips and received folders)."""
    datasets = Dataset.objects.filter(owner=user)
    total = sum(_folder_bytes(dataset.media_folder) for dataset in datasets.only("id"))
    uploads = Upload.objects.filter(dataset__owner=user)
    total += sum(_file_bytes(name) for name in uploads.exclude(file="").values_list("file", flat=True))
    total += sum(_folder_bytes(upload.staging_folder())
                 for upload in uploads.filter(kind=Upload.Kind.FOLDER).exclude(status=Upload.Status.DONE).only("id"))
    return total


def _folder_bytes(prefix: str) -> int:
    return sum(kept.size for kept in storage.listing(prefix))


def _file_bytes(name: str) -> int:
    try:
        return default_storage.size(name)
    except (FileNotFoundError, OSError):  # removed meanwhile
        return 0
