"""A training process's heartbeat: proof, every few seconds, that the run's worker is alive.

Progress writes also refresh it, but loading data, a long epoch or the evaluation can go a
minute without one; this thread keeps beating through them. When the process dies (SIGKILL,
out of memory, the machine restarts) the beats stop, and the reaper queues the run again.
"""
import threading

from django.conf import settings
from django.db import connection
from django.utils import timezone


class Heartbeat:
    def __init__(self, run, interval_s=None):
        self.run = run
        self.interval_s = interval_s or settings.HEARTBEAT_INTERVAL_S
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-run-{run.id}", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stopped.set()
        self.thread.join()

    def _beat(self):
        from .models import TrainingRun

        try:
            while not self.stopped.wait(self.interval_s):
                TrainingRun.objects.filter(id=self.run.id, status=TrainingRun.Status.RUNNING).update(
                    heartbeat_at=timezone.now())
        finally:
            connection.close()  # this thread's own connection
