"""What a person keeps in datasets, as the per-person limits count it (dlsite/quotas.py): registered
there in DatasetsAppConfig.ready, so that the apps checking a limit need not import this one."""
from dlsite.disk import kept_file_size, kept_folder_size

from .models import STAGING_ROOT, Image, Upload


def images_stored(user) -> int:
    return Image.objects.filter(dataset__owner=user).count()


def bytes_stored(user) -> int:
    """Bytes of one person's kept images (thumbnails included) and uploads (zips and received folders),
    listed through the storage (the local folder or a bucket)."""
    total = sum(kept_folder_size(f"datasets/{id}") for id in user.datasets.values_list("id", flat=True))
    uploads = Upload.objects.filter(dataset__owner=user)
    total += sum(kept_file_size(name) for name in uploads.exclude(file="").values_list("file", flat=True))
    total += sum(kept_folder_size(f"{STAGING_ROOT}/{id}")
                 for id in uploads.filter(kind=Upload.Kind.FOLDER).exclude(status=Upload.Status.DONE)
                 .values_list("id", flat=True))
    return total
