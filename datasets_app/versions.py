"""Immutable dataset versions: what a training run learns from.

Starting a run freezes the dataset's trainable images (file, label, split) into
a manifest file. When nothing changed since the last version, that version is
used again, so ten runs on the same labels share one version.
"""
from __future__ import annotations

import gzip
import hashlib
import json

from django.core.files.base import ContentFile
from django.db import transaction

from .models import SPLITS, Dataset, DatasetVersion

COLUMNS = ["image_id", "file", "label", "split", "sha256", "name"]


def freeze(dataset: Dataset, user) -> DatasetVersion:
    with transaction.atomic():
        # Lock the dataset row so two runs started at once agree on one version number.
        Dataset.objects.select_for_update().filter(id=dataset.id).first()
        rows = list(dataset.trainable_images().order_by("id").values_list(
            "id", "file", "image_class__name", "split", "sha256", "original_name"))
        fingerprint = hashlib.sha256(
            json.dumps([[file, label, split] for _, file, label, split, _, _ in rows]).encode()
        ).hexdigest()
        latest = dataset.versions.order_by("-number").first()
        if latest and latest.fingerprint == fingerprint:
            return latest
        split_counts = dict.fromkeys(SPLITS, 0)
        for row in rows:
            split_counts[row[3]] += 1
        version = DatasetVersion(
            dataset=dataset, number=(latest.number + 1) if latest else 1, created_by=user,
            fingerprint=fingerprint, image_count=len(rows), split_counts=split_counts,
            class_names=sorted({row[2] for row in rows}),
        )
        payload = gzip.compress(json.dumps({"columns": COLUMNS, "rows": rows}).encode(), compresslevel=6)
        version.manifest.save(f"{dataset.id}/version-{version.number}-{fingerprint[:12]}.json.gz",
                              ContentFile(payload), save=False)
        version.save()
        return version


def manifest_rows(version: DatasetVersion) -> list[dict]:
    """The frozen images of a version: dicts with the keys of COLUMNS."""
    with version.manifest.open("rb") as f:
        manifest = json.loads(gzip.decompress(f.read()))
    columns = manifest["columns"]
    return [dict(zip(columns, row)) for row in manifest["rows"]]
