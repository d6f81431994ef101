"""An ingestion's heartbeat: proof, every few seconds, that the worker reading an upload is alive.

When the worker dies (SIGKILL, out of memory, the machine restarts) the beats stop, and the
reaper (`Upload.objects.reap_stale`) queues the upload again. Each beat is conditional on the
claim this attempt holds; when it matches nothing, another attempt (or a cancel) has the
upload, and `lost` tells the ingestion to stop before its next write.
"""
import logging
import threading

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

logger = logging.getLogger(__name__)


class UploadHeartbeat:
    def __init__(self, upload, interval_s=None):
        self.upload_id, self.fence = upload.id, upload.claim_fence()
        self.interval_s = interval_s or settings.HEARTBEAT_INTERVAL_S
        self.stopped, self.lost = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-upload-{upload.id}", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stopped.set()
        self.thread.join()

    def _beat(self):
        try:
            while not self.stopped.wait(self.interval_s):
                if not self._beat_once():
                    logger.warning("Upload %s was taken by another attempt; this one stops", self.upload_id)
                    self.lost.set()
                    return
        finally:
            connection.close()  # this thread's own connection

    def _beat_once(self) -> bool:
        """False when the claim is gone. A database error is not proof of that: it is logged,
        and the next beat tries again (the reaper waits several beats before acting)."""
        from .models import Upload

        try:
            return bool(Upload.objects.filter(id=self.upload_id, **self.fence).update(heartbeat_at=timezone.now()))
        except DatabaseError:
            logger.warning("Heartbeat of upload %s failed; trying again", self.upload_id, exc_info=True)
            connection.close()  # a broken connection is replaced at the next query
            return True
