"""The staff page "Pretrained networks" in a real browser: the progress of a download drawn from the
polled JSON, and an upload checked before it is kept."""
import re

import pytest
from django.contrib.auth import get_user_model

from mlcore.pretrained import CATALOGUE
from pretrained_app.models import WeightsDownload
from tests.browser import browser_page, expect  # noqa: F401
from tests.conftest import PASSWORD
from tests.test_pretrained import stand_ins  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in_as_staff(page, base_url):
    get_user_model().objects.create_user("sam", password=PASSWORD, is_staff=True)
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", "sam")
    page.fill("input[name=password]", PASSWORD)
    page.locator("main button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/datasets/$"))


def test_watch_a_download_and_upload_a_file(live_server, browser_page, settings, tmp_path, stand_ins):  # noqa: F811
    settings.PRETRAINED_WEIGHTS_DIR = str(tmp_path / "weights")
    page, js_errors = browser_page
    log_in_as_staff(page, live_server.url)
    page.get_by_role("link", name="Pretrained networks").click()
    expect(page).to_have_url(re.compile(r"/pretrained/$"))
    mobilenet, efficientnet = page.locator("#network-mobilenetv2"), page.locator("#network-efficientnetb0")
    expect(mobilenet.locator("[data-field=badge]")).to_have_text("Not available")
    expect(mobilenet.get_by_role("button", name="Download")).to_be_visible()

    # A download a worker is doing: the page follows it by itself.
    download = WeightsDownload.objects.create(base="mobilenetv2", status="running", bytes_done=1024**2,
                                              bytes_total=4 * 1024**2)
    page.reload()
    expect(mobilenet.locator("[data-field=download-text]")).to_have_text("Downloading: 1.0 MB of 4.0 MB (25 %)")
    expect(mobilenet.get_by_role("button", name="Download")).to_be_hidden()
    download.record_progress(3 * 1024**2, 4 * 1024**2)
    expect(mobilenet.locator("[data-field=download-text]")).to_have_text("Downloading: 3.0 MB of 4.0 MB (75 %)")
    expect(mobilenet.locator("[data-field=progress] > div")).to_have_attribute("style", re.compile(r"width: 75%"))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / CATALOGUE["mobilenetv2"].file_name).write_bytes(stand_ins["mobilenetv2"])
    download.finish()
    expect(mobilenet.locator("[data-field=badge]")).to_have_text("Available")
    expect(mobilenet.locator("[data-field=download-text]")).to_contain_text("Downloaded and checked")
    expect(mobilenet.locator("[data-field=progress]")).to_be_hidden()

    # Without internet: the file is uploaded, and checked first.
    efficientnet.locator("input[type=file]").set_input_files(
        {"name": "efficientnetb0_notop.h5", "mimeType": "application/octet-stream",
         "buffer": stand_ins["efficientnetb0"][:-1] + b"?"})
    efficientnet.get_by_role("button", name="Upload and check").click()
    expect(page.locator("main > .message.error")).to_contain_text("The uploaded file does not match EfficientNetB0's weights")
    expect(efficientnet.locator("[data-field=badge]")).to_have_text("Not available")
    efficientnet.locator("input[type=file]").set_input_files(
        {"name": "efficientnetb0_notop.h5", "mimeType": "application/octet-stream", "buffer": stand_ins["efficientnetb0"]})
    efficientnet.get_by_role("button", name="Upload and check").click()
    expect(page.locator("main > .message")).to_contain_text("checked and is in place")
    expect(efficientnet.locator("[data-field=badge]")).to_have_text("Available")
    assert js_errors == []
