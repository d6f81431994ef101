"""Getting images in, in a real headless Chromium with the real Celery workers: a folder picked
with <input webkitdirectory> and sent in batches through a flaky connection, loose images
resumed with the Resume button, and a zip with its progress bar."""
import re
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from datasets_app.models import Dataset, Upload
from tests.browser import browser_page, expect, sign_up  # noqa: F401 (browser_page is a fixture)
from tests.images import CLASSES, image_bytes, labelled_zip

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

INGESTION_TIMEOUT_MS = 60_000
PER_CLASS = 84  # 3 classes: 252 images, so three batches of at most 100
BATCH_URL = re.compile(r"/uploads/\d+/folder/(\d+)/$")


def make_folder(root, per_class=PER_CLASS):
    """root/<class>/<n>.png, plus the hidden files a real disk holds, which are not sent."""
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            (root / name / f"{i}.png").write_bytes(image_bytes(name, 16, seed=c * 1000 + i))
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "spot" / "._0.png").write_bytes(b"resource fork")
    return per_class * len(CLASSES)


def network_noise(messages):
    """Chromium logs each failed request as a console error; those failures are the test's own doing."""
    return [m for m in messages if "Failed to load resource: net::ERR_FAILED" not in m]


class FlakyBatches:
    """Fails chosen batch requests once, in the two ways a connection fails: batch `lost_answer`
    reaches the server but its answer never comes back; batch `lost_request` never arrives."""

    def __init__(self, page, folder, lost_answer, lost_request):
        self.page, self.folder, self.lost_answer, self.lost_request = page, folder, lost_answer, lost_request
        self.sent = {}  # batch index -> requests the page made for it
        self.progress_text = {}  # batch index -> what the page said when it first sent the batch
        page.route(BATCH_URL, self.handle)

    def handle(self, route):
        index = int(BATCH_URL.search(route.request.url).group(1))
        self.sent[index] = self.sent.get(index, 0) + 1
        self.progress_text.setdefault(index, self.page.locator(".folder-upload .transfer-text").text_content())
        if self.sent[index] == 1 and index == self.lost_answer:
            self.deliver(route.request)  # the server stores the batch...
            route.abort()  # ...and the browser sees a network error
        elif self.sent[index] == 1 and index == self.lost_request:
            route.abort()
        else:
            route.continue_()

    def deliver(self, request):
        """Send the page's batch to the server as the page would have. (Playwright's route.fetch()
        cannot: Chromium hands an intercepted request's form to it without the files' bytes.)"""
        paths = re.findall(rb'name="paths"\r\n\r\n(.*?)\r\n', request.post_data_buffer)
        files = [SimpleUploadedFile(p.decode().rsplit("/", 1)[-1], (self.folder / p.decode()).read_bytes())
                 for p in paths]
        client = Client()
        client.force_login(get_user_model().objects.get(username="browser-user"))
        response = client.post(urlsplit(request.url).path, {"files": files, "paths": [p.decode() for p in paths]})
        assert response.json()["stored"] is True


class HeldRequests:
    """Holds matching requests until released, to look at the page just before it moves on."""

    def __init__(self, page, pattern):
        self.page, self.routes = page, []
        page.route(pattern, self.hold)

    def hold(self, route):
        self.routes.append(route)

    def wait(self, timeout_ms=30_000):
        waited = 0
        while not self.routes:
            assert waited < timeout_ms, "the request never came"
            self.page.wait_for_timeout(50)
            waited += 50

    def release(self):
        for route in self.routes:
            route.continue_()


def test_a_folder_is_sent_in_batches_through_a_flaky_connection(celery_workers, live_server, browser_page,  # noqa: F811
                                                                 tmp_path):
    page, errors = browser_page
    folder = tmp_path / "shapes-folder"
    image_count = make_folder(folder)
    sign_up(page, live_server.url)

    flaky = FlakyBatches(page, folder, lost_answer=1, lost_request=2)
    finish = HeldRequests(page, "**/folder/finish/")
    page.fill("input[name=name]", "Shapes from a folder")
    page.fill("input[name=val_percent]", "20")
    page.fill("input[name=test_percent]", "5")
    page.set_input_files("input[webkitdirectory]", str(folder))
    # The hidden files are left out.
    expect(page.locator(".folder-summary")).to_have_text(re.compile(
        rf"^“shapes-folder”: {image_count} files \(\d+\.\d KB\) in 3 folders: horizontal, spot, vertical\.$"))
    page.get_by_role("button", name="Create the dataset from these images").click()

    finish.wait()
    bar = page.locator(".folder-upload .progress")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    expect(page.locator(".folder-upload .transfer-text")).to_contain_text("Every file has arrived")
    finish.release()

    expect(page).to_have_url(re.compile(r"/datasets/\d+/$"))
    page.wait_for_selector('.upload[data-status="done"], .upload[data-status="failed"]', timeout=INGESTION_TIMEOUT_MS)
    expect(page.locator(".upload .upload-summary")).to_have_text(f"{image_count} images added.")

    # Batch 1 arrived with its answer lost: the page asked the server and did not send it again.
    # Batch 2 never arrived: the page sent it again.
    assert flaky.sent == {0: 1, 1: 1, 2: 2}
    assert re.match(rf"^100 of {image_count} files sent · \d+\.\d KB of \d+\.\d KB", flaky.progress_text[1])
    dataset = Dataset.objects.get(name="Shapes from a folder")
    upload = dataset.uploads.get()
    assert (upload.expected_files, upload.expected_batches, upload.received_batches) == (image_count, 3, [0, 1, 2])
    assert (upload.accepted, upload.duplicates, upload.rejected) == (image_count, 0, 0)
    names = list(dataset.images.values_list("original_name", flat=True))
    assert len(names) == len(set(names)) == image_count
    assert dataset.class_counts() == [(name, PER_CLASS) for name in sorted(CLASSES)]
    assert (dataset.val_fraction, dataset.test_fraction) == (0.2, 0.05)
    assert network_noise(errors) == []


