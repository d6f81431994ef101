"""What every job has in common: reading an upload, a training run, classifying many pictures, making
an export, downloading pretrained weights (docs/architecture.md, "Jobs: a row is the truth").

The row is the truth about a job; the broker's message carries only its id. A worker *claims* a queued
row with a conditional update (queued -> running, attempt + 1), so a second delivery of one message
finds nothing to claim. Every later write of that worker is fenced: conditional on the claim (running,
at this attempt, started then), so a worker that froze, and wakes after the reaper gave its job to
another attempt, changes nothing and stops (ClaimLost). A heartbeat thread (dlsite/heartbeat.py)
proves the worker alive; the reaper on beat queues again a running job whose beats stopped, and
fails it after its last attempt.

Each job is a subclass that says only what differs: its status words, its limits, what "done" means.
This module imports no app: the apps import it.
"""
import logging
from contextlib import contextmanager
from datetime import timedelta

from celery import current_app, shared_task
from django.apps import apps
from django.conf import settings
from django.db import models, transaction
from django.db.models import Count, F
from django.db.models.functions import Coalesce
from django.utils import timezone


logger = logging.getLogger(__name__)


class ClaimLost(Exception):
    """This attempt no longer holds its job: the reaper gave it to another attempt (or ended it), it
    was cancelled or deleted, while this one was frozen or cut off. The worker writes nothing more."""

    def __init__(self, job=None):
        super().__init__(f"{job.kind_name()} {job.id}: attempt {job.attempts} no longer holds it"
                         if job is not None else "Another attempt holds this job now")


def job_kinds():
    """Every kind of job on this site: the concrete subclasses of Job, in the order the apps load."""
    return [model for model in apps.get_models() if issubclass(model, Job)]


def stale_after() -> timedelta:
    """A running job silent for longer lost its worker: for the reapers and the queue page alike."""
    return timedelta(seconds=settings.HEARTBEAT_STALE_S)


def job_counts(now=None) -> list[dict]:
    """Per kind of job: how many wait for a worker, how many a worker has, and how many of those are
    silent (their worker died; the reaper acts soon). For the queue page and /healthz."""
    rows = []
    for kind in job_kinds():
        counts = dict(kind.objects.active().values_list("status").annotate(n=Count("id")))
        rows.append({"kind": kind._meta.model_name, "label": str(kind._meta.verbose_name_plural).capitalize(),
                     "queued": counts.get(kind.Status.QUEUED, 0), "running": counts.get(kind.Status.RUNNING, 0),
                     "silent": kind.objects.stale(now).count()})
    return rows


def work_on_claimed(kind, job_id, work, failed_in_words, expected=()):
    """A job's task, in the shape every job shares: claim the row of `kind` (nothing to do when a second
    delivery finds it taken, or it was deleted meanwhile), then `work(job, heartbeat)` while a heartbeat
    proves the worker alive. When another attempt took the job meanwhile (ClaimLost), nothing more is
    written. When `work` raises one of `expected` (exceptions whose text is already plain words), the job
    fails with that text; any other is logged and the job fails with `failed_in_words(exception)`. The
    job's `fail(words)` is asked only while this attempt holds it. Returns the job (None when not claimed)."""
    from .heartbeat import Heartbeat

    job = kind.objects.claim(job_id)
    if job is None:
        return None
    try:
        with Heartbeat(job) as heartbeat:
            work(job, heartbeat)
    except ClaimLost:
        logger.warning("%s %s: another attempt holds it now; this one stopped", kind.kind_name(), job_id)
    except expected as exc:
        _fail_if_held(job, str(exc))
    except Exception as exc:
        logger.exception("%s %s failed", kind.kind_name(), job_id)
        _fail_if_held(job, failed_in_words(exc))
    return job


def _fail_if_held(job, words: str) -> None:
    try:
        job.fail(words)
    except ClaimLost:  # another attempt holds it and will say for itself
        pass


