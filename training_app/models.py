import math
import socket
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.db import models, transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone
from django.utils.functional import cached_property

from dlsite import storage
from dlsite.jobs import ClaimLost, Job, JobQuerySet
from mlcore import insights
from mlcore.defaults import few_photos_in_words, few_photos_plan
from mlcore.formats import FORMATS
from mlcore.options import choices, default
from mlcore.presets import PRESET_SPECS
from mlcore.progress import ESTIMATING, PhaseProgress, phase_progress, unit_of
from mlcore.training import TrainingConfig
from mlcore.words import duration
from pretrained_app.weights import weights_folder_for

# What the run's network started from: a preset, or "custom" when the person changed its layers.
NETWORK_CHOICES = [(key, preset["label"]) for key, preset in PRESET_SPECS.items()] + [("custom", "Built by hand")]


class TrainingRunQuerySet(JobQuerySet):
    def with_model(self):
        return self.filter(status__in=[TrainingRun.Status.SUCCEEDED, TrainingRun.Status.CANCELLED]).exclude(model_file="")

    def default_model(self):
        """The model the Classify page offers first: the best tested one (the highest test accuracy,
        the newest among equals), since a newer run is not a better one; the newest only when none
        was tested. None without models."""
        models = self.with_model()
        tested = models.filter(test_accuracy__isnull=False).order_by("-test_accuracy", "-created_at", "-id")
        return tested.first() or models.order_by("-created_at", "-id").first()

    def measured_speed(self, preset, channels):
        """(training images a second, at this image size) of the latest finished run of this network
        and colour on this site, from its epochs after the first; None when there is none."""
        run = (self.filter(preset=preset, channels=channels, status=TrainingRun.Status.SUCCEEDED, train_count__gt=0)
               .order_by("-finished_at").first())
        seconds = sorted(run.epoch_metrics.values_list("seconds", flat=True))[1:] if run else []
        if not seconds or not seconds[len(seconds) // 2]:
            return None
        return run.train_count / seconds[len(seconds) // 2], run.image_size

    def delete_unless_running(self, run_id):
        """Delete a run that no worker is training; False when one is (it must be stopped first).

        The row is locked while it is checked and deleted, so a worker cannot take a queued run
        in between (its claim waits, then finds no run). Its files go after the commit (post_delete).
        """
        with transaction.atomic():
            run = self.select_for_update().filter(id=run_id).exclude(status=TrainingRun.Status.RUNNING).first()
            if run is None:
                return False
            run.delete()
            run.place_freed()
            return True


class TrainingRun(Job):
    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        RUNNING = "running", "Training"
        SUCCEEDED = "succeeded", "Finished"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Stopped"

    FINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
    ACTIVE = (Status.QUEUED, Status.RUNNING)  # waiting or training: the run still needs its dataset

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="runs")
    dataset = models.ForeignKey("datasets_app.Dataset", on_delete=models.CASCADE, related_name="runs")
    # The frozen labels it learns from; later edits to the dataset never change them.
    version = models.ForeignKey("datasets_app.DatasetVersion", on_delete=models.PROTECT, null=True, blank=True,
                                related_name="runs")
    created_at = models.DateTimeField(default=timezone.now)
    # The "Try several settings" search that made it (or trained its best run longer), if any.
    search = models.ForeignKey("Search", on_delete=models.SET_NULL, null=True, blank=True, related_name="runs")

    # What to train
    preset = models.CharField(max_length=32, choices=NETWORK_CHOICES)
    # The network layer by layer (mlcore/builder.py), as checked when the run was made. The settings that
    # follow are described, with their defaults and choices, in mlcore/options.py.
    model_spec = models.JSONField(default=dict)
    image_size = models.PositiveIntegerField()
    channels = models.PositiveSmallIntegerField(default=default("channels"), choices=choices("channels"))
    resize_mode = models.CharField(max_length=16, choices=choices("resize_mode"), default=default("resize_mode"))
    augmentation = models.JSONField(default=dict, blank=True)  # mlcore.options.AUGMENTATIONS
    epochs = models.PositiveIntegerField()
    batch_size = models.PositiveIntegerField()
    optimizer = models.CharField(max_length=16, choices=choices("optimizer"), default=default("optimizer"))
    learning_rate = models.FloatField()
    lr_schedule = models.CharField(max_length=16, choices=choices("lr_schedule"), default=default("lr_schedule"))
    early_stopping_patience = models.PositiveSmallIntegerField(default=default("early_stopping_patience"))  # 0: never
    class_weighting = models.CharField(max_length=8, choices=choices("class_weighting"),
                                       default=default("class_weighting"))
    label_smoothing = models.FloatField(default=default("label_smoothing"))
    seed = models.PositiveIntegerField(default=default("seed"))
    fine_tune_epochs = models.PositiveIntegerField(default=default("fine_tune_epochs"))
    fine_tune_learning_rate = models.FloatField(default=default("fine_tune_learning_rate"))
    use_all_gpus = models.BooleanField(default=default("use_all_gpus"))
    # 0: no limit. Otherwise the worker trains as many epochs (up to `epochs`) as fit (mlcore/budget.py).
    time_budget_s = models.PositiveIntegerField(default=default("time_budget_s"), choices=choices("time_budget_s"))

    # The job
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    worker_host = models.CharField(max_length=255, blank=True)
    devices = models.CharField(max_length=255, blank=True, help_text="What trained it: the GPUs, or the CPU.")
    mixed_precision = models.BooleanField(default=False)

    # Where it is
    phase = models.CharField(max_length=64, blank=True)
    phase_done = models.PositiveIntegerField(default=0)
    phase_total = models.PositiveIntegerField(default=0)
    # The pace of a counted phase (mlcore/progress.py): the phase's first report with something done,
    # and its latest report (not the heartbeat, which a thread writes whatever the phase does).
    phase_paced_at = models.DateTimeField(null=True, blank=True)
    phase_paced_done = models.PositiveIntegerField(default=0)
    phase_reported_at = models.DateTimeField(null=True, blank=True)
    epoch = models.PositiveIntegerField(default=0)
    batch = models.PositiveIntegerField(default=0)
    batches_per_epoch = models.PositiveIntegerField(default=0)
    training_started_at = models.DateTimeField(null=True, blank=True)
    # Set when an attempt continued from a backup: the epochs already finished by earlier attempts.
    resumed_after_epoch = models.PositiveIntegerField(null=True, blank=True)
    # Set when cancel or early stopping sent the model back to its best epoch's weights.
    best_epoch = models.PositiveIntegerField(null=True, blank=True)
    stopped_early = models.BooleanField(default=False)
    # What each phase of the plan gave on the validation images (mlcore.training.TrainingOutcome.phases):
    # the new top alone, then fine-tuning, kept or not. None for runs of one phase.
    phase_results = models.JSONField(null=True, blank=True)

    # What came out
    class_names = models.JSONField(default=list, blank=True)
    train_count = models.PositiveIntegerField(default=0)
    val_count = models.PositiveIntegerField(default=0)
    test_count = models.PositiveIntegerField(default=0)
    test_accuracy = models.FloatField(null=True, blank=True)
    test_loss = models.FloatField(null=True, blank=True)
    confusion = models.JSONField(null=True, blank=True)
    per_class = models.JSONField(null=True, blank=True)
    # [[image id, predicted class index, probability], ...], most confident first. Every test picture's
    # answer is a TestAnswer row (below).
    wrong = models.JSONField(null=True, blank=True)
    model_file = models.CharField(max_length=255, blank=True, help_text="Relative to MEDIA_ROOT")
    # The owner's consent to keep the pictures this model was not sure about (classify page, API) for
    # settings.UNSURE_KEEP_DAYS, to label them (predict_app/assist.py). Off unless the owner turns it on.
    keep_unsure = models.BooleanField(default=False)

    objects = TrainingRunQuerySet.as_manager()

    TASK = "training.train_run"
    QUEUE = "training"
    AGAIN = "use “Train again with changes” to start it again"
    MAX_ATTEMPTS = "MAX_TRAINING_ATTEMPTS"

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Run {self.id} on {self.dataset}"

    # The job: what the reaper writes (dlsite/jobs.py). The phase an earlier attempt or the reaper left
    # ("Waiting to continue ...") is cleared by the next claim.

    @classmethod
    def fields_when_claimed(cls):
        return {"worker_host": socket.gethostname(), "phase": "", "phase_done": 0, "phase_total": 0,
                "phase_paced_at": None, "phase_paced_done": 0, "phase_reported_at": None}

    def fields_when_requeued(self):
        return {"worker_host": "", "phase": "Waiting to continue: its worker stopped", "phase_done": 0, "phase_total": 0}

    def fields_when_ended(self):
        return {"phase": ""}

    def end_when_stale(self):
        if self.cancel_requested:
            return self.Status.CANCELLED, ""
        return super().end_when_stale()

    def gave_up_message(self):
        return (f"The worker training this run stopped {self.attempts} times before it finished "
                f"(the last time during epoch {self.epoch or 1}). This happens when the worker runs out "
                "of memory or its machine restarts: try a smaller batch size or image size.")

    @property
    def fine_tunes(self):
        base = (self.model_spec or {}).get("base")
        return bool(base and base.get("fine_tune_layers") and self.fine_tune_epochs)

    @property
    def total_epochs(self):
        """Epochs of both phases: the first, and fine-tuning if the run has one."""
        return self.epochs + (self.fine_tune_epochs if self.fine_tunes else 0)

    # The settings a person chooses, as the training form names them: "Train again with changes" copies them.
    SETTINGS = ["preset", "model_spec", "image_size", "channels", "resize_mode", "augmentation", "epochs",
                "batch_size", "optimizer", "learning_rate", "lr_schedule", "early_stopping_patience",
                "class_weighting", "label_smoothing", "seed", "fine_tune_epochs", "fine_tune_learning_rate",
                "use_all_gpus", "time_budget_s"]

    def settings(self):
        return {name: getattr(self, name) for name in self.SETTINGS}

    def training_config(self, num_classes):
        few = self.few_photos()
        return TrainingConfig(
            spec=self.model_spec, image_size=(self.image_size, self.image_size), channels=self.channels,
            num_classes=num_classes, epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer,
            learning_rate=self.learning_rate, lr_schedule=self.lr_schedule,
            early_stopping_patience=self.early_stopping_patience, class_weighting=self.class_weighting,
            label_smoothing=self.label_smoothing, augmentation=self.augmentation or None,
            fine_tune_epochs=self.fine_tune_epochs, fine_tune_learning_rate=self.fine_tune_learning_rate,
            seed=self.seed, weights_dir=weights_folder_for(self.model_spec), all_gpus=self.use_all_gpus,
            crop_views=few.crops, refit_with_validation=few.refit or self.refits_after_fine_tuning,
        )

    @property
    def refits_after_fine_tuning(self) -> bool:
        """Fine-tuning within a time budget learns again with the validation pictures when they kept it and
        time is left (training.train_model): the person granted the time, and no photo is wasted."""
        return bool(self.time_budget_s and self.fine_tunes)

    def few_photos(self):
        """What the frozen top does beyond its settings with this run's few training photos (mlcore.defaults)."""
        return few_photos_plan(self.model_spec, self.augmentation, self.early_stopping_patience,
                               self.fine_tune_epochs, self.train_count)

    def few_photos_in_words(self):
        return few_photos_in_words(self.few_photos(), f"Only {self.train_count:,} training photos: ")

    @property
    def is_final(self):
        return self.status in self.FINAL

    @property
    def has_model(self):
        return bool(self.model_file) and self.status in (self.Status.SUCCEEDED, self.Status.CANCELLED)

    @property
    def model_prefix(self) -> str:
        """The storage folder of everything kept for this run: each attempt's model
        (attempt-<n>/model.keras, model.json, familiarity.npz), the backups a next attempt continues
        from (backup/attempt-<n>/) and the exports (exports/<format>.zip)."""
        return f"models/{self.id}"

    @property
    def model_path(self) -> Path:
        """The model file on this host, for Keras to load: the kept file itself with the local
        folder, else a copy of its whole attempt folder (familiarity.npz and model.json beside it) in
        this host's cache. FileNotFoundError when it is not kept any more."""
        name = PurePosixPath(self.model_file)
        path = storage.local_folder(str(name.parent)) / name.name
        if not path.is_file():
            raise FileNotFoundError(f"No kept file {self.model_file}")
        return path

    @property
    def model_folder(self) -> Path:
        """The run's folder on this host: where its files are kept with the local folder (the tests
        look there); with a bucket, a copy of all of them, so the site's own code never asks for it."""
        return storage.local_folder(self.model_prefix)

    @property
    def test_accuracy_percent(self):
        return None if self.test_accuracy is None else round(100 * self.test_accuracy, 1)

    # Did it learn anything? The rules and their words are in mlcore/insights.py.

    def test_class_counts(self):
        """How many test images each class had: the confusion matrix's row sums (or the per-class
        table's "support"); None without a test result."""
        if self.confusion:
            return [sum(row) for row in self.confusion]
        if self.per_class:
            return [row.get("support", 0) for row in self.per_class]
        return None

    def learning_verdict(self, val_accuracies=None):
        """mlcore.insights' verdict when the model learned nothing useful, else None.

        From the test result when the run has one; else from `val_accuracies` (each epoch's
        validation accuracy, in order): for a finished run, whether its best epoch was near
        chance; while it trains, a hint when the last few epochs were. A failed run gets none.
        """
        if self.status == self.Status.FAILED:
            return None
        classes = len(self.class_names or [])
        tips = {"pretrained": bool((self.model_spec or {}).get("base")), "learning_rate": self.learning_rate,
                "images_per_class": self.train_count // classes if classes and self.train_count else None}
        counts = self.test_class_counts()
        if self.test_accuracy is not None and counts:
            return insights.verdict_from_test(self.test_accuracy, counts, **tips)
        if val_accuracies is None or self.test_accuracy is not None:
            return None
        finished = self.status in (self.Status.SUCCEEDED, self.Status.CANCELLED)
        return insights.verdict_from_validation(val_accuracies, classes, self.val_count, finished=finished, **tips)

    @cached_property
    def verdict(self):
        """The verdict of a finished run, for the tables that list runs: from its test result, or,
        without one, from `best_val_accuracy` where the query annotated it (the best epoch)."""
        if not self.is_final:
            return None
        best = getattr(self, "best_val_accuracy", None)
        return self.learning_verdict(None if best is None else [best])

    @property
    def untested(self):
        """Finished without a test result: its dataset had no test pictures, so how often it is right on
        pictures it never saw is not known."""
        return self.status == self.Status.SUCCEEDED and self.test_accuracy is None

    def status_label_with(self, verdict):
        """"Finished", or "Finished — learned nothing useful" when `verdict` (learning_verdict's) says
        so: a model no better than guessing never reads as a plain success. Nor does one never tested:
        "Finished, not tested"."""
        label = self.get_status_display()
        if verdict and verdict["final"]:
            return f"{label} — {verdict['badge']}"
        return f"{label}, not tested" if self.untested else label

    def badge_classes_with(self, verdict):
        """The CSS classes of the status badge: green "succeeded" only for a tested model that learned
        something; "guessing" (amber) for one no better than guessing; "untested" (grey) for one never tested."""
        if verdict and verdict["final"]:
            return f"{self.status} guessing"
        return f"{self.status} untested" if self.untested else self.status

    @property
    def status_label(self):
        return self.status_label_with(self.verdict)

    @property
    def badge_classes(self):
        return self.badge_classes_with(self.verdict)

    def fraction_done(self):
        """Of the training itself, from 0 to 1."""
        if self.status == self.Status.SUCCEEDED:
            return 1.0
        if not self.batches_per_epoch or not self.epoch:
            return 0.0
        total = self.total_epochs * self.batches_per_epoch
        return min(1.0, ((self.epoch - 1) * self.batches_per_epoch + self.batch) / total)

    def progress_started_at(self):
        return self.training_started_at

    # Writes from the worker. Each is one short UPDATE, so the web never waits on them, and each is
    # conditional on the worker's claim (dlsite/jobs.py): a worker frozen past the stale limit may
    # wake after the reaper gave the run to another one; its writes then match no row and raise
    # ClaimLost, which stops it without changing anything.

    def record(self, **fields):
        """Write `fields` to the run's row, if this worker still holds its claim; else raise ClaimLost.
        Each write is a heartbeat too."""
        super().record(heartbeat_at=timezone.now(), **fields)

    def record_phase(self, phase, done=0, total=0):
        """The phase it is in and, when it is counted, `done` of `total` pictures. The pace (for the time
        left) is measured from the phase's first report with something done: the first batch also
        builds the network's function, which would make the first estimates far too long."""
        now = timezone.now()
        fields = {"phase": phase, "phase_done": done, "phase_total": total, "phase_reported_at": now}
        same_phase = phase == self.phase and total == self.phase_total and done >= self.phase_done
        if not same_phase:
            fields.update(phase_paced_at=None, phase_paced_done=0)
        if done and (not same_phase or self.phase_paced_at is None):
            fields.update(phase_paced_at=now, phase_paced_done=done)
        self.record(**fields)

    def phase_progress(self, now=None):
        """Where it is in its current phase, in words (mlcore/progress.py); training counts in epochs."""
        now = now or timezone.now()
        if self.phase == "Training" and self.epoch:
            seconds_left = self.seconds_left()
            left = ESTIMATING if seconds_left is None else f"about {duration(max(seconds_left, 1))} left"
            return PhaseProgress(f"Training: epoch {self.epoch} of {self.total_epochs}",
                                 round(100 * self.fraction_done(), 1), seconds_left, left)
        paced = reported = None
        if self.phase_paced_at and self.phase_reported_at:
            paced = (self.phase_reported_at - self.phase_paced_at).total_seconds()
            reported = (now - self.phase_reported_at).total_seconds()
        return phase_progress(self.phase, self.phase_done, self.phase_total, paced_done=self.phase_paced_done,
                              paced_seconds=paced, since_latest_s=reported or 0.0, unit=unit_of(self.phase))

    def record_batch(self, epoch, batch, batches_per_epoch):
        fields = {"epoch": epoch, "batch": batch, "batches_per_epoch": batches_per_epoch}
        if self.training_started_at is None:
            fields["training_started_at"] = timezone.now()
        if self.phase != "Training":  # after "Preparing images", and when a resumed run trains again
            fields.update(phase="Training", phase_done=0, phase_total=0)  # counted in epochs from here
        self.record(**fields)

    def record_plan(self, epochs):
        """The time budget decided how many epochs the first phase trains."""
        self.record(epochs=epochs)

    def record_epoch(self, epoch, logs, seconds):
        # The claim's UPDATE first, in the same transaction: a worker that lost its claim writes no metrics
        # (ClaimLost rolls back), and on PostgreSQL the row stays locked until the metrics are in.
        with transaction.atomic():
            self.record(epoch=epoch)
            EpochMetric.objects.update_or_create(run=self, epoch=epoch, defaults={
                "loss": _finite(logs.get("loss")), "accuracy": _finite(logs.get("accuracy")),
                "val_loss": _finite(logs.get("val_loss")), "val_accuracy": _finite(logs.get("val_accuracy")),
                "learning_rate": _finite(logs.get("learning_rate")), "seconds": seconds,
            })

    def cancel_is_requested(self):
        if self.claim_lost:  # asked between batches, so a worker whose claim went stops at the next one
            raise ClaimLost(self)
        return TrainingRun.objects.filter(id=self.id, cancel_requested=True).exists()

    def request_cancel(self):
        """Stop a run: a waiting one at once, a running one at its next batch."""
        if self.cancel_queued(phase=""):
            self.place_freed()
            return
        TrainingRun.objects.filter(id=self.id, status=self.Status.RUNNING).update(cancel_requested=True)

    def finish(self, status, **fields):
        self.record(status=status, finished_at=timezone.now(), phase="", **fields)
        self.place_freed()

    def ended_by_reaper(self):
        """Its worker died too often, or no worker took it: its place is free all the same."""
        self.place_freed()

    def place_freed(self):
        """The run ended (or went), so its place in the owner's limit of runs at once is free: its search's
        next run waiting its turn starts, once this is committed (a rolled-back ending frees no place, and
        the count must see it ended). A failure there is logged, never the ending's: the run did end."""
        if self.search_id is None:
            return
        # starting.py imports this module, so this one imports it only when it is needed
        from .starting import start_waiting

        search_id = self.search_id
        transaction.on_commit(lambda: start_waiting(search_id), robust=True)

    def fail(self, message):
        self.finish(self.Status.FAILED, error=message)

    @property
    def deletable(self):
        """A running run is not: its worker would keep writing to it. Stop it first."""
        return self.status != self.Status.RUNNING


@receiver(post_delete, sender=TrainingRun)
def remove_model_files(sender, instance, **kwargs):
    """A deleted run's model and backup go with it, once the deletion is committed (a rolled-back
    delete keeps them). Also when its dataset is deleted, which deletes its runs."""
    prefix = instance.model_prefix
    transaction.on_commit(lambda: storage.delete_folder(prefix))


def _finite(value):
    return float(value) if value is not None and math.isfinite(value) else None


class Search(models.Model):
    """"Try several settings": a few values of a few settings (mlcore/search.py), tried as ordinary runs that
    share a total time. The runs are the truth about how it goes; this keeps what was asked for."""

    class Mode(models.TextChoices):
        GRID = "grid", "Every combination"
        RANDOM = "random", "Combinations picked at random"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="searches")
    dataset = models.ForeignKey("datasets_app.Dataset", on_delete=models.CASCADE, related_name="searches")
    name = models.CharField(max_length=120)
    created_at = models.DateTimeField(default=timezone.now)
    # {setting: [the values chosen]}, settings as mlcore.search.SEARCHED names them; augmentation is on/off.
    values = models.JSONField(default=dict)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.GRID)
    picks = models.PositiveSmallIntegerField(default=0)  # random mode: how many combinations
    seed = models.PositiveIntegerField(default=1)  # random mode: the same seed picks the same combinations
    total_budget_s = models.PositiveIntegerField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    # The runs not started yet, first to start first: each one's training form data as posted (SearchRunForm).
    # A search may have more runs than its owner's limit of runs at once (settings.QUOTA_QUEUED_RUNS); those
    # wait their turn here, not in the workers' queue, and start one by one as places free up
    # (training_app/starting.py, start_waiting).
    waiting = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name

    def stop(self):
        """Drop the runs waiting their turn, cancel the queued ones and ask the training ones to stop at
        their next batch (as each run's Stop button does). The waiting ones go first, under the lock
        start_waiting takes, so a run cancelled here cannot make room for one of them."""
        with transaction.atomic():
            locked = Search.objects.select_for_update().get(id=self.id)
            locked.waiting, locked.stopped_at = [], locked.stopped_at or timezone.now()
            locked.save(update_fields=["waiting", "stopped_at"])
        self.waiting, self.stopped_at = locked.waiting, locked.stopped_at
        for run in self.runs.filter(status__in=TrainingRun.ACTIVE):
            run.request_cancel()


