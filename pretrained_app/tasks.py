import logging

from celery import shared_task

from dlsite.heartbeat import Heartbeat
from dlsite.jobs import ClaimLost

from .jobs import run_download
from .models import WeightsDownload

logger = logging.getLogger(__name__)


@shared_task(name="pretrained.download_weights")
def download_weights(download_id: int):
    download = WeightsDownload.objects.claim(download_id)
    if download is None:  # a second delivery of a download already taken
        return
    try:
        with Heartbeat(download):
            run_download(download)
    except ClaimLost:
        logger.warning("Download %s: another attempt holds it now; this one stopped", download_id)
