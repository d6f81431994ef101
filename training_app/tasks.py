import logging

from celery import shared_task

from dlsite.heartbeat import Heartbeat
from dlsite.jobs import ClaimLost, work_on_claimed

from . import boosting, exporting
from .models import ModelExport, TrainingRun, TreesTrial
from .runner import train_run

logger = logging.getLogger(__name__)


@shared_task(name="training.train_run")
def train(run_id: int):
    run = TrainingRun.objects.claim(run_id)
    if run is None:  # cancelled while waiting, or a second delivery of a run already taken
        return
    try:
        with Heartbeat(run):
            train_run(run)
    except ClaimLost:
        _stop_without_writing(run)
    except Exception as exc:
        # Asked of the database too: a worker frozen inside a transaction wakes to find its session
        # ended (a database error) and its run, by now, another worker's.
        if run.claim_lost or not run.claimed_row().exists():  # or it tripped over that worker's files
            _stop_without_writing(run)
            return
        logger.exception("Training run %s failed", run_id)
        try:
            run.fail(_explain(exc))
        except ClaimLost:
            _stop_without_writing(run)


def _stop_without_writing(run):
    """The run is another worker's now (or ended): its row, metrics and model are left as they are."""
    logger.warning("Run %s: attempt %s lost its claim (the run went to another worker or ended); "
                   "stopped without writing", run.id, run.attempts)


def _explain(exc):
    """A failure in words a person can act on."""
    text = str(exc)
    # TensorFlow reports an exhausted GPU as ResourceExhaustedError, with "OOM when allocating ... on GPU".
    on_gpu = "GPU" in text or "CUDA" in text or "gpu" in text
    if type(exc).__name__ == "ResourceExhaustedError" or "OOM" in text or "out of memory" in text.lower():
        where = "The GPU ran out of memory" if on_gpu else "The worker ran out of memory"
        return f"{where}. Try a smaller batch size (half of it is a good start) or a smaller image size."
    return f"Training stopped with an error: {type(exc).__name__}: {text[:500]}"


def _stopped_with(exc) -> str:
    return f"It stopped with an error: {type(exc).__name__}: {str(exc)[:300]}"


@shared_task(name="exports.make")
def make_export(export_id: int):
    """Make and check one format of a run's model (training_app/exporting.py)."""
    work_on_claimed(ModelExport, export_id, lambda export, _: exporting.make(export),
                    lambda exc: f"The export stopped with an error: {type(exc).__name__}: {str(exc)[:300]}")


@shared_task(name="trees.fit")
def fit_trees(trial_id: int):
    """Boosted trees on a run's features, measured beside its network (training_app/boosting.py)."""
    work_on_claimed(TreesTrial, trial_id, lambda trial, _: boosting.make(trial), _stopped_with)


@shared_task(name="jobs.find_label_issues")
def find_label_issues(review_id: int):
    """On the default worker (jobs.* route there): rank a dataset's pictures by how likely their label is wrong
    (label_review.py). It lives here, not in datasets_app, as it reads a run's network or the pretrained one."""
    from .label_review import ReviewImpossible, find
    from .models import LabelReview

    work_on_claimed(LabelReview, review_id, lambda review, _: find(review),
                    lambda exc: "Something went wrong while looking for wrong labels; the server's log has the "
                                "details. Press “Find likely wrong labels” to try again.",
                    expected=ReviewImpossible)
