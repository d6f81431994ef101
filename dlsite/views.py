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
    health = {"database": _check_database(), "broker": check_broker()}
    workers = live_workers() if health["broker"] == "ok" else {}
    health["workers"] = {queue: len(workers.get(queue, [])) for queue in QUEUES}
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


def check_broker():
    """Returns "ok", or why the broker cannot be reached, within about 2 s. Ask this before
    `live_workers`: with the broker down, Celery's broadcast retries for about 6 s, then raises."""
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:
        return f"error: {exc}"


def live_workers(timeout=1.0):
    """{queue name: sorted names of the workers listening on it}, from the workers' own replies.

    Takes the whole `timeout`: Celery cannot know how many workers there are, so it waits that
    long for replies. Shared by /healthz and the queue page."""
    replies = celery_app.control.inspect(timeout=timeout).active_queues() or {}
    workers = {}
    for name, queues in replies.items():
        for queue in queues:
            workers.setdefault(queue["name"], []).append(name)
    return {queue: sorted(names) for queue, names in workers.items()}
