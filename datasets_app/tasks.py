import logging

from celery import shared_task

from .ingestion import ingest_upload
from .models import Upload

logger = logging.getLogger(__name__)


@shared_task(name="datasets.ingest_upload")
def ingest(upload_id: int):
    upload = Upload.objects.claim(upload_id)
    if upload is None:  # cancelled while waiting, or a second delivery of a job already taken
        return
    ingest_upload(upload)


@shared_task(name="datasets.reap_stale_uploads")
def reap_stale_uploads():
    """Run by the beat process every REAPER_INTERVAL_S: uploads whose worker died are read again."""
    for upload_id in Upload.objects.reap_stale():
        logger.warning("Upload %s lost its worker; queued to be read again", upload_id)
        ingest.delay(upload_id)
