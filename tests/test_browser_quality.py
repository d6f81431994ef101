"""The run page of a model that learned nothing, in a real headless Chromium: the warning box is
visible with its words, the badge does not read as a plain success, and the page's JavaScript
(run.js, the charts) runs without errors. The run rows are made in the database: no worker needed."""
import re

import pytest
from django.utils import timezone

from tests.browser import browser_page, expect, sign_up  # noqa: F401 (browser_page is a fixture)
from tests.conftest import new_run, shapes_for
from training_app.models import EpochMetric, TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FLOWERS = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]


def finished_at_chance(dataset):
    """Today's case: 25% on 20 test images of each of 5 classes, where guessing gets 20%.
    Each class's 15 mistakes all go to the next class."""
    run = new_run(dataset, epochs=3)
    confusion = [[5 if i == j else (15 if j == (i + 1) % 5 else 0) for j in range(5)] for i in range(5)]
    for epoch, val in enumerate((0.2, 0.22, 0.21), 1):
        EpochMetric.objects.create(run=run, epoch=epoch, loss=1.61, accuracy=0.21, val_loss=1.61, val_accuracy=val,
                                   learning_rate=0.01, seconds=1.0)
    TrainingRun.objects.filter(id=run.id).update(
        status="succeeded", finished_at=timezone.now(), epoch=3, class_names=FLOWERS, train_count=400,
        val_count=100, test_count=100, test_accuracy=0.25, test_loss=1.61, confusion=confusion,
        per_class=[{"name": name, "precision": 0.25, "recall": 0.25, "f1": 0.25, "support": 20} for name in FLOWERS],
        wrong=[])
    return run


def test_a_chance_level_run_shows_a_visible_warning_and_no_javascript_errors(live_server, browser_page):  # noqa: F811
    page, js_errors = browser_page
    sign_up(page, live_server.url)
    js_errors.clear()
    run = finished_at_chance(shapes_for("browser-user"))

    page.goto(f"{live_server.url}/runs/{run.pk}/")

    box = page.locator("#learned-nothing")
    expect(box).to_be_visible()
    expect(box).to_contain_text("This model learned nothing useful: it did no better than guessing")
    expect(box).to_contain_text("do not trust its answers")
    expect(box).to_contain_text("Check the labels")
    expect(box.get_by_role("link", name="Check the labels in the gallery")).to_be_visible()
    # It sits at the top: in view without scrolling.
    assert box.bounding_box()["y"] < 900
    expect(page.locator("#run-status")).to_have_text("Finished — learned nothing useful")
    expect(page.locator("#run-status")).to_have_class(re.compile(r"\bguessing\b"))
    expect(page.locator("#result-right")).to_have_text("Right about 3 times out of 10 on images it never saw.")
    expect(page.locator("#most-confused li").first).to_have_text("daisy taken for dandelion: 15 times")
    expect(page.locator("#chance-hint")).to_be_hidden()  # the training hint is for runs still training
    # run.js ran: the curves and the confusion matrix are drawn.
    expect(page.locator("#accuracy-chart .scatterlayer .trace").first).to_be_attached()
    expect(page.locator("#confusion-chart .heatmaplayer .hm image")).to_have_count(1)

    # The runs table says the same.
    page.goto(f"{live_server.url}/runs/")
    expect(page.locator(f"tr:has(a[href='/runs/{run.pk}/']) .badge")).to_have_text("Finished — learned nothing useful")
    assert js_errors == [], "\n".join(js_errors)
