"""Pages that belong to the site as a whole: home, sign-up, health."""
from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect, render

from .celery import app as celery_app

QUEUES = ("default", "training")


def home(request):
    if request.user.is_authenticated:
        return redirect("datasets:list")
    return render(request, "home.html")


def signup(request):
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        return redirect("datasets:list")
    return render(request, "registration/signup.html", {"form": form})


def healthz(request):
    """The state of the database, the broker and the workers; 503 if anything is missing."""
    health = {"database": _check_database(), "broker": _check_broker()}
    workers = _live_workers_per_queue() if health["broker"] == "ok" else {}
    health["workers"] = {queue: workers.get(queue, 0) for queue in QUEUES}
    healthy = health["database"] == "ok" and health["broker"] == "ok" and all(health["workers"].values())
    health["status"] = "ok" if healthy else "degraded"
    return JsonResponse(health, status=200 if healthy else 503)


def _check_database():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # any failure is reported, not raised
        return f"error: {exc}"


def _check_broker():
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:
        return f"error: {exc}"


def _live_workers_per_queue():
    replies = celery_app.control.inspect(timeout=1.0).active_queues() or {}
    counts = {}
    for queues in replies.values():
        for queue in queues:
            counts[queue["name"]] = counts.get(queue["name"], 0) + 1
    return counts
