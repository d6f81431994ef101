from celery import shared_task

from .cleanup import run_cleanup


@shared_task(name="housekeeping.cleanup")
def cleanup():
    """The hourly clean-up (settings.CLEANUP_INTERVAL_S), on the default queue."""
    run_cleanup()
