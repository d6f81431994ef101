"""The browser's shared words (static/js/site.js) say counts and sizes as the server does
(mlcore/words.py), so that a page never writes the same number two ways."""
from pathlib import Path

import pytest

from mlcore.words import count, file_size
from tests.browser import browser_page  # noqa: F401 (a fixture)
from tests.test_words import SIZES

pytestmark = pytest.mark.browser

SITE_JS = Path(__file__).resolve().parent.parent / "static" / "js" / "site.js"


def test_the_script_writes_sizes_and_counts_as_the_server_does(browser_page):  # noqa: F811
    page, errors = browser_page
    page.set_content("<!doctype html><title>words</title>")
    page.add_script_tag(path=str(SITE_JS))
    sizes = SIZES + list(range(0, 5 * 1024**2, 7919))
    assert page.evaluate("(sizes) => sizes.map(site.fileSize)", sizes) == [file_size(size) for size in sizes]
    cases = [(0, "image", None), (1, "image", None), (1500, "image", None), (2, "run is", "runs are")]
    assert page.evaluate("(cases) => cases.map(([n, one, many]) => site.count(n, one, many))", cases) == [
        count(*case) for case in cases]
    assert errors == []
