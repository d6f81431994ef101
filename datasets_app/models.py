from pathlib import Path

from django.conf import settings
from django.db import models, transaction
from django.db.models import Count
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

from dlsite import storage
from dlsite.jobs import Job, JobQuerySet
from mlcore.words import count

SPLITS = ("train", "val", "test")
SPLIT_CHOICES = [("train", "Training"), ("val", "Validation"), ("test", "Test")]
FEW_IMAGES = 10  # fewer images in a class than this earns a warning
IMBALANCE_RATIO = 5  # the largest class this many times the smallest earns a warning
STAGING_ROOT = "uploads/folders"  # in the storage: folders sent by browsers, until read


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

    def trainable_images(self):
        """The images a run learns from: labelled, and not waiting for a label conflict to be settled."""
        return self.images.filter(image_class__isnull=False, label_conflict=False)

    def class_counts(self):
        """[(class name, number of trainable images)], classes with no images included.

        Kept on the instance: a page asks several times, and at 70,000 images each count costs 25 ms.
        Fetch the dataset again after changing labels."""
        if getattr(self, "_class_counts", None) is None:
            counted = Count("images", filter=models.Q(images__label_conflict=False))
            self._class_counts = [(c.name, c.image_count)
                                  for c in self.classes.annotate(image_count=counted).order_by("name")]
        return self._class_counts

    def refresh_from_db(self, *args, **kwargs):
        self._class_counts = None
        super().refresh_from_db(*args, **kwargs)

    def split_counts(self):
        counts = dict(self.trainable_images().values_list("split").annotate(n=Count("id")))
        return {split: counts.get(split, 0) for split in SPLITS}

    def split_counts_by_class(self):
        """{class name: {split: count}} for the split table and the per-split histogram."""
        table = {name: dict.fromkeys(SPLITS, 0) for name, _ in self.class_counts()}
        rows = self.trainable_images().values_list("image_class__name", "split").annotate(n=Count("id"))
        for name, split, n in rows:
            table[name][split] = n
        return table

    def usable_class_count(self):
        return sum(1 for _, n in self.class_counts() if n)

    def unlabelled_count(self):
        return self.images.filter(image_class__isnull=True).count()

    def conflict_count(self):
        """Pictures filed under more than one class: each counts once however many copies it has, as
        the conflicts page counts them ("1 picture to settle", not the 2 copies of it)."""
        return self.images.filter(label_conflict=True).order_by().values("sha256").distinct().count()

    def channels(self):
        """1 when every image is grayscale, else 3."""
        return 3 if self.images.filter(channels=3).exists() else 1

    def size_distribution(self):
        """[(width, height, number of images)], most common first."""
        rows = self.images.values_list("width", "height").annotate(n=Count("id")).order_by("-n", "width", "height")
        return list(rows)

    def warnings(self):
        """Plain-words problems a newcomer should fix before training, as (kind, message)."""
        found = []
        counts = [(name, n) for name, n in self.class_counts() if n]
        if len(counts) < 2:
            found.append(("classes", "A classifier needs images of at least two classes; this dataset has "
                          f"{len(counts)}. Add images or label the ones in the inbox."))
        for name, n in counts:
            if n < FEW_IMAGES:
                found.append(("few", f"The class “{name}” has only {count(n, 'image')}. "
                              f"Aim for at least {FEW_IMAGES}, better a hundred: the model learns little from so few."))
        if len(counts) >= 2:
            (small_name, small), (large_name, large) = min(counts, key=lambda c: c[1]), max(counts, key=lambda c: c[1])
            if large >= IMBALANCE_RATIO * small:
                found.append(("imbalance", f"The classes are very unequal: “{large_name}” has {large} images, "
                              f"“{small_name}” only {small}. The model will lean towards the big classes; "
                              "add images to the small ones if you can."))
        kinds = set(self.images.values_list("channels", flat=True).distinct())
        if kinds == {1, 3}:
            found.append(("colour", "Some images are grayscale and some are in colour. If colour does not matter, "
                          "train in grayscale; otherwise the model may learn “grey means class X”."))
        conflicts = self.conflict_count()
        if conflicts:
            found.append(("conflict", f"{count(conflicts, 'picture is', 'pictures are')} filed under more than one class. "
                          "Choose the right class for each; until then they are left out of training."))
        unlabelled = self.unlabelled_count()
        if unlabelled:
            found.append(("inbox", f"{count(unlabelled, 'image has', 'images have')} no class yet; "
                          "label them in the inbox."))
        return found

    def typical_size(self):
        """The median of the images' shorter sides, for a sensible default input size."""
        sides = sorted(min(w, h) for w, h in self.images.values_list("width", "height")[:5000])
        return sides[len(sides) // 2] if sides else 32

    def training_facts(self):
        """What mlcore.defaults needs to suggest training settings for this dataset."""
        from mlcore.defaults import DatasetFacts

        counts = [n for _, n in self.class_counts() if n]
        return DatasetFacts(images=sum(counts), classes=len(counts), typical_side=self.typical_size(),
                            channels=self.channels(), largest_class=max(counts, default=0),
                            smallest_class=min(counts, default=0), training_images=self.split_counts()["train"])

    def is_busy(self):
        return self.uploads.filter(status__in=Upload.ACTIVE).exists()

    def in_use(self) -> list[str]:
        """What still works on this dataset, in plain words: the uploads being read and the runs
        waiting or training. Empty when it can be deleted."""
        uploads = [f"the upload “{u.original_name}” is {u.get_status_display().lower()}"
                   for u in self.uploads.filter(status__in=Upload.ACTIVE)]
        runs = [f"the training run #{run.id} is {run.get_status_display().lower()}"
                for run in self.runs.active()]
        return uploads + runs

    def delete_with_runs(self):
        """Delete the dataset with its finished runs (a run's version is protected, so runs go first)
        in one transaction; the files go once it commits (the post_delete receivers below)."""
        with transaction.atomic():
            self.runs.all().delete()
            self.delete()

    @property
    def media_folder(self) -> str:
        """The storage folder of its images and thumbnails (content-addressed:
        datasets/<id>/<sha[:2]>/..., thumbs/...)."""
        return f"datasets/{self.id}"

    @property
    def versions_folder(self) -> str:
        """The storage folder of its versions' manifests."""
        return f"versions/{self.id}"


class ImageClass(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="classes")
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["dataset", "name"], name="unique_class_name")]

    def __str__(self):
        return self.name


