"""Classifying many pictures in a real headless Chromium with the real Celery workers: a folder picked on
the predict page is sent in parts, the default worker classifies it while the page shows its progress,
and the results page shows every picture; a zip goes the same way."""
import re

import pytest
from django.test import override_settings

from predict_app.models import Classification
from tests.browser import browser_page, expect, sign_up  # noqa: F401 (browser_page is a fixture)
from tests.conftest import WORKER_SETTINGS, new_run, shapes_for
from tests.images import CLASSES, image_bytes, make_zip
from training_app.tasks import train

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

DONE_TIMEOUT_MS = 90_000


def trained_model_for(username):
    run = new_run(shapes_for(username), epochs=3)
    # The workers beside this test reap a run silent for a few seconds (tests/conftest.py WORKER_SETTINGS):
    # this training in the test's process beats as often as theirs do, or a slow machine loses it to them.
    with override_settings(HEARTBEAT_INTERVAL_S=int(WORKER_SETTINGS["HEARTBEAT_INTERVAL_S"])):
        train(run.id)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run


def test_a_folder_of_pictures_is_classified_by_the_worker(celery_workers, live_server, browser_page, tmp_path):  # noqa: F811
    page, errors = browser_page
    folder = tmp_path / "camera"
    for i in range(30):
        (folder / f"day{i % 2}").mkdir(parents=True, exist_ok=True)
        (folder / f"day{i % 2}" / f"{i}.png").write_bytes(image_bytes(CLASSES[i % 3], 16, seed=i))
    sign_up(page, live_server.url)
    run = trained_model_for("browser-user")

    page.goto(f"{live_server.url}/predict/?run={run.pk}")
    page.set_input_files("#many-form input[webkitdirectory]", str(folder))
    expect(page.locator("#many-form .folder-summary")).to_contain_text("30 files")
    page.get_by_role("button", name="Classify these pictures").click()

    expect(page).to_have_url(re.compile(r"/predict/many/\d+/$"))
    expect(page.locator("#job-text")).to_have_text("Done: 30 pictures.", timeout=DONE_TIMEOUT_MS)
    expect(page.locator(".classified-picture")).to_have_count(30)
    job = Classification.objects.get()
    assert (job.status, job.run_id, job.name, job.total) == ("done", run.pk, "camera", 30)
    assert sorted(job.images.values_list("name", flat=True)) == sorted(f"day{i % 2}/{i}.png" for i in range(30))

    # The counts per class lead to the pictures of that class.
    first_class = page.locator(".class-counts a").first
    name = first_class.text_content()
    first_class.click()
    shown = page.locator(".classified-picture figcaption strong")
    assert shown.count() == job.images.filter(label=name).count()
    assert set(shown.all_text_contents()) <= {name}
    assert errors == []


def test_a_zip_of_pictures_is_classified_by_the_worker(celery_workers, live_server, browser_page, tmp_path):  # noqa: F811
    page, errors = browser_page
    archive = tmp_path / "pictures.zip"
    archive.write_bytes(make_zip({f"{i}.png": image_bytes(CLASSES[i % 3], 16, seed=i) for i in range(9)}))
    sign_up(page, live_server.url)
    run = trained_model_for("browser-user")

    page.goto(f"{live_server.url}/predict/?run={run.pk}")
    page.set_input_files("#many-form input[name=file]", str(archive))
    page.get_by_role("button", name="Classify the zip").click()
    expect(page).to_have_url(re.compile(r"/predict/many/\d+/$"))
    expect(page.locator("#job-text")).to_have_text("Done: 9 pictures.", timeout=DONE_TIMEOUT_MS)
    expect(page.get_by_role("link", name="Spreadsheet (CSV)")).to_be_visible()
    assert page.locator(".class-counts tr").count() == len(CLASSES)
    assert errors == []


@pytest.mark.fake_camera
def test_the_camera_shows_what_the_model_sees_and_keeps_a_photo(live_server, browser_page):  # noqa: F811
    """Chromium's test camera: the three most likely classes are shown live, several answers a second,
    and "Take photo" keeps the frame with what the model said of it."""
    page, errors = browser_page
    sign_up(page, live_server.url)
    run = trained_model_for("browser-user")

    page.goto(f"{live_server.url}/predict/?run={run.pk}")
    page.get_by_role("button", name="Start the camera").click()
    expect(page.locator("#camera-top tr")).to_have_count(3, timeout=30_000)
    expect(page.locator("#camera-rate")).to_contain_text("answers a second", timeout=30_000)
    rows = page.locator("#camera-top tr td:first-child").all_text_contents()
    assert sorted(rows) == sorted(CLASSES)
    page.get_by_role("button", name="Take photo").click()
    caption = page.locator(".camera-photo figcaption")
    expect(caption).not_to_have_text("Classifying…", timeout=30_000)
    expect(caption).to_contain_text("% sure")
    assert page.locator(".camera-photo img").get_attribute("src").startswith("data:image/jpeg;base64,")
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_role("button", name="Start the camera")).to_be_visible()
    assert errors == []


def test_a_zip_that_cannot_be_classified_says_why_on_the_page(live_server, browser_page, tmp_path):  # noqa: F811
    """A zip of documents, or an empty file: the form says what was wrong, in place, and nothing is made."""
    page, errors = browser_page
    documents = tmp_path / "documents.zip"
    documents.write_bytes(make_zip({"report.pdf": b"%PDF-1.4 a report", "notes.pdf": b"%PDF-1.4 notes"}))
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    sign_up(page, live_server.url)
    run = trained_model_for("browser-user")

    page.goto(f"{live_server.url}/predict/?run={run.pk}")
    for sent, words in ((documents, "This zip holds no pictures"), (empty, "The submitted file is empty.")):
        page.set_input_files("#many-form input[name=file]", str(sent))
        page.get_by_role("button", name="Classify the zip").click()
        expect(page.locator("#many-form .errorlist")).to_contain_text(words)
        # The form that came back works like the first: the folder picker is there again.
        expect(page.locator("#many-form .folder-upload")).to_be_visible()
    assert not Classification.objects.exists()
    assert errors == []
