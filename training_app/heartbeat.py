"""A training run's heartbeat (see dlsite/heartbeat.py): when the run's worker dies, the beats
stop and the reaper queues the run again. When the claim is gone, the run object is marked
(`claim_lost`) and the training loop stops at its next batch or write (TrainingRun.record)."""
from django.utils import timezone

from dlsite.heartbeat import Heartbeat as ClaimHeartbeat


class Heartbeat(ClaimHeartbeat):
    def __init__(self, run, interval_s=None):
        super().__init__(f"run {run.id}", interval_s)
        self.run = run

    def beat_once(self) -> bool:
        return bool(self.run.claimed_row().update(heartbeat_at=timezone.now()))

    def claim_was_lost(self):
        super().claim_was_lost()
        self.run.claim_lost = True
