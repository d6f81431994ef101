"""What a person keeps in datasets, as the per-person limits count it (dlsite/quotas.py): registered
there in DatasetsAppConfig.ready, so that the apps checking a limit need not import this one."""
from pathlib import Path

from django.conf import settings

from dlsite.disk import tree_size

from .models import STAGING_ROOT, Image, Upload


def images_stored(user) -> int:
    return Image.objects.filter(dataset__owner=user).count()


def bytes_stored(user) -> int:
    """Bytes of one person's stored images (thumbnails included) and uploads (zips and received folders)."""
    media = Path(settings.MEDIA_ROOT)
    total = sum(tree_size(media / "datasets" / str(id)) for id in user.datasets.values_list("id", flat=True))
    uploads = Upload.objects.filter(dataset__owner=user)
    total += sum(tree_size(media / name) for name in uploads.exclude(file="").values_list("file", flat=True))
    total += sum(tree_size(media / STAGING_ROOT / str(id))
                 for id in uploads.filter(kind=Upload.Kind.FOLDER).exclude(status=Upload.Status.DONE)
                 .values_list("id", flat=True))
    return total
