"""What the site keeps, per kind of file and per person, measured from the kept files themselves.

Used by the staff page "Disk use" and by the clean-up for its folders. The kept files are listed
through the storage (dlsite/storage.py: the local folder or a bucket, the same way); the packs in
the local PACK_DIR are measured on this host's disk (dlsite/disk.py, shared with the per-person byte
quota).
"""
from __future__ import annotations

import time
from pathlib import PurePosixPath

from django.conf import settings
from django.core.cache import cache

from dlsite import storage
from dlsite.disk import kept_file_size, kept_tops, tree_size
from mlcore.words import whole_number

# The folders of the storage the site writes to; nothing else there is the site's to judge.
IMAGES_DIR, UPLOADS_DIR, VERSIONS_DIR, MODELS_DIRNAME = "datasets", "uploads", "versions", "models"
STAGING_DIR = "uploads/folders"  # datasets_app.models.STAGING_ROOT
CLASSIFICATIONS_DIR = "classifications"  # predict_app.models.FOLDER: <id>/ pictures and thumbnails, zips/
CLASSIFICATION_ZIPS_DIR = "classifications/zips"
UNSURE_DIR = "unsure"  # predict_app.models.UNSURE_FOLDER: <run id>/ pictures a model was not sure about
PACKS_DIR = "packs"  # with a bucket: packs/<name>/ (training_app keeps them there)
THUMBS_DIRNAME = "thumbs"  # datasets/<id>/thumbs/..., see mlcore.examine
KIND_LABELS = {
    "images": "Images",
    "thumbnails": "Thumbnails",
    "uploads": "Uploaded zips",
    "staging": "Folders being received",
    "models": "Trained models",
    "classifications": "Pictures classified with a model",
    "unsure": "Pictures models were not sure about (kept with consent)",
    "manifests": "Dataset versions (lists of images)",
    "packs": "Packed images for training (a cache)",
    "other": "Anything else",
}
CACHE_KEY, CACHE_SECONDS = "housekeeping:disk-use", 60


def measure() -> dict:
    """Bytes kept per kind of file and per user, with the time measured; one listing of the storage."""
    from django.contrib.auth import get_user_model

    from datasets_app.models import Dataset, Upload
    from predict_app.models import Classification
    from training_app.models import TrainingRun

    started = time.monotonic()
    kinds = dict.fromkeys(KIND_LABELS, 0)
    users: dict[int, dict[str, int]] = {}

    def add(owner_id, what, size):
        if owner_id is not None:
            row = users.setdefault(owner_id, {"images": 0, "models": 0, "uploads": 0, "classified": 0})
            row[what] += size

    owners = {
        IMAGES_DIR: dict(Dataset.objects.values_list("id", "owner_id")),
        MODELS_DIRNAME: dict(TrainingRun.objects.values_list("id", "owner_id")),
        CLASSIFICATIONS_DIR: dict(Classification.objects.values_list("id", "owner_id")),
    }
    upload_owners = dict(Upload.objects.values_list("id", "dataset__owner_id"))
    zip_owners = dict(Upload.objects.exclude(file="").values_list("file", "dataset__owner_id"))
    zip_owners.update(Classification.objects.exclude(zip_file="").values_list("zip_file", "owner_id"))

    folders, files = kept_tops()
    for top in folders:
        for item in storage.listing(top):
            parts, size = PurePosixPath(item.name).parts, item.size
            number = whole_number(parts[1]) if len(parts) > 2 else None
            if top == IMAGES_DIR and number is not None:
                kinds["thumbnails" if parts[2] == THUMBS_DIRNAME else "images"] += size
                add(owners[IMAGES_DIR].get(number), "images", size)
            elif top == MODELS_DIRNAME and number is not None:
                kinds["models"] += size
                add(owners[MODELS_DIRNAME].get(number), "models", size)
            elif top == UPLOADS_DIR:
                if parts[1] == "folders" and len(parts) > 3:
                    kinds["staging"] += size
                    add(upload_owners.get(whole_number(parts[2])), "uploads", size)
                else:
                    kinds["uploads"] += size
                    add(zip_owners.get(item.name), "uploads", size)
            elif top == CLASSIFICATIONS_DIR and (number is not None or parts[1] == "zips"):
                kinds["classifications"] += size
                add(owners[CLASSIFICATIONS_DIR].get(number) if number is not None else zip_owners.get(item.name),
                    "classified", size)
            elif top == UNSURE_DIR and number is not None:
                kinds["unsure"] += size
                add(owners[MODELS_DIRNAME].get(number), "classified", size)
            elif top == VERSIONS_DIR:
                kinds["manifests"] += size
            elif top == PACKS_DIR and not storage.is_local():
                kinds["packs"] += size
            elif top not in (IMAGES_DIR, MODELS_DIRNAME, CLASSIFICATIONS_DIR, UNSURE_DIR):
                kinds["other"] += size
    for name in files:
        kinds["other"] += kept_file_size(name)
    kinds["packs"] += tree_size(settings.PACK_DIR)  # this host's own

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
