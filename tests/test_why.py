"""“Why this answer?”: a heat map over a picture of what its answer was based on (mlcore/explain.py), on the
classify page (asked for with the pictures, which are not kept), beside each test picture a run got wrong
and under each picture of a classification of many (an image address, for the owner only, and a 404 in
words when the model or the picture is gone), and in the API with `explain=true`."""
import base64
import io

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image as PILImage

from api_app.models import ApiToken
from datasets_app.models import Image
from tests.images import CLASSES, image_bytes
from training_app.models import TrainingRun


def png_size(data: bytes) -> tuple[int, int]:
    picture = PILImage.open(io.BytesIO(data))
    assert picture.format == "PNG"
    return picture.size


@pytest.fixture
def wrong_picture(shapes_model):
    """A test picture of the run, recorded as one it got wrong (as training records them: image id, the
    class it answered, how sure)."""
    image = Image.objects.filter(dataset=shapes_model.dataset, split="test").first()
    answered = next(i for i, name in enumerate(shapes_model.class_names) if name != image.image_class.name)
    shapes_model.wrong = [[image.id, answered, 0.6]]
    shapes_model.save(update_fields=["wrong"])
    return shapes_model, image


def two_files():
    return [SimpleUploadedFile("a.png", image_bytes("spot", 16), "image/png"),
            SimpleUploadedFile("notes.png", b"not an image", "image/png")]


def test_the_classify_page_shows_why_only_when_asked(alice, shapes_model):
    plain = alice.post(reverse("predict:index"), {"run": shapes_model.pk, "images": two_files()})
    assert "heat_map" not in plain.context["results"][0] and b"Why this answer?" not in plain.content
    asked = alice.post(reverse("predict:index"), {"run": shapes_model.pk, "images": two_files(), "explain": "on"})
    good, bad = asked.context["results"]
    prefix = "data:image/png;base64,"
    assert good["heat_map"].startswith(prefix) and "heat_map" not in bad
    assert png_size(base64.b64decode(good["heat_map"][len(prefix):])) == (224, 224)  # 16 x 16 enlarged 14 times
    page = asked.content.decode()
    assert "Why this answer?" in page and "Red: what the answer was based on most" in page


def test_a_wrong_test_picture_has_its_heat_map_for_the_owner_only(alice, wrong_picture, client, other_user):
    run, image = wrong_picture
    url = reverse("predict:why_wrong", args=[run.pk, image.pk])
    assert url in alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    answer = alice.get(url)
    assert answer.status_code == 200 and answer["Content-Type"] == "image/png"
    assert png_size(answer.content) == (224, 224)
    client.force_login(other_user)
    assert client.get(url).status_code == 404


def test_a_picture_the_run_did_not_get_wrong_is_not_explained_here(alice, wrong_picture):
    run, image = wrong_picture
    other = Image.objects.filter(dataset=run.dataset).exclude(pk=image.pk).first()
    assert alice.get(reverse("predict:why_wrong", args=[run.pk, other.pk])).status_code == 404


def test_a_model_or_picture_that_is_gone_answers_404_in_words_not_500(alice, wrong_picture):
    run, image = wrong_picture
    url = reverse("predict:why_wrong", args=[run.pk, image.pk])
    default_storage.delete(image.file.name)
    for change, words in [(None, "picture's file is missing"),
                          ({"model_file": f"models/{run.pk}/attempt-99/model.keras"}, "model file of this run is missing"),
                          ({"model_file": ""}, "no model any more")]:
        if change:
            TrainingRun.objects.filter(pk=run.pk).update(**change)
        gone = alice.get(url)
        assert gone.status_code == 404 and words in gone.content.decode(), gone.content
    TrainingRun.objects.filter(pk=run.pk).update(model_file=run.model_file)
    image.delete()
    deleted = alice.get(url)
    assert deleted.status_code == 404 and "deleted" in deleted.content.decode()


def test_the_api_adds_a_heat_map_to_each_picture_when_asked(client, shapes_model):
    key = ApiToken.objects.create_for(shapes_model.owner, "tests")[1]
    url = reverse("api:classify", args=[shapes_model.id])
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    body = {"images": [{"name": "a.png", "data": base64.b64encode(image_bytes("spot", 16)).decode()},
                       {"name": "b.png", "data": base64.b64encode(b"no picture").decode()}]}
    plain = client.post(url, body, content_type="application/json", **headers).json()["results"]
    assert all("heat_map" not in result for result in plain)
    for asked in ("true", "1"):
        good, bad = client.post(f"{url}?explain={asked}", body, content_type="application/json", **headers).json()["results"]
        assert good["class"] in CLASSES and png_size(base64.b64decode(good["heat_map"])) == (224, 224)
        assert good["probabilities"] == pytest.approx(plain[0]["probabilities"], abs=1e-5)
        assert bad == {"name": "b.png", "error": bad["error"]}
    schema = client.get(reverse("api:schema"), {"format": "json"}).json()
    parameters = schema["paths"]["/api/v1/models/{run_pk}/classify/"]["post"]["parameters"]
    assert any(p["name"] == "explain" and p["in"] == "query" for p in parameters)


def test_each_picture_of_a_classification_has_its_heat_map(alice, shapes_model, other_user, client):
    from predict_app.models import Classification
    from predict_app.tasks import classify_many
    from tests.images import make_zip

    archive = make_zip({f"{i}.png": image_bytes(CLASSES[i % 3], 16, seed=i) for i in range(3)})
    alice.post(reverse("predict:many_zip"), {"run": shapes_model.pk, "file": SimpleUploadedFile("p.zip", archive)})
    job = Classification.objects.get(owner=shapes_model.owner)
    classify_many(job.id)
    picture = job.images.exclude(label="").first()
    url = reverse("predict:classification_why", args=[job.pk, picture.pk])
    page = alice.get(reverse("predict:classification", args=[job.pk])).content.decode()
    assert url in page and "Red: what the answer was based on most" in page
    answer = alice.get(url)
    assert answer.status_code == 200 and png_size(answer.content) == (224, 224)
    assert alice.get(reverse("predict:classification_why", args=[job.pk, 10**6])).status_code == 404
    default_storage.delete(picture.file.name)
    gone = alice.get(url)
    assert gone.status_code == 404 and "missing" in gone.content.decode()
    alice.logout()
    client.force_login(other_user)
    assert client.get(url).status_code == 404
