from celery import shared_task

from training_app.starting import start_all_waiting

from .cleanup import run_cleanup


@shared_task(name="housekeeping.cleanup")
def cleanup():
    """The hourly clean-up (settings.CLEANUP_INTERVAL_S), on the default queue; it also starts the runs of
    searches waiting their turn that have room, in case a run's end could not."""
    run_cleanup()
    start_all_waiting()