class JobQuerySet(models.QuerySet):
    def visible_to(self, user):
        """The jobs `user` owns; none for someone not signed in."""
        return self.filter(**{self.model.OWNER: user}) if user.is_authenticated else self.none()

    def active(self):
        """Waiting or running."""
        return self.filter(status__in=[self.model.Status.QUEUED, self.model.Status.RUNNING])

    def claim(self, job_id):
        """Take a queued job for this worker; None when another delivery already has it, or it was
        cancelled or deleted meanwhile. The attempt number it sets is this worker's claim.
        `started_at` stays the first attempt's (a retry clears it)."""
        model = self.model
        now = timezone.now()
        claimed = self.filter(id=job_id, status=model.Status.QUEUED).update(
            status=model.Status.RUNNING, attempts=F("attempts") + 1, heartbeat_at=now,
            started_at=Coalesce(F("started_at"), now), resends=0, **model.fields_when_claimed())
        return self.get(id=job_id) if claimed else None

    def stale(self, now=None):
        """Running jobs not heard from within the stale limit: their worker died."""
        cutoff = (now or timezone.now()) - stale_after()
        return (self.filter(status=self.model.Status.RUNNING)
                .alias(last_sign=Coalesce("heartbeat_at", "started_at", "created_at")).filter(last_sign__lt=cutoff))

    def reap_stale(self):
        """Queue again the jobs whose worker stopped beating, or end them after their last attempt.
        Returns the ids to send to a worker again.

        Each change is conditional on the row as it was read, so two reapers at once (or a heartbeat
        arriving late) cannot both act on one job."""
        now = timezone.now()
        requeued = []
        for job in self.stale(now):
            unchanged = self.filter(id=job.id, heartbeat_at=job.heartbeat_at, **job.claim_fence())
            ending = job.end_when_stale()
            with transaction.atomic():
                if ending is not None:
                    status, error = ending
                    if unchanged.update(status=status, finished_at=now, **({"error": error} if error else {}),
                                        **job.fields_when_ended()):
                        job.ended_by_reaper()
                elif unchanged.update(status=self.model.Status.QUEUED, queued_at=now, **job.fields_when_requeued()):
                    requeued.append(job.id)
        return requeued

    def unclaimed(self, now=None):
        """Queued jobs sent to a worker longer than UNCLAIMED_AFTER_S ago that none has taken, while
        no worker of their queue did anything else of their kind or another (a queue that is busy is
        a line to wait in, not a lost message)."""
        now = now or timezone.now()
        cutoff = now - timedelta(seconds=settings.UNCLAIMED_AFTER_S)
        if queue_was_busy(self.model.QUEUE, cutoff):
            return self.none()
        return (self.filter(status=self.model.Status.QUEUED)
                .alias(sent_at=Coalesce("queued_at", "created_at")).filter(sent_at__lt=cutoff))

    def reap_unclaimed(self):
        """Send again the queued jobs no worker took (their message was lost: another site's worker
        on the same broker took it, or the filesystem broker lost it to a killed worker); after the
        last attempt, fail them with a message. The claim makes a second delivery harmless.
        Returns the ids to send again."""
        now = timezone.now()
        resent = []
        for job in self.unclaimed(now):
            unchanged = self.filter(id=job.id, status=self.model.Status.QUEUED, queued_at=job.queued_at,
                                    resends=job.resends)
            with transaction.atomic():
                if job.resends + 1 >= job.max_attempts():
                    if unchanged.update(status=self.model.Status.FAILED, finished_at=now,
                                        error=job.unclaimed_message(), **job.fields_when_ended()):
                        job.ended_by_reaper()
                elif unchanged.update(queued_at=now, resends=F("resends") + 1):
                    resent.append(job.id)
        return resent


def queue_was_busy(queue, since) -> bool:
    """Whether a worker of this Celery queue was heard from since then: working on a job, or ending
    one it had taken (a job cancelled or given up while it waited was no worker's)."""
    for kind in job_kinds():
        if kind.QUEUE == queue:
            heard = (models.Q(status=kind.Status.RUNNING, heartbeat_at__gte=since)
                     | models.Q(finished_at__gte=since, started_at__isnull=False))
            if kind.objects.filter(heard).exists():
                return True
    return False


