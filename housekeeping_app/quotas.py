"""Per-person limits, as settings (0 means no limit). Each check returns None, or a message in plain
words saying what limit was reached and what to do about it."""
from __future__ import annotations

from django.conf import settings

from mlcore.words import count

from .diskuse import human_bytes, user_bytes


def images_left(user) -> int | None:
    """How many more images this person may store; None when there is no limit."""
    from datasets_app.models import Image

    if not settings.QUOTA_IMAGES:
        return None
    return max(0, settings.QUOTA_IMAGES - Image.objects.filter(dataset__owner=user).count())


def images_full_message() -> str:
    return (f"You have reached your limit of {settings.QUOTA_IMAGES:,} images. Delete images or datasets "
            "you no longer need to make room.")


def images_refusal(user) -> str | None:
    return images_full_message() if images_left(user) == 0 else None


def bytes_refusal(user, adding: int = 0) -> str | None:
    """Refuses when the stored images and uploads, with `adding` more bytes, would pass QUOTA_BYTES."""
    if not settings.QUOTA_BYTES:
        return None
    used = user_bytes(user)
    if used + adding <= settings.QUOTA_BYTES:
        return None
    limit = human_bytes(settings.QUOTA_BYTES)
    if used >= settings.QUOTA_BYTES:
        return (f"Your images and uploads already take {human_bytes(used)}, and your limit is {limit}. "
                "Delete datasets you no longer need to make room.")
    return (f"This upload ({human_bytes(adding)}) would take your images and uploads to "
            f"{human_bytes(used + adding)}, over your limit of {limit}. Send fewer files, or delete "
            "datasets you no longer need.")


def upload_refusal(user, adding: int = 0) -> str | None:
    """The checks made before an upload starts."""
    return images_refusal(user) or bytes_refusal(user, adding)


def queued_runs_refusal(user) -> str | None:
    from training_app.models import TrainingRun

    limit = settings.QUOTA_QUEUED_RUNS
    if not limit or TrainingRun.objects.filter(owner=user).active().count() < limit:
        return None
    return (f"You have reached your limit of {count(limit, 'run')} waiting or training at "
            "once; wait for one to finish or stop one.")
