"""The product's journey in a real headless Chromium: sign up, upload a zip, train on the real
Celery workers, read the curves and the confusion matrix, and classify new images.

The other tests check what the server sends; this one checks what a person sees: that the
JavaScript runs without errors and that Plotly actually draws the charts."""
import re

import pytest

from tests.browser import browser_page, expect, sign_up  # noqa: F401 (browser_page is a fixture)
from tests.images import CLASSES, image_bytes, labelled_zip

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

CLASS_NAMES = sorted(CLASSES)  # the order the app shows them in: ["horizontal", "spot", "vertical"]
INGESTION_TIMEOUT_MS = 60_000
TRAINING_TIMEOUT_MS = 180_000


def upload_zip(page, tmp_path):
    archive = tmp_path / "shapes.zip"
    archive.write_bytes(labelled_zip(per_class=12))
    page.set_input_files("input[name=file]", str(archive))
    page.fill("input[name=name]", "Shapes")
    page.get_by_role("button", name="Upload", exact=True).click()
    # The dataset page polls the upload's progress and reloads itself once the images are in;
    # a failed upload shows its error instead of the train button, so wait for either.
    page.wait_for_selector("#train-button, .upload .message.error", timeout=INGESTION_TIMEOUT_MS)
    expect(page.locator(".upload .message.error")).to_have_count(0)
    # The bar chart of images per class is drawn by Plotly into an SVG.
    expect(page.locator("#class-chart .main-svg").first).to_be_attached()
    expect(page.locator("#class-chart .xtick text")).to_have_count(len(CLASS_NAMES))
    assert labels_on_screen(page, "#class-chart .xtick text", "x") == CLASS_NAMES


def start_small_training(page):
    page.click("#train-button")
    page.fill("input[name=image_size]", "16")
    page.fill("input[name=epochs]", "3")
    page.fill("input[name=batch_size]", "8")
    page.click(".mb-preset[data-preset=small_cnn]")  # the layer builder on the form chooses the network
    page.click("#start-training")
    expect(page).to_have_url(re.compile(r"/runs/\d+/$"))


def wait_for_run_to_end(page):
    # The run page polls the run's JSON and reloads when it ends; the evaluation (test accuracy,
    # confusion matrix) is only in the reloaded page. A failed run shows #run-error instead.
    page.wait_for_selector("#test-accuracy, #run-error", timeout=TRAINING_TIMEOUT_MS)
    expect(page.locator("#run-error")).to_have_count(0)
    expect(page.locator("#run-status")).to_have_class(re.compile(r"\bsucceeded\b"))
    expect(page.locator("#test-accuracy")).to_have_text(re.compile(r"^\d+(\.\d+)?%$"))


def assert_curves_drawn(page):
    # Plotly draws each line as a g.trace inside the chart's .scatterlayer: training and validation.
    for chart in ("#loss-chart", "#accuracy-chart"):
        traces = page.locator(f"{chart} .scatterlayer .trace")
        expect(traces.first).to_be_attached()
        assert traces.count() >= 1, f"{chart} has no curve"
        # Three epochs give three markers on the training line.
        expect(traces.first.locator(".point")).to_have_count(3)


def assert_confusion_matrix_drawn(page):
    # Plotly 6 paints a heatmap as one <image> inside g.heatmaplayer > g.hm, and writes each
    # cell's count (texttemplate) as a g.heatmap-label > text over it.
    expect(page.locator("#confusion-chart .heatmaplayer .hm image")).to_have_count(1)
    cells = page.locator("#confusion-chart .heatmap-label text")
    expect(cells).to_have_count(len(CLASS_NAMES) ** 2)
    # 12 images a class leave one test image a class: the counts add up to the test set.
    assert sum(int(text) for text in cells.all_text_contents()) == len(CLASS_NAMES)
    expect(page.locator("#confusion-chart .xtick text")).to_have_count(len(CLASS_NAMES))
    # Read as a table: columns left to right and rows top to bottom in the same class order, so
    # that the right answers lie on the diagonal. (The DOM order of Plotly's ticks is not the
    # order on screen: the y axis is reversed.)
    assert labels_on_screen(page, "#confusion-chart .xtick text", "x") == CLASS_NAMES
    assert labels_on_screen(page, "#confusion-chart .ytick text", "y") == CLASS_NAMES


def labels_on_screen(page, selector, axis):
    """The texts of the (SVG) elements selector finds, in their order on screen along axis."""
    boxes = [(element.bounding_box()[axis], element.text_content()) for element in page.locator(selector).all()]
    return [text for _, text in sorted(boxes)]


def classify_two_images(page, base_url, tmp_path):
    page.goto(f"{base_url}/predict/")
    files = []
    for kind, seed in (("horizontal", 99), ("vertical", 98)):
        path = tmp_path / f"{kind}.png"
        path.write_bytes(image_bytes(kind, 16, seed=seed))
        files.append(str(path))
    page.set_input_files("input[name=images]", files)
    page.click("#classify-button")
    labels = page.locator(".predicted-label")
    expect(labels).to_have_count(2)
    page.screenshot(path=str(tmp_path / "predict-page.png"), full_page=True)
    return labels.all_inner_texts()


def test_browser_journey_draws_curves_and_confusion_matrix(celery_workers, live_server, browser_page, tmp_path):  # noqa: F811
    page, errors = browser_page

    sign_up(page, live_server.url)
    upload_zip(page, tmp_path)
    start_small_training(page)

    wait_for_run_to_end(page)
    assert_curves_drawn(page)
    assert_confusion_matrix_drawn(page)
    # A picture of the finished run page, for a person to look at when this fails.
    page.screenshot(path=str(tmp_path / "run-page.png"), full_page=True)
    (tmp_path / "run-page.html").write_text(page.content())

    labels = classify_two_images(page, live_server.url, tmp_path)
    assert all(label in CLASS_NAMES for label in labels), labels

    assert errors == [], "\n".join(errors)
