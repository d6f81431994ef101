""""Try several settings" in a real headless Chromium: the preview follows the boxes ticked, the search
starts its runs, the leaderboard lists them, and "Stop the search" cancels those still waiting."""
import pytest

from tests.browser import browser_page, expect, sign_up  # noqa: F401 (browser_page is a fixture)
from tests.conftest import shapes_for
from training_app.models import Search, TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_preview_start_and_stop_a_search(live_server, browser_page, settings):  # noqa: F811
    settings.QUOTA_QUEUED_RUNS = 20
    page, js_errors = browser_page
    sign_up(page, live_server.url)
    js_errors.clear()
    dataset = shapes_for("browser-user")

    page.goto(f"{live_server.url}/runs/search/new/{dataset.pk}/")
    for box in page.locator("input[name=learning_rate]").all():
        box.uncheck()
    page.locator("input[name=learning_rate][value='0.001']").check()
    expect(page.locator("#search-preview")).to_contain_text("2 runs, about 15 min each")
    page.locator("input[name=augmentation][value='off']").uncheck()
    expect(page.locator("#search-preview")).to_contain_text("1 run, about 30 min each")
    page.locator("input[name=augmentation][value='off']").check()
    page.locator("input[name=total_budget_s][value='900']").check()
    expect(page.locator("#search-preview")).to_contain_text("2 runs, about 7 min each")
    page.click("#start-search")

    expect(page.locator("#leaderboard-rows tr")).to_have_count(2)
    found = Search.objects.get()
    assert set(found.runs.values_list("status", "time_budget_s")) == {("queued", 450)}
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#stop-search")
    expect(page.locator("#leaderboard-rows .badge.cancelled")).to_have_count(2)
    assert set(TrainingRun.objects.values_list("status", flat=True)) == {"cancelled"}
    expect(page.locator("#stop-form")).to_be_hidden()
    assert js_errors == []
