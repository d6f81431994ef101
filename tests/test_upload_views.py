"""Bad uploads get a clear message on the page, never a 500, and nothing is stored."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from datasets_app.models import Dataset, Upload
from tests.images import image_bytes, labelled_zip, make_zip

PNG = image_bytes("spot", 8)


def post_zip(client, data, name="images.zip"):
    return client.post(reverse("datasets:list"), {"file": SimpleUploadedFile(name, data, "application/zip")})


def error_text(response):
    return " ".join(str(e) for e in response.context["form"].errors["file"])


@pytest.mark.parametrize("name, data, message", [
    ("photos.zip", b"not a zip at all", "not a zip archive"),
    ("photo.png", PNG, "Please upload a .zip file"),
    ("empty.zip", make_zip({}), "holds no images"),
    ("notes.zip", make_zip({"cats/notes.txt": b"x"}), "holds no images"),
    ("slip.zip", make_zip({"cats/1.png": PNG, "dogs/1.png": PNG, "../../x.png": PNG}), "points outside the archive"),
])
def test_a_bad_upload_is_refused_with_a_message(alice, name, data, message):
    response = post_zip(alice, data, name)
    assert response.status_code == 200
    assert message in error_text(response)
    assert not Dataset.objects.exists() and not Upload.objects.exists()


def test_a_good_upload_creates_a_dataset_and_queues_its_ingestion(alice, user):
    response = post_zip(alice, labelled_zip(per_class=2), "shapes.zip")
    dataset = Dataset.objects.get(owner=user)
    assert response.status_code == 302 and response["Location"] == reverse("datasets:detail", args=[dataset.pk])
    assert dataset.name == "shapes"
    assert dataset.uploads.get().status == "queued"


def test_the_sample_button_creates_the_digits_dataset(alice, user):
    response = alice.post(reverse("datasets:sample"))
    dataset = Dataset.objects.get(owner=user)
    assert response.status_code == 302
    assert dataset.name == "Handwritten digits (sample)" and dataset.uploads.get().original_name == "digits.zip"


def test_the_dataset_page_shows_progress_while_images_are_read(alice, user):
    post_zip(alice, labelled_zip(per_class=2))
    dataset = Dataset.objects.get(owner=user)
    dataset.uploads.update(status="running", done=3, total=6)
    page = alice.get(reverse("datasets:detail", args=[dataset.pk]))
    assert b"3 of 6 images read" in page.content
    assert alice.get(reverse("datasets:progress", args=[dataset.pk])).json()["uploads"][0]["percent"] == 50


def test_the_list_page_offers_a_folder_and_the_split_percentages(alice):
    page = alice.get(reverse("datasets:list")).content.decode()
    assert "webkitdirectory" in page and f'data-start-url="{reverse("datasets:folder_start_new")}"' in page
    assert 'name="val_percent" value="10"' in page and 'name="test_percent" value="10"' in page
