"""Measuring what the site keeps on disk, from the files themselves (os.scandir, no symlink followed).

Used by the staff page "Disk use", by the per-user byte quota, and by the clean-up for its figures.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from django.conf import settings
from django.core.cache import cache

from mlcore.words import file_size, whole_number

# The folders under MEDIA_ROOT the site writes to; nothing else there is the site's to judge.
IMAGES_DIR, UPLOADS_DIR, VERSIONS_DIR, MODELS_DIRNAME = "datasets", "uploads", "versions", "models"
STAGING_DIR = "uploads/folders"  # datasets_app.models.STAGING_ROOT
CLASSIFICATIONS_DIR = "classifications"  # predict_app.models.FOLDER: <id>/ pictures and thumbnails, zips/
CLASSIFICATION_ZIPS_DIR = "classifications/zips"
THUMBS_DIRNAME = "thumbs"  # datasets/<id>/thumbs/..., see mlcore.examine
KIND_LABELS = {
    "images": "Images",
    "thumbnails": "Thumbnails",
    "uploads": "Uploaded zips",
    "staging": "Folders being received",
    "models": "Trained models",
    "classifications": "Pictures classified with a model",
    "manifests": "Dataset versions (lists of images)",
    "packs": "Packed images for training (a cache)",
    "other": "Anything else",
}
CACHE_KEY, CACHE_SECONDS = "housekeeping:disk-use", 60


def entries(folder) -> list[os.DirEntry]:
    """The entries of a folder; none when it is missing or unreadable."""
    try:
        with os.scandir(folder) as found:
            return list(found)
    except OSError:
        return []


def entry_size(entry: os.DirEntry) -> int:
    try:
        return entry.stat(follow_symlinks=False).st_size
    except OSError:
        return 0


def walk_files(folder):
    """(DirEntry, relative parts) of every file or link under `folder`, never entering a linked folder."""
    stack = [(folder, ())]
    while stack:
        current, parts = stack.pop()
        for entry in entries(current):
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, (*parts, entry.name)))
            else:
                yield entry, (*parts, entry.name)


def tree_size(path) -> int:
    """Bytes of a file, or of every file under a folder."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        try:
            return path.lstat().st_size
        except OSError:
            return 0
    return sum(entry_size(entry) for entry, _ in walk_files(path))


def last_touched(path, reads_count=False) -> float:
    """The newest modification time of a folder and of everything in it; with `reads_count`, the
    newest access time of its files too (when a pack was last read). The folder's own access time
    never counts: it changes whenever the folder is listed, by this clean-up too."""
    path = Path(path)
    try:
        newest = path.lstat().st_mtime
    except OSError:
        return 0.0
    for entry, _ in walk_files(path):
        try:
            stat = entry.stat(follow_symlinks=False)
            newest = max(newest, stat.st_mtime, stat.st_atime if reads_count else 0.0)
        except OSError:
            pass
    return newest


def numbered_folders(folder) -> dict[int, os.DirEntry]:
    """{number: entry} of the sub-folders of `folder` named by a number (a row's id)."""
    numbered = ((whole_number(e.name), e) for e in entries(folder) if e.is_dir(follow_symlinks=False))
    return {number: e for number, e in numbered if number is not None}


def measure() -> dict:
    """Bytes on disk per kind of file and per user, with the time measured; one pass over the files."""
    from django.contrib.auth import get_user_model

    from datasets_app.models import Dataset, Upload
    from predict_app.models import Classification
    from training_app.models import TrainingRun

    started = time.monotonic()
    media = Path(settings.MEDIA_ROOT)
    kinds = dict.fromkeys(KIND_LABELS, 0)
    users: dict[int, dict[str, int]] = {}

    def add(owner_id, what, size):
        if owner_id is not None:
            row = users.setdefault(owner_id, {"images": 0, "models": 0, "uploads": 0, "classified": 0})
            row[what] += size

    owners = dict(Dataset.objects.values_list("id", "owner_id"))
    for number, entry in numbered_folders(media / IMAGES_DIR).items():
        for file, parts in walk_files(entry.path):
            size = entry_size(file)
            kinds["thumbnails" if parts[0] == THUMBS_DIRNAME else "images"] += size
            add(owners.get(number), "images", size)

    run_owners = dict(TrainingRun.objects.values_list("id", "owner_id"))
    for number, entry in numbered_folders(media / MODELS_DIRNAME).items():
        size = tree_size(entry.path)
        kinds["models"] += size
        add(run_owners.get(number), "models", size)

    upload_owners = dict(Upload.objects.values_list("id", "dataset__owner_id"))
    zip_owners = dict(Upload.objects.exclude(file="").values_list("file", "dataset__owner_id"))
    for file, parts in walk_files(media / UPLOADS_DIR):
        size = entry_size(file)
        if parts[0] == "folders" and len(parts) > 2:
            kinds["staging"] += size
            add(upload_owners.get(whole_number(parts[1])), "uploads", size)
        else:
            kinds["uploads"] += size
            add(zip_owners.get("/".join((UPLOADS_DIR, *parts))), "uploads", size)

    job_owners = dict(Classification.objects.values_list("id", "owner_id"))
    for number, entry in numbered_folders(media / CLASSIFICATIONS_DIR).items():
        size = tree_size(entry.path)
        kinds["classifications"] += size
        add(job_owners.get(number), "classified", size)
    zip_owners = dict(Classification.objects.exclude(zip_file="").values_list("zip_file", "owner_id"))
    for file, parts in walk_files(media / CLASSIFICATION_ZIPS_DIR):
        size = entry_size(file)
        kinds["classifications"] += size
        add(zip_owners.get("/".join((CLASSIFICATION_ZIPS_DIR, *parts))), "classified", size)

    kinds["manifests"] = tree_size(media / VERSIONS_DIR)
    known = {IMAGES_DIR, UPLOADS_DIR, VERSIONS_DIR, MODELS_DIRNAME, CLASSIFICATIONS_DIR}
    for entry in entries(media):
        if entry.name not in known:
            kinds["other"] += tree_size(entry.path)
    kinds["packs"] = tree_size(settings.PACK_DIR)

    names = dict(get_user_model().objects.filter(id__in=users).values_list("id", "username"))
    people = sorted(({"username": names.get(id, f"(deleted user {id})"), **row, "total": sum(row.values())}
                     for id, row in users.items()), key=lambda row: -row["total"])
    return {"kinds": kinds, "users": people, "measured_at": time.time(), "seconds": time.monotonic() - started}


def measure_cached() -> dict:
    """`measure()`, kept for a minute: a large site has hundreds of thousands of files to look at."""
    found = cache.get(CACHE_KEY)
    if found is None:
        found = measure()
        cache.set(CACHE_KEY, found, CACHE_SECONDS)
    return found


def user_bytes(user) -> int:
    """Bytes of one person's stored images (thumbnails included) and uploads (zips and received folders)."""
    from datasets_app.models import Upload

    media = Path(settings.MEDIA_ROOT)
    total = sum(tree_size(media / IMAGES_DIR / str(id)) for id in user.datasets.values_list("id", flat=True))
    uploads = Upload.objects.filter(dataset__owner=user)
    total += sum(tree_size(media / name) for name in uploads.exclude(file="").values_list("file", flat=True))
    total += sum(tree_size(media / STAGING_DIR / str(id))
                 for id in uploads.filter(kind=Upload.Kind.FOLDER).exclude(status=Upload.Status.DONE)
                 .values_list("id", flat=True))
    return total


# The site's one wording of sizes (mlcore.words.file_size), under the name housekeeping's quotas import.
human_bytes = file_size
