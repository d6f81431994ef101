"""The "Train a model" page in a real headless Chromium: the embedded layer builder, the pictures as
the network will see them, the random changes, choosing another network, and "Start training"
storing exactly what was on the screen. No worker runs here: the run stays queued."""
import re

import pytest

from mlcore.builder import normalise_spec
from mlcore.presets import preset_spec
from tests.browser import browser_page, expect, sign_up  # noqa: F401 (browser_page is a fixture)
from tests.conftest import shapes_for
from training_app.models import TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FIRST_CHECK_MS = 20_000  # the first check (and the first augmentation preview) imports TensorFlow in the server


def natural_widths(locator):
    return locator.evaluate_all("images => images.map((image) => image.naturalWidth)")


def open_form(page, live_server):
    sign_up(page, live_server.url)
    dataset = shapes_for("browser-user")
    page.goto(f"{live_server.url}/runs/new/{dataset.pk}/")
    return dataset


def test_change_the_settings_see_the_pictures_and_start_training(live_server, browser_page, settings):  # noqa: F811
    settings.PRETRAINED_WEIGHTS_DIR = ""
    page, js_errors = browser_page
    open_form(page, live_server)

    # The builder opens the suggested network; with JavaScript on it, not the list, chooses the network.
    expect(page.locator(".mb-layer")).to_have_count(6)
    expect(page.locator(".mb-totals")).to_contain_text("Total:", timeout=FIRST_CHECK_MS)
    expect(page.locator("#id_preset")).to_be_hidden()
    expect(page.locator("#id_preset")).to_have_value("small_cnn")
    expect(page.locator("#start-training")).to_be_in_viewport()  # a newcomer need not scroll for it
    expect(page.locator("#why-settings")).to_contain_text("Only 30 images")
    expect(page.locator("#fine-tune-fields")).to_be_hidden()  # no pretrained network here

    # Six training pictures as the network sees them: 16 pixels, grayscale, enlarged pixel by pixel.
    strip = page.locator("#input-preview .tf-strip img")
    status = page.locator("#input-preview .tf-preview-status")
    expect(strip).to_have_count(6)
    expect(status).to_contain_text("16 × 16 pixels, in grayscale")
    assert natural_widths(strip) == [16] * 6
    expect(strip.first).to_have_class(re.compile(r"\btf-pixelated\b"))

    # Colour, size and padding: the pictures follow, and the builder checks the network for them.
    page.check("#id_channels_1")
    expect(status).to_contain_text("16 × 16 pixels, in colour")
    expect(page.locator(".mb-summary")).to_contain_text("16 × 16 × 3")
    page.fill("#id_image_size", "24")
    expect(status).to_contain_text("24 × 24 pixels, in colour")
    assert natural_widths(strip) == [24] * 6
    expect(page.locator(".mb-summary")).to_contain_text("24 × 24 × 3")
    with page.expect_response(lambda response: "/preview/" in response.url and "resize=pad" in response.url):
        page.check("#id_resize_mode_2")

    # Random changes: none switched on says so; a rotation shows two pictures with four changes each.
    grid = page.locator("#augment-preview .tf-grid")
    augment_status = page.locator("#augment-preview .tf-preview-status")
    expect(grid.locator("img")).to_have_count(10, timeout=FIRST_CHECK_MS)  # the suggested small turns and zooms
    for name in ("rotation", "zoom", "translation"):
        page.fill(f"#id_augment_{name}", "0")
    expect(augment_status).to_contain_text("No random changes are switched on")
    expect(grid).to_be_hidden()
    page.fill("#id_augment_rotation", "90")
    expect(grid).to_be_visible()
    expect(grid.locator("img")).to_have_count(10)
    expect(augment_status).to_contain_text("4 random changes of it")
    assert natural_widths(grid.locator("img")) == [24] * 10
    first_change = grid.locator("figure:not(.tf-original) img").first
    before = first_change.get_attribute("src")
    page.click("#augment-again")
    expect(first_change).not_to_have_attribute("src", before)

    # Another ready-made network brings the learning method and step size it trains best with.
    page.fill("#id_learning_rate", "0.05")
    expect(page.locator(".mb-preset[data-preset=mobilenetv2]")).to_be_disabled()
    page.click(".mb-preset[data-preset=wide]")
    expect(page.locator(".mb-layer")).to_have_count(2)
    expect(page.locator("#id_preset")).to_have_value("wide")
    expect(page.locator("#id_optimizer input[value=rmsprop]")).to_be_checked()
    expect(page.locator("#id_learning_rate")).to_have_value("0.001")
    expect(page.locator("#preset-note")).to_contain_text("“Wide dense network” trains best with RMSprop")
    # Changing its layers makes it a network built by hand; changing them back makes it the preset again.
    units = page.locator(".mb-layer").nth(1).locator("input[data-param=units]")
    units.fill("64")
    expect(page.locator("#id_preset")).to_have_value("custom")
    units.fill("512")
    expect(page.locator("#id_preset")).to_have_value("wide")
    expect(page.locator(".mb-totals")).to_contain_text("Total:")
    page.fill("#id_epochs", "3")
    page.locator("#more-settings summary").click()
    page.check("#id_lr_schedule input[value=step]")
    assert js_errors == []

    page.click("#start-training")
    expect(page).to_have_url(re.compile(r"/runs/\d+/$"))
    run = TrainingRun.objects.get()
    assert page.url.endswith(f"/runs/{run.pk}/")
    assert (run.preset, run.optimizer, run.learning_rate, run.lr_schedule) == ("wide", "rmsprop", 0.001, "step")
    assert run.model_spec == normalise_spec(preset_spec("wide"))
    assert (run.image_size, run.channels, run.resize_mode, run.epochs) == (24, 3, "pad", 3)
    assert run.augmentation == {"flip": "none", "rotation": 90, "zoom": 0, "translation": 0, "contrast": 0,
                                "brightness": 0}
    assert run.status == "queued"