class Upload(Job):
    """One batch of files given to a dataset (a zip, a folder from the browser, or a
    folder on the server), and the job that ingests it."""

    class Kind(models.TextChoices):
        ZIP = "zip", "Zip file"
        FOLDER = "folder", "Folder"
        SERVER = "server", "Folder or zip on the server"

    class Status(models.TextChoices):
        RECEIVING = "receiving", "Receiving files"
        QUEUED = "queued", "Waiting"
        RUNNING = "running", "Reading images"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    ENDED = (Status.DONE, Status.FAILED, Status.CANCELLED)

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="uploads")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.ZIP)
    # A zip in media storage; empty for folders, whose files wait in `staging_folder`.
    file = models.FileField(upload_to="uploads/%Y/%m/", blank=True)
    # A server import: its absolute path on the default worker's disk (a folder sent by a browser
    # waits in the storage, under staging_folder()).
    source_path = models.CharField(max_length=1000, blank=True)
    original_name = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    created_at = models.DateTimeField(default=timezone.now)
    # Receiving a folder: what the browser announced, and what has arrived.
    expected_files = models.PositiveIntegerField(default=0)
    expected_batches = models.PositiveIntegerField(default=0)
    expected_bytes = models.PositiveBigIntegerField(default=0)
    received_batches = models.JSONField(default=list, blank=True)
    received_bytes = models.PositiveBigIntegerField(default=0)
    # The browser's hash of the folder's file list (paths and sizes): picking the same
    # folder again continues this upload; another folder of the same name does not.
    fingerprint = models.CharField(max_length=64, blank=True)
    # {file name: class}: what a model said of each picture sent from a classification to the inbox.
    suggestions = models.JSONField(default=dict, blank=True)
    # Reading it
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    conflicts = models.PositiveIntegerField(default=0)
    unlabelled = models.PositiveIntegerField(default=0)

    objects = JobQuerySet.as_manager()

    TASK = "datasets.ingest_upload"
    OWNER = "dataset__owner"
    MAX_ATTEMPTS = "MAX_INGEST_ATTEMPTS"
    ENDED_STATUSES = (Status.FAILED, Status.CANCELLED)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.original_name

    @property
    def percent(self):
        return round(100 * self.done / self.total) if self.total else 0

    @property
    def is_finished(self):
        return self.status in self.ENDED

    def fraction_done(self):
        return self.done / self.total if self.total else 0.0

    def gave_up_message(self):
        return (f"The worker stopped while reading these files, {self.attempts} times; nothing from "
                "them was kept. Press Retry to read them again.")

    def ended_by_reaper(self):
        self.discard_rows()

    def record_progress(self, done, total):
        self.done, self.total = done, total
        self.claimed_row().update(done=done, total=total)

    def finish(self, **counts) -> bool:
        """Mark it done, if this attempt still holds it; False when another has taken it."""
        counts |= {"done": self.done, "total": self.total}
        now = timezone.now()
        if not self.claimed_row().update(status=self.Status.DONE, finished_at=now, **counts):
            return False
        for name, value in counts.items():
            setattr(self, name, value)
        self.status, self.finished_at = self.Status.DONE, now
        return True

    def fail(self, message):
        self.status, self.error, self.finished_at = self.Status.FAILED, message, timezone.now()
        self.save(update_fields=["status", "error", "finished_at"])

    def discard_rows(self, created_classes=()):
        """Remove the rows an attempt at reading it created; files shared with other images stay."""
        with transaction.atomic():
            self.images.all().delete()
            self.outcomes.all().delete()
            self.dataset.classes.filter(id__in=list(created_classes), images__isnull=True).delete()

    # Its source: a stored zip, or the staged files of a folder sent by a browser. A folder or
    # zip on the server belongs to whoever put it there and is never removed.

    def source_exists(self) -> bool:
        if self.kind == self.Kind.ZIP:
            return bool(self.file.name) and storage.exists(self.file.name)
        if self.kind == self.Kind.FOLDER:
            return storage.folder_exists(self.staging_folder())
        return Path(self.source_path).exists()

    def staging_folder(self) -> str:
        """The storage folder where the batches of a folder sent by a browser wait to be read."""
        return f"{STAGING_ROOT}/{self.id}"

    def remove_source_files(self):
        _remove_files(self.file.name, self.staging_folder())

    @property
    def can_retry(self) -> bool:
        return super().can_retry and self.source_exists()

    @property
    def can_delete(self) -> bool:
        return self.status in self.ENDED

    def fields_when_retried(self):
        """A retried upload is read again from the start."""
        return dict.fromkeys(("done", "total", "accepted", "rejected", "duplicates", "conflicts", "unlabelled"), 0)

    def cancel(self) -> bool:
        """End a queued upload before a worker takes it; the worker then finds nothing to claim.
        One queued again after its worker died loses what that worker had written."""
        with transaction.atomic():
            cancelled = self.cancel_queued(error="Cancelled before it was read.")
            if cancelled:
                self.discard_rows()
        return bool(cancelled)


