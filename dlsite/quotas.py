"""Per-person limits, as settings (0 means no limit). Each check returns None, or a message in plain
words saying what limit was reached and what to do about it.

Every app may check a limit from here without importing the app that keeps what is counted: that app
registers how to count it for a person (`register`, in its AppConfig.ready). datasets_app counts
images and bytes (datasets_app/usage.py), training_app the runs waiting or training.
"""
from __future__ import annotations

from typing import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from mlcore.words import count, file_size


# What a limit counts -> {name of the counter: counter(user) -> int}; a figure is the sum of its counters.
COUNTERS: dict[str, dict[str, Callable]] = {"images": {}, "bytes": {}, "queued_runs": {}}


def register(what: str, counter: Callable) -> None:
    """Adds `counter(user)` to the figure `what` ("images": images stored, "bytes": bytes of stored images
    and uploads, "queued_runs": runs waiting or training). Registering the same counter again replaces it."""
    COUNTERS[what][f"{counter.__module__}.{counter.__qualname__}"] = counter


def used(what: str, user) -> int:
    counters = COUNTERS[what].values()
    if not counters:  # a limit that silently counts nothing would never refuse anything
        raise ImproperlyConfigured(f"No app registered how to count {what!r} for the quotas.")
    return sum(counter(user) for counter in counters)


def images_left(user) -> int | None:
    """How many more images this person may store; None when there is no limit."""
    if not settings.QUOTA_IMAGES:
        return None
    return max(0, settings.QUOTA_IMAGES - used("images", user))


def images_full_message() -> str:
    return (f"You have reached your limit of {settings.QUOTA_IMAGES:,} images. Delete images or datasets "
            "you no longer need to make room.")


def images_refusal(user) -> str | None:
    return images_full_message() if images_left(user) == 0 else None


def bytes_refusal(user, adding: int = 0) -> str | None:
    """Refuses when the stored images and uploads, with `adding` more bytes, would pass QUOTA_BYTES."""
    if not settings.QUOTA_BYTES:
        return None
    taken = used("bytes", user)
    if taken + adding <= settings.QUOTA_BYTES:
        return None
    limit = file_size(settings.QUOTA_BYTES)
    if taken >= settings.QUOTA_BYTES:
        return (f"Your images and uploads already take {file_size(taken)}, and your limit is {limit}. "
                "Delete datasets you no longer need to make room.")
    return (f"This upload ({file_size(adding)}) would take your images and uploads to "
            f"{file_size(taken + adding)}, over your limit of {limit}. Send fewer files, or delete "
            "datasets you no longer need.")


def upload_refusal(user, adding: int = 0) -> str | None:
    """The checks made before an upload starts."""
    return images_refusal(user) or bytes_refusal(user, adding)


def queued_runs_left(user) -> int | None:
    """How many more runs this person may have waiting or training now; None when there is no limit."""
    if not settings.QUOTA_QUEUED_RUNS:
        return None
    return max(0, settings.QUOTA_QUEUED_RUNS - used("queued_runs", user))


def queued_runs_refusal(user, adding: int = 1) -> str | None:
    """Refuses when `adding` more runs would pass QUOTA_QUEUED_RUNS."""
    limit = settings.QUOTA_QUEUED_RUNS
    if not limit:
        return None
    taken = used("queued_runs", user)
    if taken + adding <= limit:
        return None
    if adding == 1 or taken >= limit:
        return (f"You have reached your limit of {count(limit, 'run')} waiting or training at "
                "once; wait for one to finish or stop one.")
    already = f" ({taken} already {'is' if taken == 1 else 'are'})" if taken else ""
    return (f"These {adding} runs would pass your limit of {count(limit, 'run')} waiting or training at "
            f"once{already}: try fewer, or wait for some to finish.")
