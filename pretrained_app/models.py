"""One download of a pretrained network's weights file, asked for on the staff page: a job
(dlsite/jobs.py) written by the worker as the bytes arrive and polled by the page."""
from django.conf import settings
from django.db import models
from django.utils import timezone

from dlsite.jobs import Job, JobQuerySet


class WeightsDownloadQuerySet(JobQuerySet):
    def active(self):
        """Queued, or running and heard from lately: a silent one no longer stops a new download of
        the same file."""
        return super().active().exclude(id__in=self.stale().values("id"))

    def latest_per_base(self):
        """{base name: its most recent download}."""
        latest = {}
        for download in self.order_by("-created_at", "-id"):
            latest.setdefault(download.base, download)
        return latest


class WeightsDownload(Job):
    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        RUNNING = "running", "Downloading"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    base = models.CharField(max_length=32, help_text="The network: a key of mlcore.pretrained.CATALOGUE.")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    bytes_done = models.BigIntegerField(default=0)
    bytes_total = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = WeightsDownloadQuerySet.as_manager()

    TASK = "pretrained.download_weights"
    AGAIN = "start the download again"
    OWNER = "requested_by"

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.base} download {self.id} ({self.status})"

    def fraction_done(self):
        return min(1.0, self.bytes_done / self.bytes_total) if self.bytes_total else 0.0

    def record_progress(self, done, total):
        self.record(bytes_done=done, bytes_total=total, heartbeat_at=timezone.now())

    def finish(self, error=""):
        status = self.Status.FAILED if error else self.Status.DONE
        self.record(status=status, error=error, finished_at=timezone.now())