class UploadOutcome(models.Model):
    """A file of an upload that was not simply added: rejected, a duplicate, or a label conflict.

    Accepted files are the upload's Image rows, so a 70,000-image upload does not
    write 70,000 rows twice.
    """

    class Kind(models.TextChoices):
        REJECTED = "rejected", "Not used"
        DUPLICATE = "duplicate", "Duplicate, stored once"
        CONFLICT = "conflict", "Label conflict"

    upload = models.ForeignKey(Upload, on_delete=models.CASCADE, related_name="outcomes")
    file_name = models.CharField(max_length=1000)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    detail = models.CharField(max_length=1000)

    class Meta:
        ordering = ["id"]


def image_upload_path(image, filename):
    return f"datasets/{image.dataset_id}/{filename}"


class Image(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="images")
    # None: the image waits in the unlabelled inbox.
    image_class = models.ForeignKey(ImageClass, on_delete=models.SET_NULL, null=True, blank=True,
                                    related_name="images")
    upload = models.ForeignKey(Upload, on_delete=models.SET_NULL, null=True, blank=True, related_name="images")
    # Content-addressed (datasets/<id>/<sha[:2]>/<sha>.<ext>): the same bytes are one file,
    # and a file never changes, so dataset versions can keep pointing at it.
    file = models.FileField(upload_to=image_upload_path, max_length=255)
    # Empty when the image is small enough to be its own thumbnail.
    thumbnail = models.CharField(max_length=255, blank=True)
    original_name = models.CharField(max_length=1000)
    split = models.CharField(max_length=5, choices=SPLIT_CHOICES, default="train")
    # The split a train/ val/ test/ folder gave it ("" for none): a re-split keeps test and val
    # folders, and takes validation images out of a train folder when there is no val folder.
    folder_split = models.CharField(max_length=5, blank=True, choices=SPLIT_CHOICES)
    # True when the person chose the split by hand; a re-split leaves it alone.
    split_fixed = models.BooleanField(default=False)
    # The same picture (by hash) is filed under another class too; left out of training until settled.
    label_conflict = models.BooleanField(default=False)
    # For a picture in the inbox: the class a model gave it (sent from a classification), offered
    # as the answer to accept with one key.
    suggested_label = models.CharField(max_length=200, blank=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    channels = models.PositiveSmallIntegerField()
    sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["dataset", "split"]),
            models.Index(fields=["dataset", "sha256"]),
            models.Index(fields=["dataset", "image_class"]),
            models.Index(fields=["dataset", "label_conflict"]),
        ]

    def __str__(self):
        return self.original_name

    @property
    def label(self):
        return self.image_class.name if self.image_class_id else None

    @property
    def thumbnail_name(self):
        return self.thumbnail or self.file.name


