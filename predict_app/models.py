"""Classifications: many pictures given to a model at once (a folder or a zip), classified by a worker
and kept, so that their owner can look through them, download them sorted, and reopen them later.

A classification is a job like an upload (docs/architecture.md, "Jobs: a row is the truth"): a worker
claims it, beats while it works, and every write is conditional on its claim; the reaper on beat
queues again one whose worker died. Its pictures are rows that say what the model said; a second
attempt classifies only the rows the first one left, so none is done twice.
"""
from django.conf import settings
from django.db import models, transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

from dlsite import bulk, storage
from dlsite.jobs import Job, JobQuerySet
from mlcore.familiarity import sure_in_words
from mlcore.words import count

FOLDER = "classifications"  # under the media root: classifications/<id>/ holds its pictures and thumbnails
DOUBTS = {"far": "unlike the pictures it learned from", "spread": "between several classes",
          "unlike": "more like its training pictures of another class"}


class Classification(Job):
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
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)

    objects = JobQuerySet.as_manager()

    TASK = "predict.classify_many"
    MAX_ATTEMPTS = "MAX_PREDICT_ATTEMPTS"
    ENDED_STATUSES = (Status.FAILED,)  # a retry goes on with the pictures not yet classified

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name

    @property
    def folder(self) -> str:
        """The storage folder of its pictures and thumbnails (dlsite/storage.py names)."""
        return f"{FOLDER}/{self.id}"

    @property
    def percent(self):
        return round(100 * self.done / self.total) if self.total else 0

    @property
    def is_finished(self):
        return self.status in self.ENDED

    def fraction_done(self):
        return self.done / self.total if self.total else 0.0

    def gave_up_message(self):
        return (f"The worker stopped {self.attempts} times before it finished. The pictures classified so far "
                "are kept; press Retry to classify the rest.")


    def record_progress(self, done: int, total: int) -> bool:
        self.done, self.total = done, total
        return bool(self.claimed_row().update(done=done, total=total))

    def finish(self, error: str = "") -> bool:
        status = self.Status.FAILED if error else self.Status.DONE
        return bool(self.claimed_row().update(
            status=status, error=error, finished_at=timezone.now(), heartbeat_at=None, done=self.done,
            total=self.total))

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
        if self.doubt or not self.is_unsure():
            return DOUBTS.get(self.doubt, "")
        return "less sure than the threshold"


@receiver(post_delete, sender=Classification, dispatch_uid="classification-files")
def _remove_classification_files(sender, instance, **kwargs):
    zip_name, folder = instance.zip_file.name, instance.folder

    def remove():
        if zip_name:
            storage.delete(zip_name)
        storage.delete_folder(folder)
    transaction.on_commit(remove)


# ---------------------------------------------------------------------------------------------
# Model-assisted labelling (predict_app/assist.py): a model's suggestion for every inbox picture, and
# the pictures a model was not sure about, kept with its owner's consent so that they can be labelled.

class SuggestionJob(Job):
    """A model classifying every picture in a dataset's inbox, on the default worker. Only the newest
    finished one of a dataset is shown; starting another removes the older ones."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        RUNNING = "running", "Suggesting"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="suggestion_jobs")
    dataset = models.ForeignKey("datasets_app.Dataset", on_delete=models.CASCADE, related_name="suggestion_jobs")
    run = models.ForeignKey("training_app.TrainingRun", on_delete=models.CASCADE, related_name="suggestion_jobs")
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)

    objects = JobQuerySet.as_manager()

    TASK = "predict.suggest"
    AGAIN = "choose the model again"

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "suggestion of classes"
        verbose_name_plural = "suggestions of classes"

    @property
    def percent(self):
        return round(100 * self.done / self.total) if self.total else 0

    def fraction_done(self):
        return self.done / self.total if self.total else 0.0

    @property
    def is_active(self):
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)

    def fail(self, message: str) -> None:
        self.record(status=self.Status.FAILED, finished_at=timezone.now(), error=message)


class Suggestion(models.Model):
    """What a model said of one inbox picture. `rank` is its place from least sure (1) to surest, fixed
    when the job ends, so the inbox can hand out pictures in that order a few at a time."""

    job = models.ForeignKey(SuggestionJob, on_delete=models.CASCADE, related_name="suggestions")
    image = models.ForeignKey("datasets_app.Image", on_delete=models.CASCADE, related_name="suggestions")
    label = models.CharField(max_length=255)
    confidence = models.FloatField()
    rank = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "image"], name="one_suggestion_per_picture")]
        indexes = [models.Index(fields=["job", "rank"]), models.Index(fields=["job", "confidence"])]


UNSURE_FOLDER = "unsure"  # under the media root: unsure/<run id>/<picture>


def unsure_path(picture, filename):
    return f"{UNSURE_FOLDER}/{picture.run_id}/{filename}"


class UnsurePicture(models.Model):
    """A picture a model answered "not sure" about (through the classify page or the API), kept because
    the model's owner turned on TrainingRun.keep_unsure; removed by the clean-up after UNSURE_KEEP_DAYS."""

    VIA = {"page": "the classify page", "api": "the API"}

    run = models.ForeignKey("training_app.TrainingRun", on_delete=models.CASCADE, related_name="unsure_pictures")
    name = models.CharField(max_length=255)
    file = models.FileField(upload_to=unsure_path, max_length=255)
    label = models.CharField(max_length=255)  # the class it would have given
    confidence = models.FloatField()
    doubt = models.CharField(max_length=8)  # mlcore/familiarity.py: far, spread or unlike
    reason = models.CharField(max_length=500)  # the doubt in words, as the page or the API said it
    via = models.CharField(max_length=8, default="page")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name

    @property
    def sure(self) -> str:
        return sure_in_words(self.confidence)

    @property
    def via_words(self) -> str:
        return self.VIA.get(self.via, self.via)


@receiver(post_delete, sender=UnsurePicture, dispatch_uid="unsure-picture-file")
def _remove_unsure_file(sender, instance, **kwargs):
    name = instance.file.name
    if name:
        transaction.on_commit(lambda: storage.delete(name))
