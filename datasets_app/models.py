from django.conf import settings
from django.db import models
from django.db.models import Count, F
from django.utils import timezone


class DatasetQuerySet(models.QuerySet):
    def visible_to(self, user):
        return self.filter(owner=user) if user.is_authenticated else self.none()


class Dataset(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    # How new images are split when no train/ val/ test/ folder says so.
    val_fraction = models.FloatField(default=0.1)
    test_fraction = models.FloatField(default=0.1)
    split_seed = models.IntegerField(default=1337)

    objects = DatasetQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name

    def class_counts(self):
        """[(class name, number of images)], classes with no images included."""
        return [(c.name, c.image_count) for c in self.classes.annotate(image_count=Count("images")).order_by("name")]

    def split_counts(self):
        counts = dict(self.images.values_list("split").annotate(n=Count("id")))
        return {split: counts.get(split, 0) for split in ("train", "val", "test")}

    def split_counts_by_class(self):
        """{class name: {split: count}} for the split table."""
        table = {name: {"train": 0, "val": 0, "test": 0} for name, _ in self.class_counts()}
        rows = self.images.values_list("image_class__name", "split").annotate(n=Count("id"))
        for name, split, count in rows:
            table[name][split] = count
        return table

    def usable_class_count(self):
        return self.classes.annotate(n=Count("images")).filter(n__gt=0).count()

    def channels(self):
        """1 when every image is grayscale, else 3."""
        return 3 if self.images.filter(channels=3).exists() else 1

    def typical_size(self):
        """The median of the images' shorter sides, for a sensible default input size."""
        sides = sorted(min(w, h) for w, h in self.images.values_list("width", "height")[:5000])
        return sides[len(sides) // 2] if sides else 32

    def is_busy(self):
        return self.uploads.filter(status__in=[Upload.Status.QUEUED, Upload.Status.RUNNING]).exists()


class ImageClass(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="classes")
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["dataset", "name"], name="unique_class_name")]

    def __str__(self):
        return self.name


class UploadQuerySet(models.QuerySet):
    def claim(self, upload_id):
        """Mark a queued upload as running; None if another delivery already has it."""
        claimed = self.filter(id=upload_id, status=Upload.Status.QUEUED).update(
            status=Upload.Status.RUNNING, started_at=timezone.now(), attempts=F("attempts") + 1
        )
        return self.get(id=upload_id) if claimed else None


class Upload(models.Model):
    """One zip file given to a dataset, and the job that ingests it."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting"
        RUNNING = "running", "Reading images"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="uploads")
    file = models.FileField(upload_to="uploads/%Y/%m/")
    original_name = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    # [[file name in the zip, reason it was not used], ...]
    skipped = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)

    objects = UploadQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    @property
    def percent(self):
        return round(100 * self.done / self.total) if self.total else 0

    @property
    def is_finished(self):
        return self.status in (self.Status.DONE, self.Status.FAILED)

    def record_progress(self, done, total):
        self.done, self.total = done, total
        Upload.objects.filter(id=self.id).update(done=done, total=total)

    def finish(self, accepted, skipped):
        self.status, self.accepted, self.skipped = self.Status.DONE, accepted, skipped
        self.finished_at = timezone.now()
        self.save(update_fields=["status", "accepted", "skipped", "finished_at", "done", "total"])

    def fail(self, message, skipped=()):
        self.status, self.error, self.skipped = self.Status.FAILED, message, list(skipped)
        self.finished_at = timezone.now()
        self.save(update_fields=["status", "error", "skipped", "finished_at"])


def image_upload_path(image, filename):
    return f"datasets/{image.dataset_id}/{filename}"


class Image(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="images")
    image_class = models.ForeignKey(ImageClass, on_delete=models.CASCADE, related_name="images")
    upload = models.ForeignKey(Upload, on_delete=models.SET_NULL, null=True, blank=True, related_name="images")
    file = models.FileField(upload_to=image_upload_path, max_length=255)
    original_name = models.CharField(max_length=500)
    split = models.CharField(max_length=5, choices=[("train", "Training"), ("val", "Validation"), ("test", "Test")],
                             default="train")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    channels = models.PositiveSmallIntegerField()
    sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["dataset", "split"]), models.Index(fields=["dataset", "sha256"])]

    def __str__(self):
        return self.original_name
