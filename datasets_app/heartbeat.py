"""An ingestion's heartbeat (see dlsite/heartbeat.py): when the worker reading an upload dies,
the beats stop and `Upload.objects.reap_stale` queues the upload again. When another attempt
(or a cancel) has the upload, `lost` tells the ingestion to stop before its next write."""
from django.utils import timezone

from dlsite.heartbeat import Heartbeat


class UploadHeartbeat(Heartbeat):
    def __init__(self, upload, interval_s=None):
        super().__init__(f"upload {upload.id}", interval_s)
        self.upload_id, self.fence = upload.id, upload.claim_fence()

    def beat_once(self) -> bool:
        from .models import Upload

        return bool(Upload.objects.filter(id=self.upload_id, **self.fence).update(heartbeat_at=timezone.now()))
