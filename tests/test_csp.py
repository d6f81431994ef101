"""The Content-Security-Policy: its header on the pages, and templates that need no exception to
it. (tests/test_browser_csp.py walks the pages in Chromium, which reports any violation.)"""
import re

from django.urls import reverse

from tests.conftest import ROOT

# The API's pages are written by api_app, which keeps its own templates to the same rules.
TEMPLATES = [path for path in ROOT.glob("**/templates/**/*.html")
             if ".venv" not in path.parts and "api_app" not in path.parts]
INLINE = {
    "an inline script": re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I),
    "a style element": re.compile(r"<style\b", re.I),
    "a style attribute": re.compile(r"\sstyle=", re.I),
    "an event attribute": re.compile(r"\son[a-z]+=", re.I),
    "a javascript: address": re.compile(r"javascript:", re.I),
}


def test_the_templates_hold_no_inline_script_or_style():
    assert len(TEMPLATES) > 30
    found = [f"{path.relative_to(ROOT)}: {what}" for path in TEMPLATES for what, pattern in INLINE.items()
             if pattern.search(path.read_text())]
    assert found == []


def test_pages_send_a_strict_policy(client, user):
    client.force_login(user)
    for url in (reverse("login"), reverse("datasets:list"), "/no-such-page/"):
        policy = client.get(url)["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["default-src"] == "'self'"
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy and "*" not in policy
        assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
