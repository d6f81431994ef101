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
