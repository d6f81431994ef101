""""Try several settings" in a real headless Chromium: the preview follows the boxes ticked, the search
starts its runs, the leaderboard lists them, and "Stop the search" cancels those still waiting; runs past the
limit of runs at once are said to wait their turn, and stopping drops them."""
import pytest

from tests.browser import browser_page, expect, sign_up  # noqa: F401 (browser_page is a fixture)
from tests.conftest import new_run, shapes_for
from training_app.models import EpochMetric, Search, TrainingRun

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


def test_runs_waiting_their_turn_are_shown_and_stopping_drops_them(live_server, browser_page, settings):  # noqa: F811
    settings.QUOTA_QUEUED_RUNS = 3  # the site's default limit of runs at once
    page, js_errors = browser_page
    sign_up(page, live_server.url)
    js_errors.clear()
    dataset = shapes_for("browser-user")
    others = [new_run(dataset), new_run(dataset)]  # two runs of the person's own take two of the 3 places

    page.goto(f"{live_server.url}/runs/search/new/{dataset.pk}/")  # the 4 runs it suggests, ticked
    expect(page.locator("#search-preview")).to_contain_text("1 starts now, and the other 3 wait their turn")
    page.click("#start-search")

    expect(page.locator("#leaderboard-rows tr")).to_have_count(1)  # only the run started is listed
    summary = page.locator("#search-summary")
    expect(summary).to_have_text("0 of 4 runs finished, 1 training or waiting for a worker, 3 waiting their turn: "
                                 "the site trains at most 3 of your runs at once.")
    found = Search.objects.get()
    started = found.runs.get()
    assert len(found.waiting) == 3 and started.status == "queued"

    # The search's run ends, and another run of the person's takes its place first, as if started meanwhile
    # from the Train button: the search has only runs waiting their turn left, none of which has room.
    others.append(new_run(dataset))
    EpochMetric.objects.create(run=started, epoch=1, val_accuracy=0.5)
    TrainingRun.objects.filter(id=started.id).update(status="succeeded")
    expect(summary).to_have_text("1 of 4 runs finished, 3 waiting their turn: the site trains at most 3 of your "
                                 "runs at once.")  # redrawn by the page's poll, which started nothing
    expect(page.locator("#leaderboard-rows .badge.succeeded")).to_have_count(1)
    expect(page.locator("#leaderboard-rows")).to_contain_text("50.0%")
    expect(page.locator("#stop-form")).to_be_visible()
    assert found.runs.count() == 1 and len(Search.objects.get().waiting) == 3

    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#stop-search")
    expect(page.locator("p.message")).to_contain_text("the runs waiting their turn will not start")
    expect(summary).to_have_text("1 of 1 run finished, the search was stopped.")
    expect(page.locator("#stop-form")).to_be_hidden()
    found.refresh_from_db()
    assert found.waiting == [] and found.stopped_at is not None
    assert list(found.runs.values_list("status", flat=True)) == ["succeeded"]  # nothing started, nothing lost
    assert set(TrainingRun.objects.filter(search=None).values_list("status", flat=True)) == {"queued"}
    # Later places freed start nothing either: the search's page, as it polls, finds no run waiting.
    TrainingRun.objects.filter(id__in=[run.id for run in others]).update(status="cancelled")
    page.reload()
    expect(summary).to_have_text("1 of 1 run finished, the search was stopped.")
    assert found.runs.count() == 1
    assert js_errors == []
