"""Comparing runs in a real headless Chromium: tick two runs in a dataset's runs table, press "Compare",
and the page draws each run's curves in its own colour, within the Content-Security-Policy; the run page's
curves (drawn with the same layout, from static/js/site.js) still draw too."""
import pytest

from tests.browser import browser_page, expect, sign_up  # noqa: F401 (browser_page is a fixture)
from tests.conftest import shapes_for
from tests.test_browser_csp import RECORD_VIOLATIONS, finished_run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_tick_two_runs_and_compare_them(live_server, browser_page):  # noqa: F811
    page, js_errors = browser_page
    violations = []
    page.expose_binding("reportViolation", lambda source, text: violations.append(text))
    page.add_init_script(RECORD_VIOLATIONS)
    sign_up(page, live_server.url)
    js_errors.clear()
    dataset = shapes_for("browser-user")
    one, two, left_out = finished_run(dataset), finished_run(dataset), finished_run(dataset)

    page.goto(f"{live_server.url}/runs/dataset/{dataset.pk}/")
    page.get_by_label(f"Compare run {one.pk}").check()
    page.get_by_label(f"Compare run {two.pk}").check()
    page.click("#compare-button")

    expect(page.locator("h1")).to_contain_text("Comparing 2 runs on")
    assert f"runs={two.pk}&runs={one.pk}" in page.url or f"runs={one.pk}&runs={two.pk}" in page.url
    # Two runs, each a training and a validation line, on both charts, one marker an epoch.
    expect(page.locator("#compare-loss-chart .scatterlayer .trace")).to_have_count(4)
    expect(page.locator("#compare-accuracy-chart .scatterlayer .trace .point")).to_have_count(8)
    expect(page.locator("#compare-loss-chart .legend .traces")).to_have_count(4)
    # Each run's swatch gets its colour from the script (no style="" in the page).
    colours = page.locator("#compare-runs .swatch").evaluate_all(
        "swatches => swatches.map(s => getComputedStyle(s).backgroundColor)")
    assert len(colours) == 2 and colours[0] != colours[1]
    expect(page.locator(f"text=Run {left_out.pk}")).to_have_count(0)

    page.goto(f"{live_server.url}/runs/{one.pk}/")
    expect(page.locator("#loss-chart .scatterlayer .trace")).to_have_count(2)
    assert violations == [] and js_errors == []