class EpochMetric(models.Model):
    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="epoch_metrics")
    epoch = models.PositiveIntegerField()
    loss = models.FloatField(null=True)
    accuracy = models.FloatField(null=True)
    val_loss = models.FloatField(null=True)
    val_accuracy = models.FloatField(null=True)
    learning_rate = models.FloatField(null=True)
    seconds = models.FloatField(default=0)

    class Meta:
        ordering = ["epoch"]
        constraints = [models.UniqueConstraint(fields=["run", "epoch"], name="one_row_per_epoch")]


class PictureAnswer(models.Model):
    """What the model said of one test picture: the run page opens the pictures behind each cell of the
    confusion matrix from these. Classes are positions in the run's class_names; the image is a plain
    number, not a foreign key, since the picture may leave the dataset while the run's answer stays true.
    Runs finished before these were kept have none (the pictures page says so)."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="test_answers")
    image_id = models.PositiveBigIntegerField()
    true_class = models.PositiveSmallIntegerField()
    predicted_class = models.PositiveSmallIntegerField()
    confidence = models.FloatField()  # the probability it gave the class it predicted

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["run", "true_class", "predicted_class"])]


class ModelExport(Job):
    """One format of a run's model (mlcore/formats.py): made by a worker, loaded again in a fresh process
    by its own runtime and compared with the original before it is offered for download."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        RUNNING = "making", "Being made and checked"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="exports")
    kind = models.CharField(max_length=16, choices=[(key, f.label) for key, f in FORMATS.items()])
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    phase = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)  # when it was last asked for
    file = models.CharField(max_length=255, blank=True, help_text="Relative to MEDIA_ROOT")
    size_bytes = models.BigIntegerField(null=True, blank=True)
    # What the check found: on `checked_pictures` test pictures, the largest difference of any
    # probability from the original's; for the 8-bit format, how often each was right instead.
    checked_pictures = models.PositiveIntegerField(default=0)
    max_difference = models.FloatField(null=True, blank=True)
    accuracy = models.FloatField(null=True, blank=True)
    original_accuracy = models.FloatField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    TASK = "exports.make"
    AGAIN = "press “Make again”"
    OWNER = "run__owner"

    class Meta:
        ordering = ["run", "kind"]
        constraints = [models.UniqueConstraint(fields=["run", "kind"], name="one_export_per_format")]

    @classmethod
    def request(cls, run, kind):
        """The export of `run` in format `kind`, queued to be made (again) unless it is on its way (the
        reapers keep a job on its way only while a worker has it or it waits for one);
        (export, whether a worker must be sent)."""
        export, created = cls.objects.get_or_create(run=run, kind=kind)
        if created:
            return export, True
        if export.status in (cls.Status.QUEUED, cls.Status.RUNNING):
            return export, False
        cls.objects.filter(id=export.id).update(
            status=cls.Status.QUEUED, phase="", created_at=timezone.now(), started_at=None, heartbeat_at=None,
            attempts=0, queued_at=None, resends=0, finished_at=None, file="", size_bytes=None, checked_pictures=0, max_difference=None,
            accuracy=None, original_accuracy=None, error="")
        export.refresh_from_db()
        return export, True

    @property
    def name(self) -> str:
        """The storage name its zip is kept under."""
        return f"{self.run.model_prefix}/exports/{self.kind}.zip"

    def fields_when_ended(self):
        return {"phase": ""}

    def finish(self, name, size_bytes, checked_pictures, **check):
        """Ready: its zip is kept under the storage name `name`."""
        self.record(status=self.Status.READY, phase="", finished_at=timezone.now(),
                    file=name, size_bytes=size_bytes, checked_pictures=checked_pictures, **check)

    def fail(self, message):
        self.record(status=self.Status.FAILED, phase="", finished_at=timezone.now(), error=message)

    def open(self):
        """Its zip, open for reading; None (the export marked failed, to be made again) when the file
        went from the storage (a clean-up, by hand) while the row still names it."""
        try:
            return storage.open_kept(self.file)
        except FileNotFoundError:
            ModelExport.objects.filter(id=self.id, status=self.Status.READY).update(
                status=self.Status.FAILED, finished_at=timezone.now(), error="Its file was removed from the server's disk: make it again.")
            self.refresh_from_db()
            return None


