"""Every dataset, run and model belongs to its owner: anyone else gets 404 on every URL."""
import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from datasets_app.models import Dataset, Image, ImageClass, Upload
from tests.conftest import PASSWORD
from tests.images import image_bytes
from training_app.models import TrainingRun


@pytest.fixture
def owned(user, settings):
    dataset = Dataset.objects.create(owner=user, name="Mine")
    Upload.objects.create(dataset=dataset, original_name="x.zip", file="uploads/x.zip", status="done")
    image_class = ImageClass.objects.create(dataset=dataset, name="cats")
    image = Image(dataset=dataset, image_class=image_class, width=8, height=8, channels=1, sha256="0" * 64,
                  original_name="cats/1.png", split="train")
    image.file.save("1.png", ContentFile(image_bytes("spot", 8)))
    run = TrainingRun.objects.create(owner=user, dataset=dataset, preset="dense", image_size=8, epochs=1,
                                     batch_size=8, learning_rate=0.001, status="succeeded",
                                     model_file="models/x/model.keras")
    folder = settings.MEDIA_ROOT / "models" / "x"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.keras").write_bytes(b"model")
    (folder / "model.json").write_text("{}")
    return {"dataset": dataset, "image": image, "run": run}


def urls(o):
    d, r = o["dataset"].pk, o["run"].pk
    return [
        ("get", reverse("datasets:detail", args=[d])),
        ("get", reverse("datasets:progress", args=[d])),
        ("get", reverse("datasets:image", args=[d, o["image"].pk])),
        ("post", reverse("datasets:delete", args=[d])),
        ("get", reverse("training:new", args=[d])),
        ("post", reverse("training:new", args=[d])),
        ("get", reverse("training:preview_input", args=[d]) + "?size=8"),
        ("get", reverse("training:preview_augmentation", args=[d]) + "?size=8&rotation=10"),
        ("get", reverse("training:detail", args=[r])),
        ("get", reverse("training:status", args=[r])),
        ("post", reverse("training:cancel", args=[r])),
        ("get", reverse("training:model", args=[r])),
        ("get", reverse("training:model_info", args=[r])),
    ]


def dataset_urls(o):
    """Every dataset page there is, read from the URL patterns, so a new page cannot be forgotten here."""
    from datasets_app.urls import urlpatterns

    dataset = o["dataset"]
    values = {"pk": dataset.pk, "image_pk": o["image"].pk, "upload_pk": dataset.uploads.get().pk,
              "class_pk": o["image"].image_class_id, "index": 0}
    found = []
    for pattern in urlpatterns:
        names = pattern.pattern.converters.keys()
        if "pk" in names:
            url = reverse(f"datasets:{pattern.name}", kwargs={name: values[name] for name in names})
            found += [("get", url), ("post", url)]
    return found


def test_another_user_gets_404_for_every_object_url(client, owned, other_user):
    client.force_login(other_user)
    answers = {}
    for method, url in urls(owned) + dataset_urls(owned):
        answers.setdefault(url, set()).add(getattr(client, method)(url).status_code)
    # 405 (a method the page does not take) says nothing about the object; the other gets 404.
    assert {url: codes for url, codes in answers.items() if not (codes <= {404, 405} and 404 in codes)} == {}
    assert Dataset.objects.filter(pk=owned["dataset"].pk).exists()
    assert owned["dataset"].images.count() == 1 and owned["dataset"].classes.count() == 1


def test_every_dataset_page_is_covered_by_the_ownership_check(owned):
    assert len(dataset_urls(owned)) >= 2 * 25


def test_the_owner_can_open_every_object_url(client, owned, user):
    client.force_login(user)
    for method, url in urls(owned):
        if method == "get":
            assert client.get(url).status_code == 200, url


def test_another_users_model_cannot_be_chosen_for_predictions(client, owned, other_user):
    client.force_login(other_user)
    response = client.post(reverse("predict:index"), {"run": owned["run"].pk})
    assert response.status_code == 200
    assert "run" in response.context["form"].errors


def test_lists_show_only_the_users_own_objects(client, owned, other_user):
    client.force_login(other_user)
    assert b"Mine" not in client.get(reverse("datasets:list")).content
    assert list(client.get(reverse("training:list")).context["runs"]) == []


@pytest.mark.parametrize("name", ["datasets:list", "training:list", "predict:index"])
def test_pages_ask_anonymous_visitors_to_log_in(client, db, name):
    response = client.get(reverse(name))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_sign_up_log_in_and_log_out(client, db):
    response = client.post(reverse("signup"), {"username": "bob", "password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 302
    assert client.get(reverse("datasets:list")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("datasets:list")).status_code == 302
    assert client.post(reverse("login"), {"username": "bob", "password": PASSWORD}).status_code == 302
