"""A training process's heartbeat: proof, every few seconds, that the run's worker is alive.

Progress writes also refresh it, but loading data, a long epoch or the evaluation can go a
minute without one; this thread keeps beating through them. When the process dies (SIGKILL,
out of memory, the machine restarts) the beats stop, and the reaper queues the run again.

A beat is conditional on the worker's claim (the run running, at the attempt it claimed). When
it matches no row the claim is gone (the reaper gave the run to another worker while this one
was frozen, or ended it): the thread marks the run object, and the training loop stops at its
next batch or write (TrainingRun.record). A database error in one beat (a dropped connection,
a restarted server) is logged and the next beat tries again on a fresh connection.
"""
import logging
import threading

from django.conf import settings
from django.db import connection
from django.utils import timezone

logger = logging.getLogger(__name__)


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
        try:
            while not self.stopped.wait(self.interval_s):
                try:
                    still_claimed = self.beat_once()
                except Exception as exc:  # noqa: BLE001 (a beat that stopped for good would be worse)
                    logger.warning("Run %s: a heartbeat failed (%s); trying again in %s s",
                                   self.run.id, exc, self.interval_s)
                    connection.close()  # a broken connection is not reused: the next beat opens a new one
                    continue
                if not still_claimed:
                    logger.warning("Run %s: this worker's claim (attempt %s) was taken over; stopping",
                                   self.run.id, self.run.attempts)
                    self.run.claim_lost = True
                    return
        finally:
            connection.close()  # this thread's own connection

    def beat_once(self):
        """One beat; False when the worker no longer holds its claim on the run."""
        return bool(self.run.claimed_row().update(heartbeat_at=timezone.now()))