class TreesTrial(Job):
    """Boosted trees fitted on what a run's network sees (mlcore/trees.py): the features of its train,
    validation and test pictures, the trees' accuracy beside the network's, and beside trees on the raw
    pixels. One per run, made again on request. When the trees did better on the validation pictures
    the owner may choose them to answer (`chosen`); the classify page and the API then use the
    network's trunk with these trees (predict_app/services.predictor_for)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        RUNNING = "fitting", "Being fitted and measured"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    run = models.OneToOneField(TrainingRun, on_delete=models.CASCADE, related_name="trees")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    phase = models.CharField(max_length=64, blank=True)
    progress = models.FloatField(default=0)  # from 0 to 1, for the progress bar
    created_at = models.DateTimeField(default=timezone.now)  # when it was last asked for
    # The model the trees were fitted on (run.model_file then): trees are used only with that model.
    model_file = models.CharField(max_length=255, blank=True)
    file = models.CharField(max_length=255, blank=True, help_text="The trees (XGBoost UBJSON); relative to MEDIA_ROOT")
    rounds = models.PositiveIntegerField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)  # fitting the trees on the features
    learned_from = models.PositiveIntegerField(default=0)  # training pictures the trees learned from (a sample when many)
    test_count = models.PositiveIntegerField(default=0)
    val_count = models.PositiveIntegerField(default=0)
    # Accuracies, from 0 to 1; None where the run has no such pictures.
    trees_test = models.FloatField(null=True, blank=True)
    network_test = models.FloatField(null=True, blank=True)
    pixels_test = models.FloatField(null=True, blank=True)
    trees_val = models.FloatField(null=True, blank=True)
    network_val = models.FloatField(null=True, blank=True)
    chosen = models.BooleanField(default=False)  # the owner chose the trees to answer

    objects = JobQuerySet.as_manager()

    TASK = "trees.fit"
    AGAIN = "press “Try again”"
    OWNER = "run__owner"

    class Meta:
        verbose_name = "boosted trees trial"

    @classmethod
    def request(cls, run):
        """The run's trial, queued to be made (again) unless it is on its way; (trial, whether a worker
        must be sent). Made again, its trees are no longer chosen until the owner chooses them again."""
        trial, created = cls.objects.get_or_create(run=run)
        if created:
            return trial, True
        if trial.status in (cls.Status.QUEUED, cls.Status.RUNNING):
            return trial, False
        cls.objects.filter(id=trial.id).update(
            status=cls.Status.QUEUED, phase="", progress=0, created_at=timezone.now(), started_at=None,
            heartbeat_at=None, attempts=0, queued_at=None, resends=0, finished_at=None, error="", chosen=False,
            rounds=None, seconds=None, trees_test=None, network_test=None, pixels_test=None, trees_val=None,
            network_val=None)
        trial.refresh_from_db()
        return trial, True

    @property
    def trees_name(self) -> str:
        """A new storage name for each fitting (a host's cache keeps a copy by name: a name never
        gets other trees)."""
        return f"{self.run.model_prefix}/trees/trees-{self.id}-{self.attempts}-{int(timezone.now().timestamp())}.ubj"

    @property
    def did_better(self) -> bool:
        """The trees beat the network on the validation pictures, which decide (the test ones only report)."""
        return (self.status == self.Status.READY and self.trees_val is not None and self.network_val is not None
                and self.trees_val > self.network_val)

    @property
    def answers(self) -> bool:
        """The trees answer for the run: chosen, made, and fitted on the run's model as it is now."""
        return (self.chosen and self.status == self.Status.READY and bool(self.file)
                and self.model_file == self.run.model_file)

    def fraction_done(self):
        return self.progress

    def fields_when_ended(self):
        return {"phase": ""}

    def finish(self, **fields):
        self.record(status=self.Status.READY, phase="", progress=1.0, finished_at=timezone.now(), **fields)

    def fail(self, message):
        self.record(status=self.Status.FAILED, phase="", finished_at=timezone.now(), error=message)


