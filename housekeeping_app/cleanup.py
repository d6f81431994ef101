"""Removing what no longer serves: the work behind `manage.py cleanup` and the hourly beat task.

The rows in the database say what is needed; whatever kept file none of them refers to, and that is
older than CLEANUP_GRACE_S, goes. The grace matters: an upload writes its image files before their
rows. Besides those files:

- zips of uploads that were read, and folders received for uploads that finished (or failed more
  than UPLOAD_ABANDON_S ago: until then the person may retry);
- folders still being received that got nothing for UPLOAD_ABANDON_S: the upload is marked failed;
- models of runs that no longer exist;
- pictures of classifications that no longer exist, and the zips of finished ones (their pictures
  are stored one by one as they are read);
- pictures a model was not sure about (kept with its owner's consent) once kept UNSURE_KEEP_DAYS, and
  files under unsure/ no row names (their run was deleted) once past the grace;
- packs of versions that no longer exist, and, beyond PACK_CACHE_MAX_GB, the least recently used
  packs in the local PACK_DIR (never one of a version a queued or running run is using); with a
  bucket, also the packs kept in it (packs/<name>/) of versions that no longer exist.

Kept files are found by listing the storage (dlsite/storage.py: the local folder or a bucket, the
same way), only under the site's own folders (datasets, uploads, versions, models, classifications,
and with a bucket packs); the local PACK_DIR is walked on this host's disk. A listing never follows a
link nor names one, so nothing outside is touched. A dry run lists and removes nothing.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.utils import timezone

from dlsite import storage
from dlsite.disk import KeptFolder, entries, kept_numbered_folders, last_touched, tree_size

from .diskuse import (
    CLASSIFICATION_ZIPS_DIR,
    CLASSIFICATIONS_DIR,
    IMAGES_DIR,
    MODELS_DIRNAME,
    PACKS_DIR,
    STAGING_DIR,
    UNSURE_DIR,
    UPLOADS_DIR,
    VERSIONS_DIR,
)
from .models import KINDS

log = logging.getLogger(__name__)

PACK_NAME = re.compile(r"^version-(\d+)-")  # training_app.runner.pack_folder
PACK_BUILDING = ".building-"  # mlcore.packing.build_pack's temporary folders


@dataclass
class Removed:
    kind: str
    name: str  # a storage name (a file, or a folder removed whole), or a path in the local PACK_DIR
    bytes: int


@dataclass
class CleanupResult:
    dry_run: bool
    removed: list[Removed] = field(default_factory=list)
    abandoned_uploads: int = 0
    seconds: float = 0.0

    def figures(self) -> dict:
        out = {kind: {"count": 0, "bytes": 0} for kind in KINDS}
        for item in self.removed:
            out[item.kind]["count"] += 1
            out[item.kind]["bytes"] += item.bytes
        return out


def _inside(root: Path, path: Path) -> bool:
    """Whether `path` (a link itself not followed) lies strictly inside `root`."""
    real_root = os.path.realpath(root)
    real_parent = os.path.realpath(path.parent)
    return real_parent == real_root or real_parent.startswith(real_root + os.sep)


class Cleanup:
    def __init__(self, dry_run=False):
        self.result = CleanupResult(dry_run)
        self.packs = Path(settings.PACK_DIR)
        self.now = time.time()
        self.grace_cutoff = self.now - settings.CLEANUP_GRACE_S

    def run(self) -> CleanupResult:
        started = time.monotonic()
        self.abandon_stale_folders()
        self.remove_used_upload_files()
        self.remove_models_of_deleted_runs()
        self.remove_classification_files()
        self.remove_unsure_pictures()
        self.remove_orphan_files()
        self.remove_packs()
        self.remove_bucket_packs()
        self.result.seconds = time.monotonic() - started
        return self.result

    # Removing

    def remove(self, kind: str, name: str, size: int, folder: bool = False) -> None:
        """Remove a kept file, or everything kept under a folder's name (in a dry run, only note it)."""
        self.result.removed.append(Removed(kind, name, size))
        if self.result.dry_run:
            return
        try:
            if folder:
                storage.delete_folder(name)
            else:
                storage.delete(name)
        except Exception as error:  # one file that will not go (a disk's error, a bucket's) must not stop the rest
            log.warning("clean-up could not remove %s: %s", name, error)

    def remove_folder(self, kind: str, folder: KeptFolder) -> None:
        self.remove(kind, folder.name, folder.bytes, folder=True)

    def remove_local(self, kind: str, path: Path, root: Path) -> None:
        """Remove a file, link or folder under `root` on this host's disk (the local PACK_DIR)."""
        path = Path(path)
        if not _inside(root, path) or not os.path.lexists(path):
            return
        is_folder = path.is_dir() and not path.is_symlink()
        self.result.removed.append(Removed(kind, str(path), tree_size(path)))
        if self.result.dry_run:
            return
        try:
            if is_folder:
                shutil.rmtree(path)  # removes links inside, never follows them
            else:
                path.unlink()
        except FileNotFoundError:
            pass
        except OSError as error:  # one file that will not go must not stop the rest
            log.warning("clean-up could not remove %s: %s", path, error)

    # Uploads

    def abandon_stale_folders(self) -> None:
        """Folders whose sending stopped (dlsite/uploads.py says when): a dataset's fails and its files
        go; one sent to be classified fails, keeping what arrived (Retry classifies it)."""
        from datasets_app.folder_upload import receiver as dataset_folders
        from predict_app.many import receiver as classification_folders

        for receiver in (dataset_folders, classification_folders):
            for row in receiver.abandoned(self.now):
                # Conditional: a part arriving right now moves nothing, and finishing wins.
                if not self.result.dry_run and not receiver.abandon(row):
                    continue
                self.result.abandoned_uploads += 1
                if not receiver.keeps_abandoned_parts:
                    name = receiver.prefix(row)
                    files = list(storage.listing(name))
                    if files:
                        self.remove("staging", name, sum(item.size for item in files), folder=True)

    def remove_used_upload_files(self) -> None:
        """Zips already read, and received folders of finished uploads (of failed or cancelled ones once they
        can no longer be retried); folders of no upload once past the grace."""
        from datasets_app.models import Upload

        kept = {item.name: item for item in storage.listing(UPLOADS_DIR)}
        retry_until = timezone.now() - timedelta(seconds=settings.UPLOAD_ABANDON_S)
        finished = (Upload.objects.filter(status=Upload.Status.DONE)
                    | Upload.objects.filter(status__in=[Upload.Status.FAILED, Upload.Status.CANCELLED],
                                            finished_at__lt=retry_until))
        for upload_id, name in finished.exclude(file="").values_list("id", "file"):
            if name in kept:
                self.remove("zips", name, kept[name].size)
            if not self.result.dry_run:
                Upload.objects.filter(id=upload_id, file=name).update(file="")

        folders = kept_numbered_folders(STAGING_DIR, [item for name, item in kept.items()
                                                      if name.startswith(STAGING_DIR + "/")])
        present = set(Upload.objects.filter(id__in=folders).values_list("id", flat=True))
        done = set(finished.filter(id__in=folders).values_list("id", flat=True))
        for number, folder in folders.items():
            if number in done or (number not in present and folder.newest < self.grace_cutoff):
                self.remove_folder("staging", folder)

    # Models

    def remove_models_of_deleted_runs(self) -> None:
        from training_app.models import TrainingRun

        folders = kept_numbered_folders(MODELS_DIRNAME)
        existing = set(TrainingRun.objects.filter(id__in=folders).values_list("id", flat=True))
        for number, folder in folders.items():
            if number not in existing:
                self.remove_folder("models", folder)

    # Classifications

    def remove_classification_files(self) -> None:
        """Folders of classifications that no longer exist; zips of finished ones; zips no row names
        once past the grace (a crash between storing one and its row)."""
        from predict_app.models import Classification

        files = list(storage.listing(CLASSIFICATIONS_DIR))
        folders = kept_numbered_folders(CLASSIFICATIONS_DIR, files)
        existing = set(Classification.objects.filter(id__in=folders).values_list("id", flat=True))
        for number, folder in folders.items():
            if number not in existing:
                self.remove_folder("classifications", folder)
        named = Classification.objects.exclude(zip_file="")
        kept = set(named.values_list("zip_file", flat=True))  # before the finished ones' are let go below
        sizes = {item.name: item.size for item in files}
        # A failed one's zip stays: Retry reads it again.
        for job_id, name in named.filter(status=Classification.Status.DONE).values_list("id", "zip_file"):
            if name in sizes:
                self.remove("classifications", name, sizes[name])
            if not self.result.dry_run:
                Classification.objects.filter(id=job_id, zip_file=name).update(zip_file="")
        for item in files:
            if (item.name.startswith(CLASSIFICATION_ZIPS_DIR + "/") and item.name not in kept
                    and item.modified.timestamp() < self.grace_cutoff):
                self.remove("classifications", item.name, item.size)

    # Pictures a model was not sure about

    def remove_unsure_pictures(self) -> None:
        from predict_app.models import UnsurePicture

        files = {item.name: item for item in storage.listing(UNSURE_DIR)}
        cutoff = timezone.now() - timedelta(days=settings.UNSURE_KEEP_DAYS)
        for picture in UnsurePicture.objects.filter(created_at__lt=cutoff).iterator():
            name = picture.file.name
            self.remove("unsure", name, files[name].size if name in files else 0)
            if not self.result.dry_run:
                picture.delete()
        named = set(UnsurePicture.objects.values_list("file", flat=True))
        for name, item in files.items():
            if name not in named and item.modified.timestamp() < self.grace_cutoff:
                self.remove("unsure", name, item.size)

    # Files no row refers to

    def referenced_files(self) -> set[str]:
        """Storage names of every file a row refers to, the images in manifests included: a run's
        frozen version keeps meaning its pictures after they are deleted from the dataset."""
        from datasets_app.models import DatasetVersion, Image, Upload
        from datasets_app.versions import manifest_rows

        names = set()
        for file, thumbnail in Image.objects.values_list("file", "thumbnail").iterator(chunk_size=10_000):
            names.add(file)
            if thumbnail:
                names.add(thumbnail)
        names.update(Upload.objects.exclude(file="").values_list("file", flat=True))
        for version in DatasetVersion.objects.all():
            names.add(version.manifest.name)
            try:
                names.update(row["file"] for row in manifest_rows(version))
            except Exception as error:  # a missing or damaged manifest: its images cannot be known
                log.warning("clean-up could not read the manifest of version %s: %s", version.id, error)
        return names

    def protected_folders(self) -> set[tuple[str, ...]]:
        """Folders left alone as a whole: received folders and models (the steps before judged them), and
        the images of datasets an upload is being read into (a file stored again keeps its old date, and
        its row comes only later)."""
        from datasets_app.models import Upload

        protected = {("uploads", "folders", str(n)) for n in kept_numbered_folders(STAGING_DIR)}
        protected.update((MODELS_DIRNAME, str(n)) for n in kept_numbered_folders(MODELS_DIRNAME))
        busy = Upload.objects.filter(status__in=Upload.ACTIVE)
        protected.update((IMAGES_DIR, str(id)) for id in busy.values_list("dataset_id", flat=True))
        return protected

    def remove_orphan_files(self) -> None:
        referenced = self.referenced_files()
        protected = self.protected_folders()
        # Other data folders may have been configured inside the local MEDIA_ROOT: never judge their files.
        elsewhere = {os.path.realpath(p) for p in (settings.PACK_DIR, settings.PRETRAINED_WEIGHTS_DIR,
                                                   settings.DATA_DIR, settings.STATIC_ROOT) if p}
        for top in (IMAGES_DIR, UPLOADS_DIR, VERSIONS_DIR, MODELS_DIRNAME):
            if storage.is_local():
                root = storage.local_folder(top)
                if os.path.realpath(root) in elsewhere or root.is_symlink():
                    continue
            for item in storage.listing(top):
                parts = PurePosixPath(item.name).parts
                if parts[:2] in protected or parts[:3] in protected:
                    continue
                if item.name in referenced:
                    continue
                if item.modified.timestamp() >= self.grace_cutoff:
                    continue  # perhaps an upload in progress: its rows are not written yet
                self.remove("orphans", item.name, item.size)

    # Packs

    def remove_packs(self) -> None:
        """The packs in this host's PACK_DIR."""
        from datasets_app.models import DatasetVersion
        from training_app.models import TrainingRun

        packs = {}
        for entry in entries(self.packs):
            if not entry.is_dir(follow_symlinks=False):
                continue
            if entry.name.startswith(PACK_BUILDING):
                if last_touched(entry.path) < self.grace_cutoff:  # left by a builder that died
                    self.remove_local("packs", Path(entry.path), self.packs)
            elif match := PACK_NAME.match(entry.name):
                packs[Path(entry.path)] = int(match.group(1))
        versions = set(packs.values())
        existing = set(DatasetVersion.objects.filter(id__in=versions).values_list("id", flat=True))
        in_use = set(TrainingRun.objects.active().filter(version_id__in=versions).values_list("version_id", flat=True))
        kept = []
        for path, version in packs.items():
            if version not in existing:
                self.remove_local("packs", path, self.packs)
            else:
                kept.append((path, version))
        sizes = {path: tree_size(path) for path, _ in kept}
        total, limit = sum(sizes.values()), settings.PACK_CACHE_MAX_GB * 1024**3
        for path, version in sorted(kept, key=lambda item: last_touched(item[0], reads_count=True)):
            if total <= limit:
                break
            if version in in_use:
                continue
            self.remove_local("packs", path, self.packs)
            total -= sizes[path]

    def remove_bucket_packs(self) -> None:
        """With a bucket, the packs kept in it (packs/<name>/) whose version no longer exists. (Each
        host's copies of them are its cache's: it trims them itself.)"""
        from datasets_app.models import DatasetVersion

        if storage.is_local():
            return
        folders: dict[str, KeptFolder] = {}
        for item in storage.listing(PACKS_DIR):
            parts = PurePosixPath(item.name).parts
            if len(parts) >= 3:
                folders.setdefault(parts[1], KeptFolder(f"{PACKS_DIR}/{parts[1]}")).add(item)
        versions = {name: int(match.group(1)) for name in folders if (match := PACK_NAME.match(name))}
        existing = set(DatasetVersion.objects.filter(id__in=set(versions.values())).values_list("id", flat=True))
        for name, version in versions.items():
            if version not in existing:
                self.remove_folder("packs", folders[name])


def run_cleanup(dry_run=False) -> CleanupResult:
    """One clean-up; a real one is recorded for the staff page."""
    from .models import CleanupReport

    result = Cleanup(dry_run).run()
    if not dry_run:
        CleanupReport.objects.create(figures=result.figures(), abandoned_uploads=result.abandoned_uploads,
                                     seconds=result.seconds)
    log.info("clean-up%s: %s", " (dry run)" if dry_run else "", result.figures())
    return result
