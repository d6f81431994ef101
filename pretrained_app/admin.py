from django.contrib import admin

from .models import WeightsDownload


@admin.register(WeightsDownload)
class WeightsDownloadAdmin(admin.ModelAdmin):
    """The downloads asked for on the staff page "Pretrained networks" (which is also where a file
    is uploaded, checked, for a site without internet)."""
    list_display = ("base", "status", "bytes_done", "bytes_total", "requested_by", "created_at", "finished_at")
    list_filter = ("status", "base")
    readonly_fields = ("base", "requested_by", "status", "bytes_done", "bytes_total", "error", "created_at",
                       "started_at", "heartbeat_at", "finished_at")
