"""The site's own error pages: a page that is gone, a crash and a form refused for its security
token show the site's look and plain words, also with DEBUG on (as `make run` has it), while the
technical details go to the log."""
import logging

import pytest
from django.test import Client
from django.urls import reverse

from datasets_app.models import Dataset

TECHNICAL = "DEBUG = True"  # what Django's technical pages say about themselves


@pytest.fixture(params=[True, False], ids=["debug", "no-debug"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


def test_a_deleted_dataset_is_the_sites_own_404_page(debug, client, user):
    dataset = Dataset.objects.create(owner=user, name="Gone soon")
    url = reverse("datasets:detail", args=[dataset.pk])
    dataset.delete()
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 404
    page = response.content.decode()
    assert "This page does not exist" in page and TECHNICAL not in page
    assert "Datasets</a>" in page  # the site's look: its menu


def test_an_address_of_no_page_is_the_sites_own_404_page(debug, client, user):
    client.force_login(user)
    response = client.get("/no-such-page/here")
    assert response.status_code == 404
    page = response.content.decode()
    assert "This page does not exist" in page and TECHNICAL not in page


def test_a_missing_slash_is_still_added(debug, client, user):
    client.force_login(user)
    response = client.get("/datasets")
    assert response.status_code == 301 and response["Location"] == "/datasets/"


@pytest.mark.urls("tests.error_urls")
def test_a_crash_is_the_sites_own_500_page_and_the_traceback_is_logged(debug, user, caplog):
    client = Client(raise_request_exception=False)
    client.force_login(user)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = client.get("/test-crash/")
    assert response.status_code == 500
    page = response.content.decode()
    assert "Something went wrong on our side" in page and TECHNICAL not in page
    assert "RuntimeError: a bug, on purpose" in caplog.text  # the traceback, for whoever runs the site


@pytest.mark.urls("tests.error_urls")
def test_a_suspicious_request_is_a_plain_400(debug, client, user):
    client.force_login(user)
    response = client.get("/test-suspicious/")
    assert response.status_code == 400
    assert TECHNICAL not in response.content.decode() and "on purpose" not in response.content.decode()


def test_a_form_without_its_security_token_gets_the_sites_page_in_plain_words(client, user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get(reverse("datasets:list"))  # the page sets the cookie; the form below leaves the token out
    response = client.post(reverse("datasets:sample"))
    assert response.status_code == 403
    page = response.content.decode()
    assert "This form could not be accepted" in page and "reload the page" in page
    assert "Datasets</a>" in page and "CSRF" not in page


def test_a_form_from_a_browser_without_cookies_says_to_allow_them(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.cookies.pop("csrftoken", None)
    response = client.post(reverse("datasets:sample"))
    assert response.status_code == 403
    assert "Allow cookies for this site" in response.content.decode()
