"""What the site keeps on disk, per kind of file and per person, measured from the files themselves.

Used by the staff page "Disk use" and by the clean-up for its folders; the walking and sizing of files
is dlsite/disk.py, shared with the per-person byte quota.
"""
from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.core.cache import cache

from dlsite.disk import entries, entry_size, numbered_folders, tree_size, walk_files
from mlcore.words import whole_number

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
