"""The layer builder in a real headless Chromium: open a preset, see Keras' summary, break the
network and read why, mend it by adding and moving layers, and change a setting."""
import json
import re

import pytest

from mlcore.builder import validate
from mlcore.presets import preset_spec
from tests.browser import browser_page, expect, sign_up  # noqa: F401 (browser_page is a fixture)
from tests.conftest import shapes_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FIRST_CHECK_MS = 20_000  # the first check imports TensorFlow in the server


def total_text(spec):
    return f"Total: {validate(spec, (16, 16, 1), 3)['total_params']:,} parameters"


def test_open_a_preset_break_it_and_mend_it(live_server, browser_page, settings):  # noqa: F811
    settings.PRETRAINED_WEIGHTS_DIR = ""
    page, js_errors = browser_page
    sign_up(page, live_server.url)
    js_errors.clear()  # the sign-up pages answer to test_browser.py; this test to the builder
    dataset = shapes_for("browser-user")

    page.goto(f"{live_server.url}/runs/builder/{dataset.pk}/")
    expect(page.locator("#builder-image-size")).to_have_value("16")
    totals, error = page.locator(".mb-totals"), page.locator(".mb-error")

    # Transfer learning needs weights files this site does not have: shown, but not to be opened.
    expect(page.locator(".mb-preset[data-preset=mobilenetv2]")).to_be_disabled()
    expect(page.locator(".mb-unavailable")).to_contain_text("Pretrained networks")

    page.click(".mb-preset[data-preset=dense]")
    expect(totals).to_contain_text(total_text(preset_spec("dense")), timeout=FIRST_CHECK_MS)
    page.click(".mb-preset[data-preset=small_cnn]")
    small_cnn = preset_spec("small_cnn")
    expect(totals).to_contain_text(total_text(small_cnn))
    layers = page.locator(".mb-layer")
    expect(layers).to_have_count(6)
    expect(page.locator(".mb-summary tbody tr")).to_have_count(9)  # input, rescale, six layers, output
    expect(page.locator(".mb-summary tbody tr").last).to_contain_text("3")  # three classes

    # Without Flatten the network ends in feature maps, and says so in plain words.
    expect(layers.nth(4).locator(".mb-type")).to_have_text("Flatten")
    page.click("button[aria-label='Remove layer 5']")
    expect(layers).to_have_count(5)
    expect(error).to_contain_text("The network ends with image-shaped feature maps (4 × 4 × 64)")
    expect(totals).to_be_hidden()

    # A Dense layer there is refused, naming it; global average pooling moved in front of it mends it.
    page.select_option(".mb-add-type", "Dense")
    page.click(".mb-add")
    expect(error).to_contain_text(
        "Layer 6: a Dense layer after a MaxPooling2D layer needs Flatten or GlobalAveragePooling2D first")
    expect(layers.nth(5)).to_have_class(re.compile(r"\bmb-bad\b"))
    page.select_option(".mb-add-type", "GlobalAveragePooling2D")
    page.click(".mb-add")
    page.click("button[aria-label='Move layer 7 up']")
    expect(layers.nth(5).locator(".mb-type")).to_have_text("GlobalAveragePooling2D")
    expect(layers.nth(6).locator(".mb-type")).to_have_text("Dense")
    mended = {"layers": [*small_cnn["layers"][:4], small_cnn["layers"][5], {"type": "GlobalAveragePooling2D"},
                         {"type": "Dense", "units": 128, "activation": "relu"}], "base": None}
    expect(totals).to_contain_text(total_text(mended))
    expect(error).to_be_hidden()
    expect(page.locator(".mb-bad")).to_have_count(0)
    assert json.loads(page.locator("input[name=model_spec]").input_value()) == mended

    # A setting out of range is explained; a good one updates the summary.
    neurons = layers.nth(6).locator("input[data-param=units]")
    neurons.fill("0")
    expect(error).to_contain_text("Layer 7 (Dense): “Neurons” must be a whole number from 1 to 4096.")
    neurons.fill("16")
    mended["layers"][6]["units"] = 16
    expect(totals).to_contain_text(total_text(mended))

    # The image size box is checked with the rest.
    page.fill("#builder-image-size", "4")
    expect(error).to_contain_text("The image size must be a whole number from 8 to 320 pixels.")

    assert js_errors == []
