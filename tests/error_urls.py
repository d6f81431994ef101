"""The site's addresses and two that fail on purpose, for tests/test_error_pages.py."""
from django.core.exceptions import SuspiciousOperation
from django.urls import path

from dlsite.urls import urlpatterns as site_patterns


def crash(request):
    raise RuntimeError("a bug, on purpose")


def suspicious(request):
    raise SuspiciousOperation("an odd request, on purpose")


urlpatterns = [path("test-crash/", crash), path("test-suspicious/", suspicious), *site_patterns]
