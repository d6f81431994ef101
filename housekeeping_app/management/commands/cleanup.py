from django.core.management.base import BaseCommand

from housekeeping_app.cleanup import run_cleanup
from housekeeping_app.models import KINDS
from mlcore.words import file_size


class Command(BaseCommand):
    help = ("Remove files no row refers to (older than CLEANUP_GRACE_S), zips and folders of finished or "
            "abandoned uploads, models of deleted runs, and packs beyond PACK_CACHE_MAX_GB.")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="List what would be removed; remove nothing.")

    def handle(self, *args, dry_run=False, **options):
        result = run_cleanup(dry_run=dry_run)
        if dry_run:
            for item in result.removed:
                self.stdout.write(f"would remove ({item.kind}, {file_size(item.bytes)}): {item.name}")
        verb = "Would remove" if dry_run else "Removed"
        for kind, figures in result.figures().items():
            self.stdout.write(f"{verb}: {KINDS[kind]}: {figures['count']} ({file_size(figures['bytes'])})")
        if result.abandoned_uploads:
            self.stdout.write(f"{'Would mark' if dry_run else 'Marked'} {result.abandoned_uploads} abandoned "
                              "upload(s) as failed.")
