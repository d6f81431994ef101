"""The table of a dataset's runs and the run page's step-size chart in a real headless Chromium:
a click on a column's name sorts the rows, a second click reverses them."""
import pytest
from django.utils import timezone

from tests.browser import browser_page, expect, sign_up  # noqa: F401 (browser_page is a fixture)
from tests.conftest import new_run, shapes_for
from training_app.models import EpochMetric, TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def finished(dataset, accuracy):
    run = new_run(dataset)
    TrainingRun.objects.filter(id=run.id).update(status="succeeded" if accuracy is not None else "failed",
                                                 test_accuracy=accuracy, finished_at=timezone.now())
    return run


def test_sort_the_runs_by_test_accuracy_and_see_the_step_size_chart(live_server, browser_page):  # noqa: F811
    page, js_errors = browser_page
    sign_up(page, live_server.url)
    js_errors.clear()
    dataset = shapes_for("browser-user")
    # Made in this order, so the table (newest first) starts as 4, 3, 2, 1.
    runs = {accuracy: finished(dataset, accuracy) for accuracy in (0.5, 0.9, None, 0.7)}

    page.goto(f"{live_server.url}/datasets/{dataset.pk}/")
    page.click("#dataset-runs-link")
    rows = page.locator("#dataset-runs tbody tr")
    expect(rows).to_have_count(4)

    def order():
        return [int(pk) for pk in rows.evaluate_all("rows => rows.map(row => row.dataset.run)")]

    assert order() == [runs[0.7].pk, runs[None].pk, runs[0.9].pk, runs[0.5].pk]

    header = page.locator("#dataset-runs thead th", has_text="Test accuracy")
    header.get_by_role("button").click()
    expect(header).to_have_attribute("aria-sort", "descending")  # the best first; a run without one last
    assert order() == [runs[0.9].pk, runs[0.7].pk, runs[0.5].pk, runs[None].pk]
    expect(page.locator("#dataset-runs thead th[aria-sort]")).to_have_count(1)  # "When" no longer claims it

    header.get_by_role("button").click()
    expect(header).to_have_attribute("aria-sort", "ascending")
    assert order() == [runs[0.5].pk, runs[0.7].pk, runs[0.9].pk, runs[None].pk]

    # A run with three epochs: its step-size chart is drawn, one marker an epoch.
    run = runs[0.9]
    for epoch, rate in enumerate((0.01, 0.001, 0.0001), 1):
        EpochMetric.objects.create(run=run, epoch=epoch, loss=1 / epoch, accuracy=0.5, val_loss=1 / epoch,
                                   val_accuracy=0.5, learning_rate=rate, seconds=1.5)
    TrainingRun.objects.filter(id=run.id).update(epoch=3, train_count=24)
    page.click(f"#dataset-runs a[href='/runs/{run.pk}/']")
    expect(page.locator("#lr-chart")).to_be_attached()
    expect(page.locator("#lr-chart .scatterlayer .trace .point")).to_have_count(3)
    # Spanning three powers of ten, the axis is logarithmic, one tick a power.
    expect(page.locator("#lr-chart .ytick text")).to_have_text(["10⁻⁴", "10⁻³", "10⁻²"])
    expect(page.locator("#run-speed")).to_have_text("Speed: 16 images a second · 1.5 s an epoch (the latest)")
    expect(page.locator("#train-again")).to_have_attribute("href", f"/runs/new/{dataset.pk}/?from={run.pk}")
    assert js_errors == []


def test_every_phase_fills_the_bar_and_says_the_time_left(live_server, browser_page):  # noqa: F811
    from datetime import timedelta

    page, js_errors = browser_page
    sign_up(page, live_server.url)
    js_errors.clear()
    run = new_run(shapes_for("browser-user"))
    looking = "Looking at the pictures with the pretrained network"
    now = timezone.now()
    # 1,200 of 2,931 photos looked at; 1,100 of them in the 20 s since the first report.
    TrainingRun.objects.filter(id=run.id).update(
        status="running", started_at=now, heartbeat_at=now, phase=looking, phase_done=1200, phase_total=2931,
        phase_paced_done=100, phase_paced_at=now - timedelta(seconds=20), phase_reported_at=now)

    page.goto(f"{live_server.url}/runs/{run.pk}/")
    expect(page.locator("#run-phase")).to_have_text(f"{looking}: 1,200 of 2,931 training and validation pictures")
    expect(page.locator("#run-detail")).to_contain_text("40.9%")
    expect(page.locator("#run-detail")).to_contain_text(" s left")
    # The bar fills with the phase, not with the training still to come (0 %).
    expect(page.locator("#run-bar")).to_have_attribute("style", "width: 40.9%;")

    # The next phase is counted on its own; one that cannot be counted shows a moving band.
    TrainingRun.objects.filter(id=run.id).update(phase="Testing on pictures it never saw", phase_done=0,
                                                 phase_total=587, phase_paced_at=None, phase_paced_done=0)
    expect(page.locator("#run-phase")).to_have_text("Testing on pictures it never saw: 0 of 587 test pictures")
    expect(page.locator("#run-detail")).to_contain_text("estimating the time left…")
    TrainingRun.objects.filter(id=run.id).update(phase="Saving the model", phase_total=0)
    expect(page.locator("#run-phase")).to_have_text("Saving the model")
    expect(page.locator("#live .progress")).to_have_class("progress indeterminate")
    assert js_errors == []
