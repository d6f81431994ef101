"""python manage.py import_images PATH --dataset NAME --user USERNAME

The large-data path: a zip or a folder that is already on the server goes through
the same ingestion code as a browser upload, here in this process, with a
progress bar in the terminal. The dataset is created if the user has none of that
name; otherwise the images are added to it (duplicates are found by hash).

The path is read where it is, never copied into the storage: should the upload be retried from the
site, the default worker reads it again, so with workers on other machines the path must be on the
default worker's disk (run the command there).
"""
import sys
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from datasets_app.ingestion import ingest_upload
from datasets_app.sources import check_zip, fit_dataset_name, fit_upload_name
from datasets_app.models import Dataset, Upload
from mlcore.archive import ArchiveRejected

BAR_WIDTH = 30


class Command(BaseCommand):
    help = "Import a zip or a folder of class folders that is already on this server into a dataset."

    def add_arguments(self, parser):
        parser.add_argument("path", help="a .zip file, or a folder whose subfolders are the classes")
        parser.add_argument("--dataset", required=True, help="the dataset's name (created if it does not exist)")
        parser.add_argument("--user", required=True, help="the username of the dataset's owner")
        parser.add_argument("--validation-percent", type=float, default=10.0,
                            help="share of images for validation when no val/ folder says so (new datasets)")
        parser.add_argument("--test-percent", type=float, default=10.0,
                            help="share of images for testing when no test/ folder says so (new datasets)")

    def handle(self, path, dataset, user, validation_percent, test_percent, **options):
        source = Path(path).expanduser().resolve()
        if not source.exists():
            raise CommandError(f"There is no file or folder at {source}.")
        if source.is_file() and source.suffix.lower() != ".zip":
            raise CommandError(f"{source} is not a .zip file or a folder.")
        try:
            owner = get_user_model().objects.get(username=user)
        except get_user_model().DoesNotExist:
            raise CommandError(f"There is no user called “{user}”.") from None
        if source.is_file():
            try:  # refused before a dataset is made for it, with the upload page's message
                check_zip(str(source))
            except ArchiveRejected as exc:
                raise CommandError(str(exc)) from None
        if len(str(source)) > Upload._meta.get_field("source_path").max_length:
            raise CommandError(f"The path {source} is too long; move the files to a folder with a shorter path.")
        if not (0 <= validation_percent < 100 and 0 <= test_percent < 100
                and validation_percent + test_percent < 100):
            raise CommandError("The validation and test percentages must add up to less than 100.")
        target, created = Dataset.objects.get_or_create(
            owner=owner, name=fit_dataset_name(dataset),
            defaults={"val_fraction": validation_percent / 100, "test_fraction": test_percent / 100})
        upload = Upload.objects.create(dataset=target, created_by=owner, kind=Upload.Kind.SERVER,
                                       source_path=str(source), original_name=fit_upload_name(source.name),
                                       status=Upload.Status.RUNNING)
        self.stdout.write(f"{'Creating' if created else 'Adding to'} dataset “{target.name}” (id {target.id}) "
                          f"from {source}")
        started = time.monotonic()
        ingest_upload(upload, on_progress=self._progress(started))
        upload.refresh_from_db()
        self.stdout.write("")
        if upload.status == Upload.Status.FAILED:
            raise CommandError(upload.error)
        self.stdout.write(self.style.SUCCESS(
            f"Done in {time.monotonic() - started:.1f} s: {upload.accepted} images added "
            f"({upload.unlabelled} without a class), {upload.rejected} files not used, "
            f"{upload.duplicates} duplicates, {upload.conflicts} label conflicts."))
        if upload.rejected or upload.conflicts:
            self.stdout.write(f"The report lists each file: /datasets/{target.id}/uploads/{upload.id}/report/")

    def _progress(self, started):
        interactive = sys.stdout.isatty()

        def show(done, total):
            fraction = done / total if total else 1
            filled = int(BAR_WIDTH * fraction)
            elapsed = time.monotonic() - started
            left = elapsed / fraction - elapsed if fraction else 0
            line = (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done:,}/{total:,} images "
                    f"{100 * fraction:3.0f}%  {elapsed:5.1f} s, about {left:.0f} s left")
            # A terminal redraws one line; a log gets a line per update.
            self.stdout.write(f"\r{line}" if interactive else line, ending="")
            self.stdout.flush()
            if not interactive:
                self.stdout.write("")

        return show
