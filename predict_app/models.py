"""Classifications: many pictures given to a model at once (a folder or a zip), classified by a worker
and kept, so that their owner can look through them, download them sorted, and reopen them later.

A classification is a job like an upload (docs/architecture.md, "Jobs: a row is the truth"): a worker
claims it, beats while it works, and every write is conditional on its claim; the reaper on beat
queues again one whose worker died. Its pictures are rows that say what the model said; a second
attempt classifies only the rows the first one left, so none is done twice.
"""
import shutil
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import models, transaction
from django.db.models import F
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

from dlsite import bulk
from mlcore.familiarity import sure_in_words
from mlcore.words import count

FOLDER = "classifications"  # under the media root: classifications/<id>/ holds its pictures and thumbnails
DOUBTS = {"far": "unlike the pictures it learned from", "spread": "between several classes"}


class ClassificationQuerySet(models.QuerySet):
    def visible_to(self, user):
        return self.filter(owner=user) if user.is_authenticated else self.none()

    def claim(self, classification_id):
        """Take a queued classification for this worker; None when another delivery already has it."""
        now = timezone.now()
        claimed = self.filter(id=classification_id, status=Classification.Status.QUEUED).update(
            status=Classification.Status.RUNNING, attempts=F("attempts") + 1, heartbeat_at=now,
            started_at=models.functions.Coalesce(F("started_at"), now))
        return self.get(id=classification_id) if claimed else None

    def reap_stale(self):
        """Classifications whose worker stopped beating: queued again (they go on where it stopped), or
        failed after MAX_PREDICT_ATTEMPTS. Returns the ids to send to a worker again."""
        now = timezone.now()
        cutoff = now - timedelta(seconds=settings.HEARTBEAT_STALE_S)
        requeued = []
        for job in self.filter(status=Classification.Status.RUNNING, heartbeat_at__lt=cutoff):
            unchanged = self.filter(id=job.id, status=Classification.Status.RUNNING, heartbeat_at=job.heartbeat_at)
            if job.attempts >= settings.MAX_PREDICT_ATTEMPTS:
                unchanged.update(status=Classification.Status.FAILED, finished_at=now, error=(
                    f"The worker stopped {job.attempts} times before it finished. The pictures classified so far "
                    "are kept; press Retry to classify the rest."))
            elif unchanged.update(status=Classification.Status.QUEUED):
                requeued.append(job.id)
        return requeued


class Classification(models.Model):
    class Status(models.TextChoices):
        RECEIVING = "receiving", "Receiving pictures"
        QUEUED = "queued", "Waiting"
        RUNNING = "running", "Classifying"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    ENDED = (Status.DONE, Status.FAILED)

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="classifications")
    run = models.ForeignKey("training_app.TrainingRun", on_delete=models.CASCADE, related_name="classifications")
    name = models.CharField(max_length=255)  # the folder's or the zip's name
    created_at = models.DateTimeField(default=timezone.now)
    # A zip is read by the worker; a folder's pictures arrive in batches, each stored as it comes.
    zip_file = models.FileField(upload_to="classifications/zips/", max_length=255, blank=True)
    expected_batches = models.PositiveIntegerField(default=0)
    received_batches = models.JSONField(default=list, blank=True)
    fingerprint = models.CharField(max_length=64, blank=True)  # the browser's hash of the folder's file list
    # Below this confidence a picture counts as "unsure"; its owner sets it on the results page.
    unsure_below = models.FloatField(default=0.6)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    objects = ClassificationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name

    @property
    def folder(self) -> Path:
        return Path(settings.MEDIA_ROOT) / FOLDER / str(self.id)

    @property
    def percent(self):
        return round(100 * self.done / self.total) if self.total else 0

    @property
    def is_finished(self):
        return self.status in self.ENDED

    def seconds_left(self) -> float | None:
        """About how long the rest takes at the pace so far; None before the first pictures are done."""
        if self.status != self.Status.RUNNING or not self.done or not self.total or self.started_at is None:
            return None
        elapsed = (timezone.now() - self.started_at).total_seconds()
        return max(0.0, elapsed * (self.total - self.done) / self.done)

    def claim_fence(self) -> dict:
        """The row as this attempt holds it: writes conditional on it stop matching once another
        attempt has it."""
        return {"status": self.Status.RUNNING, "attempts": self.attempts}

    def holds_claim(self) -> bool:
        return Classification.objects.filter(id=self.id, **self.claim_fence()).exists()

    def record_progress(self, done: int, total: int) -> bool:
        self.done, self.total = done, total
        return bool(Classification.objects.filter(id=self.id, **self.claim_fence()).update(done=done, total=total))

    def finish(self, error: str = "") -> bool:
        status = self.Status.FAILED if error else self.Status.DONE
        return bool(Classification.objects.filter(id=self.id, **self.claim_fence()).update(
            status=status, error=error, finished_at=timezone.now(), heartbeat_at=None, done=self.done,
            total=self.total))

    def retry(self) -> bool:
        """Queue a failed classification again: it goes on with the pictures not yet classified."""
        return bool(Classification.objects.filter(id=self.id, status=self.Status.FAILED).update(
            status=self.Status.QUEUED, error="", attempts=0, finished_at=None))

    def unsure_pictures(self):
        """The pictures the model doubted (mlcore/familiarity.py), and those below the owner's threshold."""
        return self.images.exclude(label="").filter(models.Q(confidence__lt=self.unsure_below) | ~models.Q(doubt=""))

    def class_counts(self) -> list[tuple[str, int]]:
        """(class, pictures the model gave it) for every class of the model, most first."""
        found = dict(self.images.exclude(label="").values_list("label").annotate(n=models.Count("id")))
        return sorted(((name, found.get(name, 0)) for name in self.run.class_names), key=lambda item: -item[1])

    def summary(self) -> str:
        unusable = self.images.exclude(error="").count()
        text = count(self.images.count(), "picture")
        return text + (f", {count(unusable, 'file')} could not be used" if unusable else "")


