"""Getting a weights file to where the site keeps them (pretrained_app/weights.py) for the staff page,
the Celery task and the management command; the checking itself is mlcore.pretrained's."""
import logging
import time

from django.conf import settings

from dlsite.jobs import ClaimLost
from mlcore.pretrained import CATALOGUE, WeightsRefused, fetch

from .weights import keep, weights_folder  # noqa: F401 (weights_folder: where callers found it before)

logger = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.5  # how often a download writes its progress to its row


def download_url(name):
    return CATALOGUE[name].url(settings.PRETRAINED_WEIGHTS_URL or None)


def run_download(download):
    """Download the file a WeightsDownload row asks for, writing its progress on the row as it goes.
    Ends with the row done, or failed with the reason in plain words; ClaimLost when another
    attempt has it."""
    last = 0.0

    def progress(done, total):
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S or (total and done >= total):
            last = now
            download.record_progress(done, total)

    try:
        size = keep(lambda folder: fetch(download.base, folder, settings.PRETRAINED_WEIGHTS_URL or None, progress))
    except ClaimLost:
        raise
    except WeightsRefused as refusal:
        logger.warning("Download of the %s weights refused: %s", download.base, refusal)
        download.finish(str(refusal))
        return
    except Exception as exc:  # anything else still ends the row, never leaves it "running"
        logger.exception("Download of the %s weights failed", download.base)
        download.finish(f"The download stopped with an error: {type(exc).__name__}: {str(exc)[:300]}")
        return
    download.record_progress(size, size)
    download.finish()
