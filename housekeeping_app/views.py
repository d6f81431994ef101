"""The staff page "Disk use": what the site keeps on disk, per person and per kind of file, and what the
last clean-up removed. Anyone who is not staff gets a 404; anyone not logged in, the login page."""
from datetime import datetime, timezone as dt_timezone

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.urls import path

from .diskuse import KIND_LABELS, measure_cached
from .models import CleanupReport


def _percent(value, largest):
    return round(100 * value / largest, 1) if largest else 0


@login_required
def disk(request):
    if not request.user.is_staff:
        raise Http404("No such page.")
    found = measure_cached()
    kinds = [{"label": KIND_LABELS[kind], "bytes": size} for kind, size in found["kinds"].items()]
    largest_kind = max((row["bytes"] for row in kinds), default=0)
    for row in kinds:
        row["percent"] = _percent(row["bytes"], largest_kind)
    people = found["users"]
    largest_person = max((row["total"] for row in people), default=0)
    for row in people:
        row["percent"] = _percent(row["total"], largest_person)
    return render(request, "housekeeping_app/disk.html", {
        "kinds": kinds, "people": people, "total": sum(row["bytes"] for row in kinds),
        "measured_at": datetime.fromtimestamp(found["measured_at"], dt_timezone.utc),
        "last": CleanupReport.objects.first(),
    })


urlpatterns = [
    path("disk/", disk, name="disk"),
]