def test_loose_images_resume_with_the_resume_button_after_the_retries(celery_workers, live_server,
                                                                     browser_page, tmp_path):  # noqa: F811
    page, errors = browser_page
    sign_up(page, live_server.url)
    archive = tmp_path / "first.zip"
    archive.write_bytes(labelled_zip(per_class=2))
    page.set_input_files("input[name=file]", str(archive))
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page).to_have_url(re.compile(r"/datasets/\d+/$"))
    page.wait_for_selector('.upload[data-status="done"]', timeout=INGESTION_TIMEOUT_MS)
    page.click("#add-images")

    pictures = []
    for i in range(3):
        pictures.append(tmp_path / f"photo-{i}.png")
        pictures[-1].write_bytes(image_bytes("spot", 16, seed=500 + i))
    offline = {"on": True}
    page.route(BATCH_URL, lambda route: route.abort() if offline["on"] else route.continue_())
    page.set_input_files("input[name=images]", [str(p) for p in pictures])
    page.click("#add-loose-images")

    # Four retries (1 + 2 + 4 + 8 seconds) fail too; then the page offers to resume.
    resume = page.locator("#loose-images-form .transfer-resume")
    expect(resume).to_be_visible(timeout=30_000)
    expect(page.locator("#loose-images-form .transfer-error")).to_contain_text("0 of 3 files have arrived and are kept")
    offline["on"] = False
    resume.click()

    expect(page).to_have_url(re.compile(r"/datasets/\d+/$"))
    # The newest upload comes first; the zip's, listed after it, was done already.
    expect(page.locator(".upload").first).to_have_attribute("data-status", re.compile("^(done|failed)$"),
                                                             timeout=INGESTION_TIMEOUT_MS)
    expect(page.locator(".upload .upload-summary").first).to_have_text("3 images added (3 to the inbox).")
    dataset = Dataset.objects.get()
    assert dataset.unlabelled_count() == 3 and dataset.images.count() == 9
    assert dataset.uploads.get(kind=Upload.Kind.FOLDER).original_name == "photo-0.png and 2 more"
    assert network_noise(errors) == []


def test_a_zip_shows_its_upload_progress(celery_workers, live_server, browser_page, tmp_path):  # noqa: F811
    page, errors = browser_page
    sign_up(page, live_server.url)
    archive = tmp_path / "shapes.zip"
    archive.write_bytes(labelled_zip(per_class=30, size=64))
    page.set_input_files("input[name=file]", str(archive))
    # The page moves on as soon as the zip is in, so note each state of the bar as it changes.
    seen = []
    page.expose_function("noteProgress", lambda percent, text: seen.append((int(percent), text)))
    page.evaluate("""() => {
      const transfer = document.querySelector("#new-dataset-form > .transfer");
      const note = () => noteProgress(transfer.querySelector(".progress").getAttribute("aria-valuenow"),
                                      transfer.querySelector(".transfer-text").textContent);
      new MutationObserver(note).observe(transfer, { attributes: true, childList: true, characterData: true, subtree: true });
    }""")
    page.get_by_role("button", name="Upload", exact=True).click()

    expect(page).to_have_url(re.compile(r"/datasets/\d+/$"))
    assert seen and seen[-1] == (100, "Sent. Checking the zip…"), seen
    percents = [percent for percent, _ in seen]
    assert percents == sorted(percents)
    page.wait_for_selector('.upload[data-status="done"], .upload[data-status="failed"]', timeout=INGESTION_TIMEOUT_MS)
    expect(page.locator(".upload .upload-summary")).to_have_text("90 images added.")
    assert errors == []


def test_a_bad_zip_shows_the_forms_message_without_leaving_the_page(live_server, browser_page, tmp_path):  # noqa: F811
    page, errors = browser_page
    sign_up(page, live_server.url)
    not_a_zip = tmp_path / "photos.zip"
    not_a_zip.write_bytes(b"this is not a zip")
    page.set_input_files("input[name=file]", str(not_a_zip))
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#new-dataset-form .errorlist")).to_contain_text("not a zip archive")
    # The form that came back works like the first: the folder picker is there again.
    expect(page.locator("#new-dataset-form .folder-upload")).to_be_visible()
    assert not Dataset.objects.exists()
    assert errors == []


def test_dropped_loose_files_are_sent_for_the_inbox(live_server, browser_page):  # noqa: F811
    page, errors = browser_page
    sign_up(page, live_server.url)
    dataset = Dataset.objects.create(owner=get_user_model().objects.get(), name="Drops")
    page.goto(f"{live_server.url}/datasets/{dataset.pk}/add/")
    # A script cannot make the folder entries a real drop from the desktop carries; files it can.
    page.locator("#add-folder .drop-zone").evaluate("""(zone) => {
      const dropped = new DataTransfer();
      for (const name of ["b.png", "a.png", ".hidden.png"]) dropped.items.add(new File(["not really a png"], name));
      zone.dispatchEvent(new DragEvent("drop", { dataTransfer: dropped, bubbles: true, cancelable: true }));
    }""")
    expect(page.locator("#add-folder .folder-summary")).to_have_text("2 files (32 bytes) with no folder: they go to the inbox.")
    page.get_by_role("button", name="Add these images").first.click()
    expect(page).to_have_url(re.compile(rf"/datasets/{dataset.pk}/$"))
    upload = dataset.uploads.get()
    assert (upload.original_name, upload.expected_files, upload.received_batches) == ("a.png and 1 more", 2, [0])
    assert upload.status != "receiving"
    assert errors == []
