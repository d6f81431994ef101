from django.db import models
from django.utils import timezone

# What the clean-up removes, by kind, in the words of the staff disk page.
KINDS = {
    "orphans": "Files no row refers to",
    "zips": "Zips of uploads already read",
    "staging": "Folders of uploads that finished, failed or were abandoned",
    "models": "Models of deleted runs",
    "classifications": "Pictures of deleted classifications, zips of finished ones",
    "packs": "Packed images for training",
    "unsure": "Pictures models were not sure about, past their kept days",
}


class CleanupReport(models.Model):
    """What one clean-up removed (or, for a dry run, would have removed), for the staff disk page."""

    at = models.DateTimeField(default=timezone.now)
    dry_run = models.BooleanField(default=False)
    # {kind: {"count": files or folders, "bytes": bytes}}, kinds as in KINDS
    figures = models.JSONField(default=dict)
    # Uploads marked failed because nothing arrived for too long.
    abandoned_uploads = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0)

    class Meta:
        ordering = ["-at", "-id"]

    def rows(self):
        return [(label, self.figures.get(kind, {}).get("count", 0), self.figures.get(kind, {}).get("bytes", 0))
                for kind, label in KINDS.items()]

    @property
    def total_bytes(self):
        return sum(figure.get("bytes", 0) for figure in self.figures.values())
