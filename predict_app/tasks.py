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


@shared_task(name="predict.reap_stale_classifications")
def reap_stale_classifications():
    """Run by the beat process every REAPER_INTERVAL_S: classifications whose worker died go on."""
    for classification_id in Classification.objects.reap_stale():
        logger.warning("Classification %s lost its worker; queued to go on", classification_id)
        classify_many.delay(classification_id)
