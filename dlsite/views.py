"""Pages that belong to the site as a whole: home, health, a form refused for its security token
(sign-up is accounts_app/views.py)."""
import logging
import secrets

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection, transaction
from django.http import JsonResponse
from django.middleware.csrf import REASON_NO_CSRF_COOKIE
from django.shortcuts import redirect, render

from . import storage
from .jobs import job_counts
from .reporting import hide_url_passwords
from .workers import QUEUES, check_broker, hosts, live_workers, worker_details

HEALTHZ_CACHE_KEY = "dlsite:healthz"
logger = logging.getLogger(__name__)


def home(request):
    if request.user.is_authenticated:
        return redirect("datasets:list")
    return render(request, "home.html")


def csrf_failure(request, reason=""):
    """A form that arrived without the security token of the page it came from (CSRF_FAILURE_VIEW):
    in plain words, with what to do; Django logs the technical reason."""
    return render(request, "403_csrf.html", {"no_cookie": reason == REASON_NO_CSRF_COOKIE}, status=403)


def healthz(request):
    """The state of the site: 200 with {"status": "ok"}, or 503 with "degraded".

    Staff and callers with HEALTHZ_TOKEN also see the database, the broker, the kept files' storage
    (the folder or the bucket), the number of
    workers per queue, each computer (host) with its workers and GPUs ("CPU" for none), and the jobs
    of every kind (waiting, running, silent). The answer is shared for HEALTHZ_CACHE_S seconds: asking the workers
    takes a second, and monitors or many clients polling must not cost one each."""
    health = cache.get(HEALTHZ_CACHE_KEY)
    if health is None:
        health = _health()
        cache.set(HEALTHZ_CACHE_KEY, health, settings.HEALTHZ_CACHE_S)
    status = 200 if health["status"] == "ok" else 503
    if not _may_see_health_details(request):
        return JsonResponse({"status": health["status"]}, status=status)
    return JsonResponse(health, status=status)


def _health():
    health = {"database": _check_database(), "broker": check_broker(), "storage": storage.check()}
    details = {}
    if health["broker"] == "ok":
        try:
            details = worker_details()
        except Exception as exc:  # the broker went away between the two questions: degraded, never a 500
            logger.warning("/healthz: asking the workers failed", exc_info=True)
            health["broker"] = f"error: {exc}"
    workers = live_workers(details=details)
    health["workers"] = {queue: len(workers.get(queue, [])) for queue in QUEUES}
    health["hosts"] = hosts(details)
    health["jobs"] = _jobs() if health["database"] == "ok" else {}
    healthy = (health["database"] == "ok" and "error" not in health["jobs"] and health["broker"] == "ok"
               and health["storage"] == "ok"
               and all(health["workers"].values()))
    health["status"] = "ok" if healthy else "degraded"
    # The errors can hold the broker's or the database's address with its password.
    for part in ("database", "broker", "storage"):
        health[part] = hide_url_passwords(health[part])
    return health


def _jobs():
    """Every kind of job: how many wait, run, and went silent (a worker that died; the reaper acts soon).
    A database that answers but lacks the tables (not migrated) makes the site degraded, not a 500."""
    try:
        with transaction.atomic():  # on PostgreSQL a failed query would spoil the rest of a transaction
            return {row["kind"]: {key: row[key] for key in ("queued", "running", "silent")} for row in job_counts()}
    except DatabaseError as exc:
        return {"error": str(exc)}


def _may_see_health_details(request):
    if request.user.is_authenticated and request.user.is_staff:
        return True
    token = request.headers.get("X-Healthz-Token") or request.GET.get("token") or ""
    return bool(settings.HEALTHZ_TOKEN) and secrets.compare_digest(token.encode(), settings.HEALTHZ_TOKEN.encode())


def _check_database():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # any failure is reported, not raised
        return f"error: {exc}"