def picture_path(image, filename):
    return f"{FOLDER}/{image.classification_id}/{filename}"


class ClassifiedImageQuerySet(models.QuerySet):
    COLUMNS = ("classification", "name", "batch", "file", "thumbnail", "label", "confidence", "probabilities",
               "doubt", "error")
    RESULT_FIELDS = ("label", "confidence", "doubt", "probabilities", "error", "thumbnail")

    # Not bulk_create and bulk_update: their Python cost more than the rest of a 10,000-picture job
    # (bulk_update's CASE expressions alone, 1 s per 256 rows) (dlsite/bulk.py).
    def insert(self, rows):
        bulk.insert(ClassifiedImage, self.COLUMNS, bulk.prepared(rows, self.COLUMNS))

    def write_results(self, rows):
        """Store what the model said of `rows` (RESULT_FIELDS)."""
        bulk.update(rows, self.RESULT_FIELDS)


class ClassifiedImage(models.Model):
    classification = models.ForeignKey(Classification, on_delete=models.CASCADE, related_name="images")
    name = models.CharField(max_length=1000)  # its path inside the folder or the zip
    batch = models.PositiveIntegerField(default=0)  # the part of a folder it came in
    file = models.FileField(upload_to=picture_path, max_length=255)
    thumbnail = models.CharField(max_length=255, blank=True)
    # What the model said: the class, how sure it was, and every class's probability in the model's
    # class order. Empty until classified, and for a file that could not be used (`error` says why).
    label = models.CharField(max_length=255, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    probabilities = models.JSONField(null=True, blank=True)
    # "far" (unlike the pictures the model learned from) or "spread" (between classes): mlcore/familiarity.py
    doubt = models.CharField(max_length=8, blank=True)
    error = models.CharField(max_length=300, blank=True)

    objects = ClassifiedImageQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["classification", "label"]),
                   models.Index(fields=["classification", "confidence"])]

    def __str__(self):
        return self.name

    @property
    def is_pending(self):
        return self.confidence is None and not self.error

    def is_unsure(self) -> bool:
        return bool(self.doubt) or (self.confidence is not None and self.confidence < self.classification.unsure_below)

    @property
    def sure(self) -> str:
        return sure_in_words(self.confidence) if self.confidence is not None else ""

    @property
    def doubt_in_words(self) -> str:
        return DOUBTS.get(self.doubt, "")


@receiver(post_delete, sender=Classification, dispatch_uid="classification-files")
def _remove_classification_files(sender, instance, **kwargs):
    zip_name, folder = instance.zip_file.name, instance.folder

    def remove():
        if zip_name:
            instance.zip_file.storage.delete(zip_name)
        shutil.rmtree(folder, ignore_errors=True)
    transaction.on_commit(remove)
