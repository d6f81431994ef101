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


@shared_task(name="jobs.find_label_issues")
def find_label_issues(review_id: int):
    """On the default worker (jobs.* route there): rank a dataset's pictures by how likely their label is wrong."""
    from dlsite.heartbeat import Heartbeat
    from dlsite.jobs import ClaimLost

    from .label_review import ReviewImpossible, find
    from .models import LabelReview

    review = LabelReview.objects.claim(review_id)
    if review is None:
        return
    try:
        with Heartbeat(review):
            find(review)
    except ClaimLost:
        logger.warning("Label review %s: another attempt holds it now; this one stopped", review_id)
    except ReviewImpossible as exc:
        review.fail(str(exc))
    except Exception:
        logger.exception("Label review %s failed", review_id)
        review.fail("Something went wrong while looking for wrong labels; the server's log has the details. "
                    "Press “Find likely wrong labels” to try again.")