class Job(models.Model):
    """A job's row. A subclass defines `status` with its `Status` choices, which hold at least QUEUED,
    RUNNING and FAILED (their words are the subclass's), and says what differs below."""

    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    # Written every HEARTBEAT_INTERVAL_S while a worker has it; silence means the worker died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    # When it was last sent to a worker (empty: when it was made), and how often it was sent again
    # since because no worker took it (the broker's message was lost).
    queued_at = models.DateTimeField(null=True, blank=True)
    resends = models.PositiveSmallIntegerField(default=0)

    objects = JobQuerySet.as_manager()

    # What a subclass says
    TASK = ""  # the name of the Celery task that does the job, given its id
    QUEUE = "default"  # the Celery queue CELERY_TASK_ROUTES sends that task to
    AGAIN = "press Retry"  # what a person does to try a failed job again, in words
    OWNER = "owner"  # the lookup from the job to the person it belongs to
    MAX_ATTEMPTS = "MAX_JOB_ATTEMPTS"  # the setting with its attempt limit
    ENDED_STATUSES = ()  # where a failed or cancelled job may be retried from; empty: no retry

    class Meta:
        abstract = True

    # Set by the heartbeat thread when its beat found the claim gone (dlsite/heartbeat.py).
    claim_lost = False

    @classmethod
    def kind_name(cls) -> str:
        return str(cls._meta.verbose_name).capitalize()

    @classmethod
    def max_attempts(cls) -> int:
        return getattr(settings, cls.MAX_ATTEMPTS)

    @classmethod
    def send(cls, job_id):
        """Send the job to a worker (again): its task's message carries only the id."""
        current_app.send_task(cls.TASK, args=[job_id])

    def last_heard(self):
        """The last sign of its worker: a beat, the claim, or its creation."""
        return self.heartbeat_at or self.started_at or self.created_at

    def is_silent(self, now=None) -> bool:
        """Running, and not heard from within the stale limit: its worker died (the reaper acts soon)."""
        return self.status == self.Status.RUNNING and self.last_heard() < (now or timezone.now()) - stale_after()

    # The claim and the fence

    def claim_fence(self) -> dict:
        """The row as this attempt holds it: a write conditional on it matches nothing once the reaper,
        a cancel or another attempt has the job (started_at tells a retried job's attempts apart)."""
        return {"status": self.Status.RUNNING, "attempts": self.attempts, "started_at": self.started_at}

    def claimed_row(self):
        return type(self)._default_manager.filter(id=self.id, **self.claim_fence())

    def holds_claim(self) -> bool:
        return not self.claim_lost and self.claimed_row().exists()

    def record(self, **fields):
        """Write `fields` to the row if this attempt still holds its claim; else raise ClaimLost."""
        if self.claim_lost:
            raise ClaimLost(self)
        if not self.claimed_row().update(**fields):
            self.claim_lost = True
            raise ClaimLost(self)
        for name, value in fields.items():
            setattr(self, name, value)

    @contextmanager
    def holding_claim(self):
        """A transaction in which this attempt still holds the job (its row locked), else ClaimLost."""
        with transaction.atomic():
            if self.claim_lost or not self.claimed_row().select_for_update().exists():
                self.claim_lost = True
                raise ClaimLost(self)
            yield

    # The reaper's choices; a subclass changes what it must

    @classmethod
    def fields_when_claimed(cls) -> dict:
        return {}

    def fields_when_requeued(self) -> dict:
        return {}

    def fields_when_ended(self) -> dict:
        return {}

    def end_when_stale(self):
        """(status, error) to end a job whose worker died, or None to queue it again."""
        if self.attempts >= self.max_attempts():
            return self.Status.FAILED, self.gave_up_message()
        return None

    def gave_up_message(self) -> str:
        return f"The worker stopped {self.attempts} times before it finished. To try again, {self.AGAIN}."

    def unclaimed_message(self) -> str:
        tries = self.resends + 1
        minutes = max(1, round(settings.UNCLAIMED_AFTER_S / 60))
        return (f"No worker took it: it was sent to the workers {tries} times, {minutes} min apart, and none "
                "answered. Check that the workers are running (the queue page lists them); then, "
                f"{self.AGAIN}.")

    def ended_by_reaper(self):
        """Called in the reaper's transaction once it ended the job: undo what the attempts wrote."""

    # Retry and cancel

    @property
    def can_retry(self) -> bool:
        return self.status in self.ENDED_STATUSES

    def fields_when_retried(self) -> dict:
        return {}

    def retry(self) -> bool:
        """Make a failed (or cancelled) job wait for a worker again, with its attempts counted anew;
        True when it did (the caller sends it)."""
        return bool(type(self)._default_manager.filter(id=self.id, status__in=self.ENDED_STATUSES).update(
            status=self.Status.QUEUED, error="", finished_at=None, started_at=None, attempts=0,
            queued_at=timezone.now(), resends=0, **self.fields_when_retried()))

    def cancel_queued(self, **fields) -> bool:
        """End a job no worker has taken yet; the worker then finds nothing to claim."""
        return bool(type(self)._default_manager.filter(id=self.id, status=self.Status.QUEUED).update(
            status=self.Status.CANCELLED, finished_at=timezone.now(), **fields))

    # How long is left

    def fraction_done(self) -> float:
        """From 0 to 1; 0 while nothing is known."""
        return 0.0

    def progress_started_at(self):
        """When the work that `fraction_done` measures began."""
        return self.started_at

    def seconds_left(self) -> float | None:
        """About how long the rest takes at the pace so far; None before there is a pace."""
        fraction, began = self.fraction_done(), self.progress_started_at()
        if self.status != self.Status.RUNNING or not began or fraction <= 0.0:
            return None
        elapsed = (timezone.now() - began).total_seconds()
        return max(0.0, elapsed / fraction - elapsed)


@shared_task(name="jobs.reap")
def reap_jobs():
    """Run by the beat process every REAPER_INTERVAL_S: every kind of job whose worker died, or that
    no worker took, goes to a worker again, or ends after its last attempt."""
    for kind in job_kinds():
        for job_id in kind.objects.reap_stale():
            logger.warning("%s %s lost its worker; sent to a worker again", kind.kind_name(), job_id)
            kind.send(job_id)
        for job_id in kind.objects.reap_unclaimed():
            logger.warning("%s %s waited for a worker too long (its message may be lost); sent again",
                           kind.kind_name(), job_id)
            kind.send(job_id)
