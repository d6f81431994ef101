import logging

from celery import shared_task
from django.utils import timezone

from datasets_app.sources import archive_limits
from mlcore.archive import ArchiveRejected

from dlsite.heartbeat import Heartbeat
from dlsite.jobs import ClaimLost, work_on_claimed

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


@shared_task(name="predict.suggest")
def suggest_classes(job_id: int):
    """A model's suggested class for every picture in a dataset's inbox (predict_app/assist.py)."""
    from .assist import suggest
    from .models import SuggestionJob

    def work(job, heartbeat):
        suggest(job, predictor_for(job.run), heartbeat)
        job.record(status=SuggestionJob.Status.DONE, finished_at=timezone.now())

    work_on_claimed(SuggestionJob, job_id, work, _suggestions_failed)


def _suggestions_failed(exc) -> str:
    if isinstance(exc, FileNotFoundError):
        return "The model's file is missing from the server, so it could not suggest classes."
    return "Something went wrong while the model looked at the pictures; try again."