class LabelReview(Job):
    """A search of a dataset's labelled pictures for likely wrong labels (mlcore/label_issues.py), made by a
    worker from a finished run's features (or the pretrained EfficientNet-Lite0's without one), and the
    suspects it found, walked one at a time on the review page."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        RUNNING = "running", "Looking for likely wrong labels"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    dataset = models.ForeignKey("datasets_app.Dataset", on_delete=models.CASCADE, related_name="label_reviews")
    # The run whose network gives the features; None: the pretrained network. A deleted run ends nothing
    # already found.
    run = models.ForeignKey(TrainingRun, on_delete=models.SET_NULL, null=True, blank=True,
                            related_name="label_reviews")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    phase = models.CharField(max_length=100, blank=True)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    pictures = models.PositiveIntegerField(default=0)  # labelled pictures looked at
    features_from = models.CharField(max_length=200, blank=True)  # in words, for the page

    objects = JobQuerySet.as_manager()

    TASK = "jobs.find_label_issues"
    OWNER = "dataset__owner"
    AGAIN = "press “Find likely wrong labels” again"
    ENDED_STATUSES = (Status.FAILED,)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Likely wrong labels in {self.dataset}"

    @property
    def percent(self):
        return round(100 * self.done / self.total) if self.total else 0

    @property
    def is_finished(self):
        return self.status not in self.ACTIVE

    def fraction_done(self):
        return self.done / self.total if self.total else 0.0

    def fields_when_retried(self):
        return {"done": 0, "total": 0, "phase": ""}

    def record_progress(self, phase: str, done: int, total: int):
        self.record(phase=phase, done=done, total=total)

    def finish(self, suspects: list["LabelSuspect"], pictures: int) -> None:
        """Store the suspects and end it, if this attempt still holds it (else ClaimLost)."""
        with self.holding_claim():
            self.suspects.all().delete()  # an earlier attempt's, cut off after it stored them
            LabelSuspect.objects.bulk_create(suspects, batch_size=500)
            self.record(status=self.Status.DONE, finished_at=timezone.now(), heartbeat_at=None, pictures=pictures,
                        phase="", done=self.total)

    def fail(self, message: str) -> None:
        """End it with `message`, if this attempt still holds it (another that does says for itself)."""
        from dlsite.jobs import ClaimLost

        try:
            self.record(status=self.Status.FAILED, finished_at=timezone.now(), heartbeat_at=None, error=message)
        except ClaimLost:
            pass

    def open_suspects(self):
        """The suspects still to decide on, whose picture is still in the dataset, most likely wrong first."""
        return self.suspects.filter(decision="", image__isnull=False).order_by("rank")


class LabelSuspect(models.Model):
    """One picture whose label is likely wrong, with what was decided about it. The decision itself is
    recorded in the label history too (datasets_app/labelling.py), "keep" included."""

    class Decision(models.TextChoices):
        OPEN = "", "Not decided yet"
        KEPT = "kept", "Label kept"
        MOVED = "moved", "Moved to the suggested class"
        REMOVED = "removed", "Removed from the dataset"

    review = models.ForeignKey(LabelReview, on_delete=models.CASCADE, related_name="suspects")
    # Null once the picture leaves the dataset (removed here or elsewhere); its name stays.
    image = models.ForeignKey("datasets_app.Image", on_delete=models.SET_NULL, null=True, blank=True, related_name="suspicions")
    image_name = models.CharField(max_length=1000)
    rank = models.PositiveIntegerField()  # 0: the most likely wrong
    kind = models.CharField(max_length=10, default="label")  # "label" or "duplicate" (mlcore.label_issues.Suspect)
    given_label = models.CharField(max_length=200)  # its label when the job looked
    suggested_label = models.CharField(max_length=200)
    reason = models.TextField()
    score = models.FloatField()
    other_image = models.ForeignKey("datasets_app.Image", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    decision = models.CharField(max_length=10, choices=Decision.choices, default=Decision.OPEN, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["review", "rank"]
        indexes = [models.Index(fields=["review", "decision", "rank"])]
