"""Production defaults: DEBUG off unless asked for, a key of its own, `check --deploy` clean with
the README's production settings, plain 404 and 500 pages, and no password in any error page."""
import os
import secrets
import stat
import subprocess
import sys

import pytest
from django.http import HttpResponse
from django.test import Client
from django.urls import path
from django.views.debug import ExceptionReporter

from tests.conftest import ROOT

# The README's "Running in production" settings.
PRODUCTION_ENV = {
    "ALLOWED_HOSTS": "classifier.example.org",
    "SECURE_SSL_REDIRECT": "1", "SESSION_COOKIE_SECURE": "1", "CSRF_COOKIE_SECURE": "1",
    "SECURE_HSTS_SECONDS": "31536000", "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1", "SECURE_HSTS_PRELOAD": "1",
}
BROKER_PASSWORD = "broker-s3cret-pw"


def run_django(code_or_args, tmp_path, **env):
    """Python with the site's own settings in a fresh process and data folder."""
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    full_env = base | {"DATA_DIR": str(tmp_path / "data"), "DJANGO_SETTINGS_MODULE": "dlsite.settings"} | env
    args = code_or_args if isinstance(code_or_args, list) else ["-c", code_or_args]
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120)


SHOW_DEBUG_AND_KEY = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG, len(settings.SECRET_KEY))"


def test_debug_is_off_unless_asked_for_and_a_fresh_clone_still_starts(tmp_path):
    result = run_django(SHOW_DEBUG_AND_KEY, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", str(len((tmp_path / "data" / "secret_key").read_text()))]
    key_file = tmp_path / "data" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # The same key next time: sessions survive a restart.
    assert run_django(SHOW_DEBUG_AND_KEY, tmp_path).stdout == result.stdout
    assert run_django(SHOW_DEBUG_AND_KEY, tmp_path, DEBUG="1").stdout.split()[0] == "True"


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    result = run_django(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], tmp_path,
                        SECRET_KEY=secrets.token_urlsafe(50), **PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_a_wrong_address_gets_a_plain_page_not_the_list_of_url_patterns(client, db):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    text = response.content.decode()
    assert "This page does not exist" in text
    assert "URLconf" not in text and "admin/" not in text


def crash(request):
    raise RuntimeError("a bug in a view")


def fine(request):
    return HttpResponse("fine")


urlpatterns = [path("crash/", crash), path("fine/", fine)]


@pytest.mark.urls(__name__)
def test_a_crash_gets_a_plain_page_without_any_setting(db, settings):
    settings.CELERY_BROKER_URL = f"redis://:{BROKER_PASSWORD}@broker.internal:6379/0"
    client = Client(raise_request_exception=False)
    response = client.get("/crash/")
    assert response.status_code == 500
    text = response.content.decode()
    assert "Something went wrong on our side" in text
    assert BROKER_PASSWORD not in text and "CELERY_BROKER_URL" not in text and "RuntimeError" not in text


def test_error_reports_hide_the_password_of_the_broker_and_database_urls(rf, settings):
    """The technical report of an error (Django's, for whoever runs the site; pages show it to no one,
    tests/test_error_pages.py) names the settings but not the passwords in them."""
    settings.DEBUG = True
    settings.CELERY_BROKER_URL = f"redis://:{BROKER_PASSWORD}@broker.internal:6379/0"
    settings.REPORTING_DATABASE_URL = f"postgres://site:{BROKER_PASSWORD}-db@db.internal:5432/site"
    request = rf.get("/crash/", HTTP_X_BACKUP_URL=f"amqp://guest:{BROKER_PASSWORD}@mq.internal//")
    try:
        crash(request)
    except RuntimeError:
        text = ExceptionReporter(request, *sys.exc_info()).get_traceback_html()
    assert "CELERY_BROKER_URL" in text and "broker.internal" in text  # the technical report, with the setting
    assert BROKER_PASSWORD not in text


@pytest.mark.parametrize("text, shown", [
    ("error: cannot reach redis://:pw-1@broker:6379/0", "error: cannot reach redis://:********@broker:6379/0"),
    ("postgres://site:pw-2@db:5432/site and amqp://guest:pw-3@mq//",
     "postgres://site:********@db:5432/site and amqp://guest:********@mq//"),
    ("redis://broker:6379/0 has no password", "redis://broker:6379/0 has no password"),
])
def test_passwords_in_urls_are_hidden_from_error_texts(text, shown):
    from dlsite.reporting import hide_url_passwords

    assert hide_url_passwords(text) == shown


def test_make_run_turns_debug_on_says_so_and_runs_everything_under_supervisord():
    commands = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "DEBUG=1 " in commands and "DEBUG=1: errors are written in detail here" in commands
    assert "supervisord -n -c supervisord.conf" in commands and "honcho" not in commands