class LabelChange(models.Model):
    """Who changed which image's label, when, from what to what.

    Names, not foreign keys: the record outlives renamed and deleted classes and images.
    An empty label means "unlabelled"; a class rename is one row with no image.
    """

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="label_changes")
    image = models.ForeignKey(Image, on_delete=models.SET_NULL, null=True, blank=True, related_name="label_changes")
    image_name = models.CharField(max_length=1000, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    at = models.DateTimeField(default=timezone.now)
    from_label = models.CharField(max_length=200, blank=True)
    to_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=40)

    class Meta:
        ordering = ["-at", "-id"]


class DatasetVersion(models.Model):
    """The labels and splits of a dataset frozen at the moment a run started.

    The manifest lists every trainable image's file, label and split. Image files
    are content-addressed and never rewritten, so a version keeps meaning the same
    pictures with the same labels whatever is edited later.
    """

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    fingerprint = models.CharField(max_length=64)
    manifest = models.FileField(upload_to="versions/", max_length=255)
    image_count = models.PositiveIntegerField()
    class_names = models.JSONField(default=list)
    split_counts = models.JSONField(default=dict)

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["dataset", "number"], name="unique_version_number")]

    def __str__(self):
        return f"version {self.number}"


# Files go with their rows, also when a row goes in a cascade, and only once the deletion has
# committed: a rolled-back deletion keeps its files.

@receiver(post_delete, sender=Dataset, dispatch_uid="dataset-files")
def _remove_dataset_files(sender, instance, **kwargs):
    folders = [instance.media_folder, instance.versions_folder]
    transaction.on_commit(lambda: [storage.delete_folder(folder) for folder in folders])


def _remove_files(file_name, folder):
    if file_name:
        storage.delete(file_name)
    storage.delete_folder(folder)


@receiver(post_delete, sender=Upload, dispatch_uid="upload-files")
def _remove_upload_files(sender, instance, **kwargs):
    # Named now: once deleted, the instance has no id.
    file_name, folder = instance.file.name, instance.staging_folder()
    transaction.on_commit(lambda: _remove_files(file_name, folder))


@receiver(post_delete, sender=DatasetVersion, dispatch_uid="version-manifest")
def _remove_version_manifest(sender, instance, **kwargs):
    name = instance.manifest.name
    if name:
        transaction.on_commit(lambda: storage.delete(name))