def test_a_newcomer_starts_training_without_touching_anything(live_server, browser_page, settings):  # noqa: F811
    settings.PRETRAINED_WEIGHTS_DIR = ""
    page, js_errors = browser_page
    open_form(page, live_server)
    expect(page.locator(".mb-layer")).to_have_count(6)
    page.click("#start-training")
    expect(page).to_have_url(re.compile(r"/runs/\d+/$"))
    run = TrainingRun.objects.get()
    assert (run.preset, run.image_size, run.channels, run.epochs, run.batch_size) == ("small_cnn", 16, 1, 40, 32)
    assert run.model_spec == normalise_spec(preset_spec("small_cnn"))
    assert run.augmentation["rotation"] == 10
    assert [error for error in js_errors if "/runs/new/" in error] == []


def test_fine_tuning_settings_show_for_a_pretrained_network_with_layers_to_fine_tune(
        live_server, browser_page, settings, weights_dir):  # noqa: F811
    settings.PRETRAINED_WEIGHTS_DIR = str(weights_dir[0])
    page, js_errors = browser_page
    open_form(page, live_server)
    expect(page.locator(".mb-layer")).to_have_count(6)
    page.check("#id_channels_1")
    page.fill("#id_image_size", "32")
    page.click(".mb-preset[data-preset=mobilenetv2]")
    expect(page.locator(".mb-totals")).to_contain_text("the pretrained network's stay as they are",
                                                       timeout=FIRST_CHECK_MS)
    expect(page.locator("#id_preset")).to_have_value("mobilenetv2")
    fine_tune = page.locator("#fine-tune-fields")
    expect(fine_tune).to_be_hidden()  # nothing to fine-tune yet
    page.fill("input[data-base-param=fine_tune_layers]", "20")
    expect(fine_tune).to_be_visible()
    expect(page.locator("#id_preset")).to_have_value("custom")
    expect(page.locator("#id_fine_tune_learning_rate")).to_have_value("0.00001")
    page.fill("#id_fine_tune_epochs", "2")
    expect(page.locator(".mb-totals")).to_contain_text("While fine-tuning")
    assert js_errors == []

    page.click("#start-training")
    expect(page).to_have_url(re.compile(r"/runs/\d+/$"))
    run = TrainingRun.objects.get()
    assert (run.preset, run.image_size, run.channels) == ("custom", 32, 3)
    assert run.model_spec["base"] == {"name": "mobilenetv2", "fine_tune_layers": 20}
    assert (run.fine_tune_epochs, run.fine_tune_learning_rate) == (2, 0.00001) and run.fine_tunes


def test_the_estimate_follows_the_settings_and_the_time_chosen(live_server, browser_page):  # noqa: F811
    page, js_errors = browser_page
    open_form(page, live_server)
    estimate = page.locator("#time-estimate-text")
    expect(estimate).to_contain_text("under a minute")  # 30 small pictures
    # Big pictures and many epochs take minutes on a small computer...
    page.fill("#id_image_size", "256")
    page.fill("#id_epochs", "500")
    page.locator("#id_epochs").dispatch_event("change")
    expect(estimate).to_contain_text(re.compile(r"about \d+ minutes"))
    # ...unless a time is chosen: the worker keeps to it.
    page.get_by_label("About 2 minutes").check()
    expect(estimate).to_contain_text("about 2 minutes")
    page.click("#start-training")
    expect(page).to_have_url(re.compile(r"/runs/\d+/$"))
    run = TrainingRun.objects.get()
    assert run.time_budget_s == 120 and run.epochs == 500
    assert js_errors == []
