"""A worker's heartbeat: proof, every few seconds, that the process holding a claimed job (any
dlsite.jobs.Job: an upload being read, a model being trained, ...) is alive.

Progress writes are not enough: reading a big archive, loading data, a long epoch or the
evaluation can go a minute without one, so a thread beats on its own. When the process dies
(SIGKILL, out of memory, the machine restarts) the beats stop, and the job's reaper queues it
again after several missed beats.

Each beat is conditional on the claim this attempt holds. When it matches no row the claim is
gone (the reaper gave the job to another attempt while this one was frozen, or it was
cancelled): the thread sets `lost` and the job's `claim_lost`, and stops; the job stops before its
next write. A
database error in one beat (a dropped connection, a restarted server) is not proof of that: it
is logged, and the next beat tries again on a fresh connection.
"""
import logging
import threading

from django.conf import settings
from django.db import connection
from django.utils import timezone

logger = logging.getLogger(__name__)


class Heartbeat:
    """Beats in a thread for `job` while the `with` block runs."""

    def __init__(self, job, interval_s=None):
        self.job = job
        # The claim as it was when the beats began: the job object's own fields may change meanwhile.
        self.row = job.claimed_row()
        self.name = name = f"{job._meta.verbose_name} {job.id}"  # for the log: "upload 12", "training run 7"
        self.interval_s = interval_s or settings.HEARTBEAT_INTERVAL_S
        self.stopped, self.lost = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{name.replace(' ', '-')}", daemon=True)

    def beat_once(self) -> bool:
        """Write one beat; False when this attempt no longer holds its claim."""
        return bool(self.row.update(heartbeat_at=timezone.now()))

    def claim_was_lost(self):
        """Called once, in the heartbeat thread, when a beat finds the claim gone."""
        self.job.claim_lost = True
        self.lost.set()

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
                except Exception as exc:  # noqa: BLE001 (a heartbeat that stopped for good would be worse)
                    logger.warning("%s: a heartbeat failed (%s); trying again in %s s",
                                   self.name.capitalize(), exc, self.interval_s)
                    connection.close()  # a broken connection is not reused: the next beat opens a new one
                    continue
                if not still_claimed:
                    logger.warning("%s: another attempt holds it now; this one stops", self.name.capitalize())
                    self.claim_was_lost()
                    return
        finally:
            connection.close()  # this thread's own connection
