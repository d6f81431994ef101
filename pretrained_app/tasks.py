from celery import shared_task

from .jobs import run_download
from .models import WeightsDownload


@shared_task(name="pretrained.download_weights")
def download_weights(download_id: int):
    download = WeightsDownload.objects.claim(download_id)
    if download is None:  # a second delivery of a download already taken
        return
    run_download(download)
