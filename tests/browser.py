"""Shared parts of the browser tests: a headless Debian Chromium driven by Playwright.

A test module that imports this is skipped, with a message, where Playwright or Chromium is missing.
Browser tests use `live_server`, so they mark themselves `django_db(transaction=True)`."""
import os
import re
import shutil

import pytest

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip("playwright is not installed (pip install playwright); the browser test is skipped",
                allow_module_level=True)

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    pytest.skip("Chromium is not installed (apt-get install chromium); the browser test is skipped",
                allow_module_level=True)

# Playwright's sync API runs an asyncio event loop in the test's thread, so Django takes every
# ORM call made from it (live_server's set-up, the fixtures) for one made inside async code.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# Chromium's own test camera (a moving pattern) instead of a real one, allowed without asking.
FAKE_CAMERA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


class Chromiums:
    """One Chromium for the whole session per set of launch arguments (starting one took a second or
    more a test), started when first asked for (tests/conftest.py `_chromium`); each test gets a fresh
    context of its own, so no cookies, storage or cache carry over."""

    def __init__(self):
        self.playwright = sync_playwright().start()
        self.browsers = {}

    def __call__(self, args):
        key = tuple(args)
        if key not in self.browsers or not self.browsers[key].is_connected():
            self.browsers[key] = self.playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                                 args=list(args))
        return self.browsers[key]

    def close(self):
        for browser in self.browsers.values():
            if browser.is_connected():
                browser.close()
        self.playwright.stop()


@pytest.fixture
def browser_page(request, _chromium):
    """A fresh page in headless Chromium, and the list its JavaScript errors are collected in. A test
    marked `fake_camera` gets Chromium's test camera."""
    args = CHROMIUM_ARGS + (FAKE_CAMERA_ARGS if request.node.get_closest_marker("fake_camera") else [])
    context = _chromium(args).new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = []
    page.on("console", lambda message: _record_console_error(errors, message))
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    try:
        yield page, errors
    finally:
        context.close()


def _record_console_error(errors, message):
    # The site has no favicon; Chromium asks for one anyway, and its 404 is no bug of ours.
    if message.type == "error" and "favicon" not in (message.location or {}).get("url", ""):
        errors.append(f"console: {message.text} ({(message.location or {}).get('url', '')})")


def sign_up(page, base_url):
    page.goto(f"{base_url}/accounts/signup/")
    page.fill("input[name=username]", "browser-user")
    page.fill("input[name=password1]", "a-long-browser-password")
    page.fill("input[name=password2]", "a-long-browser-password")
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(re.compile(r"/datasets/$"))


