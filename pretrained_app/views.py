"""The staff page "Pretrained networks": which transfer-learning networks this site can train, and
getting their ImageNet weights files: a download queued for a worker (the page polls its progress),
or, for a site without internet, an upload of the same file. Both are checked before they are kept
(mlcore.pretrained). Anyone who is not staff gets a 404; anyone not logged in, the login page."""
from functools import wraps

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateformat import format as format_date
from django.views.decorators.http import require_POST

from dlsite import storage
from mlcore.builder import BASES, missing_weights_message
from mlcore.efficientnet_lite import VARIANTS as LITE_VARIANTS
from mlcore.pretrained import CATALOGUE, WeightsRefused, store_verified
from mlcore.words import file_size

from .jobs import download_url
from .models import WeightsDownload
from .tasks import download_weights
from .weights import keep, kept_files, where_kept

POLL_MS = 1000


class UploadForm(forms.Form):
    file = forms.FileField(error_messages={"required": "Choose the weights file to upload."})


def staff_only(view):
    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_staff:
            raise Http404("No such page.")
        return view(request, *args, **kwargs)
    return wrapper


def network_rows():
    """One row per downloadable network, JSON-ready: the page draws them and its script redraws them."""
    kept = kept_files()  # the folder, or one listing of the bucket
    latest = WeightsDownload.objects.latest_per_base()
    now = timezone.now()
    rows = []
    for name, entry in CATALOGUE.items():
        available = entry.file_name in kept
        download = _download_row(latest.get(name), now)
        rows.append({
            "name": name, "label": entry.label, "about": BASES[name].about, "file_name": entry.file_name,
            "available": available,
            "size_text": file_size(kept[entry.file_name]) if available else "",
            "state_text": (f"Available: networks built on {entry.label} can be trained on this site."
                           if available else "Not available yet: its weights file is not on this site."),
            "can_download": not available and not (download and download["active"]),
            "download": download,
            "source_url": download_url(name),
            "check_text": entry.check_text(), "check_source": entry.source,
            "download_url": reverse("pretrained:download", args=[name]),
            "upload_url": reverse("pretrained:upload", args=[name]),
        })
    return rows


def bundled_rows():
    """One row per network whose weights come inside an installed Python package (EfficientNet-Lite):
    nothing to download, so the page only says whether the package is installed and how the file is checked."""
    rows = []
    for name, base in BASES.items():
        if not base.bundled:
            continue
        member = LITE_VARIANTS[name]
        missing = missing_weights_message(name, None)  # asks only whether the package is installed
        rows.append({
            "name": name, "label": base.label, "about": base.about, "available": missing is None,
            "state_text": (f"Available: its weights come with the Python package {member.package}, installed here."
                           if missing is None else missing),
            "requirement": member.requirement, "native_size": member.image_size,
            "check_text": f"SHA-256 {member.source_sha256} of the file in the package, before it is converted once "
                          f"into {member.cache_name}",
        })
    return rows


def _download_row(download, now):
    if download is None:
        return None
    waiting = download.status in (WeightsDownload.Status.QUEUED, WeightsDownload.Status.RUNNING)
    active = waiting and not download.is_silent(now)
    done, total = download.bytes_done, download.bytes_total
    percent = 100.0 if download.status == WeightsDownload.Status.DONE else (
        round(min(100.0, 100 * done / total), 1) if total else 0.0)
    if download.status == WeightsDownload.Status.QUEUED:
        text = "Waiting for a worker to start the download…"
    elif download.status == WeightsDownload.Status.RUNNING:
        text = (f"Downloading: {file_size(done)} of {file_size(total)} ({percent:.0f} %)" if total
                else f"Downloading: {file_size(done)} so far")
    elif download.status == WeightsDownload.Status.DONE:
        text = f"Downloaded and checked {_moment(download.finished_at or download.last_heard(), now)}."
    else:
        text = f"The download {_moment(download.finished_at or download.last_heard(), now)} failed."
    if waiting and not active:
        text = (f"No word from this download since {_moment(download.last_heard(), now)}: the worker doing it may "
                "have stopped. Start it again.")
    return {"id": download.id, "status": download.status, "status_label": download.get_status_display(),
            "active": active, "bytes_done": done, "bytes_total": total, "percent": percent, "text": text,
            "error": download.error}


def _moment(when, now):
    local = timezone.localtime(when)
    return format_date(local, "\\a\\t H:i" if local.date() == timezone.localtime(now).date() else "\\o\\n j M, H:i")


@staff_only
def page(request):
    return render(request, "pretrained_app/page.html", {
        "networks": network_rows(), "bundled": bundled_rows(), "folder": where_kept(),
        "in_bucket": not storage.is_local(), "poll_ms": POLL_MS,
        "url_base": settings.PRETRAINED_WEIGHTS_URL,
    })


@staff_only
def status(request):
    rows = network_rows()
    return JsonResponse({"networks": rows, "active": any(row["download"] and row["download"]["active"] for row in rows)})


def _entry_or_404(name):
    if name not in CATALOGUE:
        raise Http404("No such network.")
    return CATALOGUE[name]


@staff_only
@require_POST
def download(request, name):
    entry = _entry_or_404(name)
    with transaction.atomic():
        if WeightsDownload.objects.active().filter(base=name).exists():
            messages.info(request, f"{entry.label}'s weights file is already being downloaded.")
        else:
            queued = WeightsDownload.objects.create(base=name, requested_by=request.user)
            download_weights.delay_on_commit(queued.id)  # the worker must never read an uncommitted row
    return redirect("pretrained:page")


@staff_only
@require_POST
def upload(request, name):
    entry = _entry_or_404(name)
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors["file"]))
        return redirect("pretrained:page")
    uploaded = form.cleaned_data["file"]
    try:
        keep(lambda folder: store_verified(uploaded.chunks(), entry, folder, total=uploaded.size,
                                           what="The uploaded file"))
    except WeightsRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, f"{entry.label}'s weights file was checked and is in place: networks built on "
                                  f"{entry.label} can now be trained.")
    return redirect("pretrained:page")


urlpatterns = [
    path("", page, name="page"),
    path("status/", status, name="status"),
    path("<str:name>/download/", download, name="download"),
    path("<str:name>/upload/", upload, name="upload"),
]
