"""One download of a pretrained network's weights file, asked for on the staff page: the row is the
truth about it, written by the worker as the bytes arrive and polled by the page."""
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

# A download writes its progress at least this often; one silent for longer lost its worker (or
# never found one), and no longer stops a new download of the same file.
STALE_AFTER = timedelta(minutes=10)


class WeightsDownloadQuerySet(models.QuerySet):
    def active(self):
        """Queued or running, and heard from lately."""
        return self.filter(status__in=[WeightsDownload.Status.QUEUED, WeightsDownload.Status.RUNNING],
                           updated_at__gte=timezone.now() - STALE_AFTER)

    def claim(self, download_id):
        """Take a queued download for this worker; None when another delivery already has it."""
        now = timezone.now()
        claimed = self.filter(id=download_id, status=WeightsDownload.Status.QUEUED).update(
            status=WeightsDownload.Status.RUNNING, started_at=now, updated_at=now)
        return self.get(id=download_id) if claimed else None

    def latest_per_base(self):
        """{base name: its most recent download}."""
        latest = {}
        for download in self.order_by("-created_at", "-id"):
            latest.setdefault(download.base, download)
        return latest


class WeightsDownload(models.Model):
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
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = WeightsDownloadQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.base} download {self.id} ({self.status})"

    def record_progress(self, done, total):
        now = timezone.now()
        WeightsDownload.objects.filter(id=self.id).update(bytes_done=done, bytes_total=total, updated_at=now)
        self.bytes_done, self.bytes_total, self.updated_at = done, total, now

    def finish(self, error=""):
        now = timezone.now()
        status = self.Status.FAILED if error else self.Status.DONE
        WeightsDownload.objects.filter(id=self.id).update(status=status, error=error, finished_at=now, updated_at=now)
        self.status, self.error, self.finished_at, self.updated_at = status, error, now, now
