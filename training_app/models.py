import math
import socket
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import F
from django.utils import timezone

from mlcore.models import PRESETS


class TrainingRunQuerySet(models.QuerySet):
    def visible_to(self, user):
        return self.filter(owner=user) if user.is_authenticated else self.none()

    def with_model(self):
        return self.filter(status__in=[TrainingRun.Status.SUCCEEDED, TrainingRun.Status.CANCELLED]).exclude(model_file="")

    def claim(self, run_id):
        """Take a queued run for this worker process; None when another delivery already has it.

        A conditional update, so two deliveries of the same message cannot both train.
        """
        now = timezone.now()
        claimed = self.filter(id=run_id, status=TrainingRun.Status.QUEUED).update(
            status=TrainingRun.Status.RUNNING, started_at=now, heartbeat_at=now,
            attempts=F("attempts") + 1, worker_host=socket.gethostname(),
        )
        return self.get(id=run_id) if claimed else None

    def reap_stale(self):
        """Runs whose worker stopped sending heartbeats: queue them again, or give up after
        MAX_TRAINING_ATTEMPTS. Returns the ids to send to a worker again.

        Each change is a conditional update on the row as it was read, so two reapers at
        once (or a heartbeat arriving late) cannot both act on one run.
        """
        now = timezone.now()
        cutoff = now - timedelta(seconds=settings.HEARTBEAT_STALE_S)
        requeued = []
        for run in self.filter(status=TrainingRun.Status.RUNNING, heartbeat_at__lt=cutoff):
            unchanged = self.filter(id=run.id, status=TrainingRun.Status.RUNNING, heartbeat_at=run.heartbeat_at)
            if run.cancel_requested:
                unchanged.update(status=TrainingRun.Status.CANCELLED, finished_at=now, phase="")
            elif run.attempts >= settings.MAX_TRAINING_ATTEMPTS:
                unchanged.update(status=TrainingRun.Status.FAILED, finished_at=now, phase="", error=(
                    f"The worker training this run stopped {run.attempts} times before it finished "
                    f"(the last time during epoch {run.epoch or 1}). This happens when the worker runs out "
                    "of memory or its machine restarts: try a smaller batch size or image size."))
            elif unchanged.update(status=TrainingRun.Status.QUEUED, worker_host="",
                                  phase="Waiting to continue: its worker stopped"):
                requeued.append(run.id)
        return requeued


class TrainingRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        RUNNING = "running", "Training"
        SUCCEEDED = "succeeded", "Finished"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Stopped"

    FINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="runs")
    dataset = models.ForeignKey("datasets_app.Dataset", on_delete=models.CASCADE, related_name="runs")
    # The frozen labels it learns from; later edits to the dataset never change them.
    version = models.ForeignKey("datasets_app.DatasetVersion", on_delete=models.PROTECT, null=True, blank=True,
                                related_name="runs")
    created_at = models.DateTimeField(default=timezone.now)

    # What to train
    preset = models.CharField(max_length=32, choices=list(PRESETS.items()))
    image_size = models.PositiveIntegerField(help_text="Images are resized to this many pixels square.")
    channels = models.PositiveSmallIntegerField(default=3)
    epochs = models.PositiveIntegerField()
    batch_size = models.PositiveIntegerField()
    learning_rate = models.FloatField()

    # The job
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    worker_host = models.CharField(max_length=255, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    # Where it is
    phase = models.CharField(max_length=64, blank=True)
    phase_done = models.PositiveIntegerField(default=0)
    phase_total = models.PositiveIntegerField(default=0)
    epoch = models.PositiveIntegerField(default=0)
    batch = models.PositiveIntegerField(default=0)
    batches_per_epoch = models.PositiveIntegerField(default=0)
    training_started_at = models.DateTimeField(null=True, blank=True)
    # Set when an attempt continued from a backup: the epochs already finished by earlier attempts.
    resumed_after_epoch = models.PositiveIntegerField(null=True, blank=True)

    # What came out
    class_names = models.JSONField(default=list, blank=True)
    train_count = models.PositiveIntegerField(default=0)
    val_count = models.PositiveIntegerField(default=0)
    test_count = models.PositiveIntegerField(default=0)
    test_accuracy = models.FloatField(null=True, blank=True)
    test_loss = models.FloatField(null=True, blank=True)
    confusion = models.JSONField(null=True, blank=True)
    per_class = models.JSONField(null=True, blank=True)
    # [[image id, predicted class index, probability], ...], most confident first
    wrong = models.JSONField(null=True, blank=True)
    model_file = models.CharField(max_length=255, blank=True, help_text="Relative to MEDIA_ROOT")

    objects = TrainingRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Run {self.id} on {self.dataset}"

    @property
    def is_final(self):
        return self.status in self.FINAL

    @property
    def has_model(self):
        return bool(self.model_file) and self.status in (self.Status.SUCCEEDED, self.Status.CANCELLED)

    @property
    def model_path(self):
        return settings.MEDIA_ROOT / self.model_file

    @property
    def model_folder(self):
        return settings.MODELS_DIR / str(self.id)

    @property
    def test_accuracy_percent(self):
        return None if self.test_accuracy is None else round(100 * self.test_accuracy, 1)

    def fraction_done(self):
        """Of the training itself, from 0 to 1."""
        if self.status == self.Status.SUCCEEDED:
            return 1.0
        if not self.batches_per_epoch or not self.epoch:
            return 0.0
        total = self.epochs * self.batches_per_epoch
        return min(1.0, ((self.epoch - 1) * self.batches_per_epoch + self.batch) / total)

    def seconds_left(self):
        fraction = self.fraction_done()
        if self.status != self.Status.RUNNING or not self.training_started_at or fraction <= 0.0:
            return None
        elapsed = (timezone.now() - self.training_started_at).total_seconds()
        return max(0.0, elapsed / fraction - elapsed)

    # Writes from the worker. Each is one short UPDATE, so the web never waits on them.

    def _update(self, **fields):
        fields["heartbeat_at"] = timezone.now()
        for name, value in fields.items():
            setattr(self, name, value)
        TrainingRun.objects.filter(id=self.id).update(**fields)

    def record_phase(self, phase, done=0, total=0):
        self._update(phase=phase, phase_done=done, phase_total=total)

    def record_batch(self, epoch, batch, batches_per_epoch):
        if self.training_started_at is None:
            self._update(training_started_at=timezone.now(), phase="Training")
        self._update(epoch=epoch, batch=batch, batches_per_epoch=batches_per_epoch)

    def record_epoch(self, epoch, logs, seconds):
        EpochMetric.objects.update_or_create(run=self, epoch=epoch, defaults={
            "loss": _finite(logs.get("loss")), "accuracy": _finite(logs.get("accuracy")),
            "val_loss": _finite(logs.get("val_loss")), "val_accuracy": _finite(logs.get("val_accuracy")),
            "seconds": seconds,
        })
        self._update(epoch=epoch)

    def cancel_is_requested(self):
        return TrainingRun.objects.filter(id=self.id, cancel_requested=True).exists()

    def request_cancel(self):
        """Stop a run: a waiting one at once, a running one at its next batch."""
        if TrainingRun.objects.filter(id=self.id, status=self.Status.QUEUED).update(
                status=self.Status.CANCELLED, finished_at=timezone.now(), phase=""):
            return
        TrainingRun.objects.filter(id=self.id, status=self.Status.RUNNING).update(cancel_requested=True)

    def finish(self, status, **fields):
        self._update(status=status, finished_at=timezone.now(), phase="", **fields)

    def fail(self, message):
        self.finish(self.Status.FAILED, error=message)


def _finite(value):
    return float(value) if value is not None and math.isfinite(value) else None


class EpochMetric(models.Model):
    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="epoch_metrics")
    epoch = models.PositiveIntegerField()
    loss = models.FloatField(null=True)
    accuracy = models.FloatField(null=True)
    val_loss = models.FloatField(null=True)
    val_accuracy = models.FloatField(null=True)
    seconds = models.FloatField(default=0)

    class Meta:
        ordering = ["epoch"]
        constraints = [models.UniqueConstraint(fields=["run", "epoch"], name="one_row_per_epoch")]
