"""The run page's "Use the model elsewhere" table in a real headless Chromium, with the real workers:
"Make it" queues a format without leaving the page, the row shows the worker's steps, then the
check's result and a download."""
import zipfile

import pytest

from tests.browser import browser_page, expect, sign_up  # noqa: F401 (browser_page is a fixture)
from tests.test_browser_classify_many import trained_model_for

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_an_export_is_made_checked_and_downloaded_from_the_run_page(celery_workers, live_server, browser_page,  # noqa: F811
                                                                     tmp_path):
    page, errors = browser_page
    sign_up(page, live_server.url)
    run = trained_model_for("browser-user")

    page.goto(f"{live_server.url}/runs/{run.pk}/")
    row = page.locator('#exports tr[data-kind="onnx"]')
    row.get_by_role("button", name="Make it").click()
    expect(row.locator("progress")).to_be_visible()
    expect(row.locator(".export-state")).to_contain_text("Checked with onnxruntime on", timeout=120_000)
    expect(row.locator(".export-state")).to_contain_text("the same answers as the original")
    expect(row.get_by_role("button", name="Make again")).to_be_visible()

    with page.expect_download() as download:
        row.get_by_role("link", name="Download").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == f"run-{run.pk}-onnx.zip"
    assert {"model.onnx", "about.json", "README.md"} <= set(zipfile.ZipFile(saved).namelist())
    assert errors == []
