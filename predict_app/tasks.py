import logging

from celery import shared_task

from datasets_app.sources import archive_limits
from mlcore.archive import ArchiveRejected

from dlsite.heartbeat import Heartbeat
from dlsite.jobs import ClaimLost

from .many import classify
from .models import Classification
from .services import predictor_for

logger = logging.getLogger(__name__)


@shared_task(name="predict.classify_many")
def classify_many(classification_id: int):
    job = Classification.objects.claim(classification_id)
    if job is None:  # a second delivery of a job already taken, or one deleted while it waited
        return
    try:
        with Heartbeat(job) as heartbeat:
            classify(job, predictor_for(job.run), archive_limits(), heartbeat)
    except ClaimLost:
        logger.warning("Classification %s: another attempt holds it now; this one stopped", job.id)
        return
    except ArchiveRejected as exc:
        job.finish(error=str(exc))
        return
    except FileNotFoundError:
        job.finish(error="The model of this classification is missing from the server, so nothing more "
                         "could be classified.")
        return
    job.finish()
