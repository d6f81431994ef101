"""python manage.py fetch_pretrained [NAME ...]

Downloads Keras' own ImageNet "no top" weights files of the transfer-learning networks into
PRETRAINED_WEIGHTS_DIR (or, with a bucket, into the storage's weights/), with a progress bar in the terminal. Each file is checked (mlcore.pretrained)
before it is kept; a file already there that passes the checks is left as it is. Exits non-zero,
saying why, when any file could not be fetched.
"""
import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from dlsite import storage
from mlcore.pretrained import CATALOGUE, WeightsRefused, download
from pretrained_app.jobs import download_url
from pretrained_app.weights import is_kept_whole, keep, kept_name, weights_folder

BAR_WIDTH = 30


class Command(BaseCommand):
    help = "Download and check the pretrained weights files of the transfer-learning networks."

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", metavar="NAME",
                            help=f"the networks to fetch (default: all of {', '.join(CATALOGUE)})")

    def handle(self, names, **options):
        unknown = [name for name in names if name not in CATALOGUE]
        if unknown:
            raise CommandError(f"There is no network called {', '.join(unknown)}. "
                               f"The networks are: {', '.join(CATALOGUE)}.")
        try:
            folder = weights_folder() if storage.is_local() else None
        except WeightsRefused as refusal:
            raise CommandError(str(refusal)) from None
        failed = []
        for name in dict.fromkeys(names or CATALOGUE):
            entry = CATALOGUE[name]
            path = Path(folder) / entry.file_name if folder else f"{kept_name(entry)} (in the storage bucket)"
            if is_kept_whole(entry):
                self.stdout.write(f"{entry.label}: {path} is already there and passes its checks.")
                continue
            url = download_url(name)
            self.stdout.write(f"{entry.label}: downloading {url}")
            started = time.monotonic()
            try:
                keep(lambda into: download(url, entry, into, on_progress=self._progress(started)))
            except WeightsRefused as refusal:
                self.stdout.write("")
                self.stderr.write(self.style.ERROR(f"{entry.label}: {refusal}"))
                failed.append(entry.label)
                continue
            self.stdout.write("")
            self.stdout.write(self.style.SUCCESS(
                f"{entry.label}: kept {path} ({entry.check_text()} checked) in {time.monotonic() - started:.1f} s."))
        if failed:
            raise CommandError(f"Not fetched: {', '.join(failed)}. Nothing half-written was left behind; the "
                               "reasons are above.")

    def _progress(self, started):
        interactive = sys.stdout.isatty()
        shown = {"step": None}

        def show(done, total):
            fraction = min(1.0, done / total) if total else 0.0
            # A terminal redraws one line at every percent; a log gets a line every ten.
            step = int(100 * fraction) // (1 if interactive else 10)
            if step == shown["step"]:
                return
            shown["step"] = step
            filled = int(BAR_WIDTH * fraction)
            elapsed = time.monotonic() - started
            of = f"/{total:,} bytes {100 * fraction:3.0f}%" if total else " bytes"
            line = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done:,}{of}  {elapsed:5.1f} s"
            self.stdout.write(f"\r{line}" if interactive else line, ending="")
            self.stdout.flush()
            if not interactive:
                self.stdout.write("")

        return show
