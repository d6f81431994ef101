"""Every URL of the site, for every role. Each dataset, run and model belongs to its owner: anyone else
gets a 404 on every address that names it, a visitor who is not logged in is sent to the login page,
staff pages refuse everyone who is not staff, and no one ever gets a server error.

The addresses are read from the URL patterns of the whole site (dlsite.urls, every app), not from a
list kept by hand, so a new page is checked the day it is added. A page this test cannot fill in or
does not know how to judge makes it fail, with the page's name in the message."""
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.http import QueryDict
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from api_app.models import ApiToken
from datasets_app.models import Dataset, Image, ImageClass, Upload
from predict_app.models import Classification, ClassifiedImage, SuggestionJob, UnsurePicture
from mlcore.pretrained import CATALOGUE
from tests.conftest import PASSWORD, new_run
from tests.images import image_bytes
from training_app.models import LabelReview, LabelSuspect, ModelExport, Search, TrainingRun

LOGIN = reverse("login")

# ---- What the test knows about the site's pages

# Django's own admin: it checks staff itself, and it is not ours to test.
SKIPPED_NAMESPACES = {"admin"}

# Pages this test leaves out, each with why.
SKIPPED = {
    # Answers 503 whenever a worker is missing, by design (the tests run without workers);
    # tests/test_predict_and_health.py checks what it tells whom.
    "healthz",
}

# Pages for anyone, logged in or not; checked only for never failing.
PUBLIC = {"home", "signup", "login", "logout", "api:schema", "api:docs", "api:not_found"}

# Pages that name no object: each logged-in user sees, or makes, their own things there.
PERSONAL = {
    "datasets:list", "datasets:sample", "datasets:folder_start_new",
    "training:list", "training:queue", "training:queue_status", "training:builder_check", "training:compare",
    "predict:index", "predict:many_zip", "predict:folder_start",
    "api:tokens", "api:models", "api:datasets", "api:token_list",
}

# Pages only for staff: everyone else gets a 404 (or 403).
STAFF_NAMESPACES = {"pretrained"}
STAFF = {"housekeeping:disk"}

# What each keyword of an address stands for, in the fixture `owned` below. A keyword first
# looks for its app's own meaning ("pk" is a dataset under datasets:, a run under training:).
OBJECT_BY_KWARG = {
    ("datasets", "pk"): "dataset",
    ("training", "pk"): "run",
    ("predict", "pk"): "classification",
    "picture_pk": "picture",
    "classification_pk": "classification",
    "token_pk": "token",
    "dataset_pk": "dataset",
    "image_pk": "image",
    "class_pk": "class",
    "upload_pk": "upload",
    "run_pk": "run",
    "version_pk": "version",
    "search_pk": "search",
    "unsure_pk": "unsure",
    "review_pk": "review",
    "suspect_pk": "suspect",
}
# Keywords that are not objects of the owner: a value that is valid for the page.
VALUE_BY_KWARG = {
    "index": 0,  # the number of a batch of a folder upload
    ("pretrained", "name"): next(iter(CATALOGUE)),  # a network of the catalogue
    ("training", "kind"): "onnx",  # a format of a model (mlcore/formats.py)
    ("api", "kind"): "onnx",
}

# Pages the owner may get a 404 from, for the fixture's objects: {name: why}. Anywhere else an
# owner's 404 would make the other user's 404 meaningless, so it fails the test.
OWNER_MAY_404 = {
    # The fixture's model is a few bytes, not a network, and its run got no test picture wrong: the owner is
    # told so in words (tests/test_why.py checks that the owner gets the heat maps of a real model).
    "predict:why_wrong": "no wrong pictures, and no network to explain with",
    "predict:classification_why": "no network to explain with",
}


# ---- Reading the URL patterns

def site_urls():
    """{"namespace:name": (namespace, keyword names)} for every URL pattern of the site; a pattern
    without a name is listed under its route, so that it fails the checks below by name."""
    found = {}

    def walk(patterns, namespace, kwargs):
        for entry in patterns:
            names = kwargs | _keywords(entry.pattern)
            if isinstance(entry, URLResolver):
                if entry.namespace in SKIPPED_NAMESPACES:
                    continue
                inner = ":".join(part for part in (namespace, entry.namespace) if part)
                walk(entry.url_patterns, inner, names)
            elif isinstance(entry, URLPattern):
                name = entry.name or f"<a pattern without a name: {entry.pattern}>"
                found[f"{namespace}:{name}" if namespace else name] = (namespace, frozenset(names))

    walk(get_resolver().url_patterns, "", frozenset())
    return found


def _keywords(pattern):
    converters = getattr(pattern, "converters", None)  # path(); re_path() has named groups instead
    return frozenset(converters if converters is not None else pattern.regex.groupindex)


def kind_of(name, namespace, kwargs):
    """How a page is judged: "skipped", "public", "personal", "staff" or "object"; None if unknown."""
    if name in SKIPPED:
        return "skipped"
    if name in STAFF or namespace in STAFF_NAMESPACES:
        return "staff"
    if not kwargs:
        return "public" if name in PUBLIC else "personal" if name in PERSONAL else None
    return "object" if all(_meaning(namespace, kwarg) for kwarg in kwargs) else None


def _meaning(namespace, kwarg):
    for table in (OBJECT_BY_KWARG, VALUE_BY_KWARG):
        for key in ((namespace, kwarg), kwarg):
            if key in table:
                return table, key
    return None


def address(name, namespace, kwargs, owned):
    values = {}
    for kwarg in kwargs:
        table, key = _meaning(namespace, kwarg)
        values[kwarg] = owned[table[key]].pk if table is OBJECT_BY_KWARG else table[key]
    return reverse(name, kwargs=values)


URLS = site_urls()


def test_every_page_of_the_site_is_known_to_this_test():
    unknown = sorted(f"{name} (keywords: {', '.join(sorted(kwargs)) or 'none'})"
                     for name, (namespace, kwargs) in URLS.items() if kind_of(name, namespace, kwargs) is None)
    assert unknown == [], (
        "These pages are not checked for who may open them. Say what each keyword stands for in "
        "OBJECT_BY_KWARG or VALUE_BY_KWARG, or put a page without keywords in PUBLIC, PERSONAL or STAFF: "
        + "; ".join(unknown))


def test_the_pages_of_every_app_are_read():
    namespaces = {namespace for namespace, _ in URLS.values()}
    assert {"", "datasets", "training", "predict", "pretrained"} <= namespaces
    assert not namespaces & SKIPPED_NAMESPACES
    assert len(URLS) >= 55, len(URLS)
    listed = SKIPPED | PUBLIC | PERSONAL | STAFF | set(OWNER_MAY_404)
    assert listed - set(URLS) == set(), "pages listed here that the site no longer has"


def test_a_page_with_an_unknown_keyword_is_named():
    assert kind_of("shop:basket", "shop", frozenset({"basket_pk"})) is None
    assert kind_of("shop:all", "shop", frozenset()) is None
    assert kind_of("datasets:new_page", "datasets", frozenset({"pk", "image_pk"})) == "object"


# ---- The objects

@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_user("sam", password=PASSWORD, is_staff=True)


@pytest.fixture
def owned(user, settings):
    """One of everything a user can own: a dataset with a class, an image, an upload, a version,
    and a finished run whose model files are on disk."""
    dataset = Dataset.objects.create(owner=user, name="Mine")
    # A folder upload, as the folder pages take only those (the report pages take any).
    upload = Upload.objects.create(dataset=dataset, kind="folder", original_name="pictures", status="done",
                                   created_by=user, total=1, done=1, accepted=1, expected_files=1,
                                   expected_batches=1, received_batches=[0])
    image_class = ImageClass.objects.create(dataset=dataset, name="cats")
    image = Image(dataset=dataset, image_class=image_class, upload=upload, width=8, height=8, channels=1,
                  sha256="0" * 64, original_name="cats/1.png", split="train")
    image.file.save("1.png", ContentFile(image_bytes("spot", 8)))
    ImageClass.objects.create(dataset=dataset, name="dogs")  # a second class, to merge with and to train on
    run = new_run(dataset, image_size=8, status="succeeded", model_file="models/x/model.keras",
                  class_names=["cats", "dogs"])
    folder = settings.MEDIA_ROOT / "models" / "x"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.keras").write_bytes(b"model")
    (folder / "model.json").write_text("{}")
    (folder / "exports").mkdir(exist_ok=True)
    (folder / "exports" / "onnx.zip").write_bytes(b"zip")
    ModelExport.objects.create(run=run, kind="onnx", status="ready", file="models/x/exports/onnx.zip", size_bytes=3,
                               checked_pictures=1, max_difference=0.0)
    classification = Classification.objects.create(owner=user, run=run, name="holiday", status="done", total=1, done=1,
                                                    expected_batches=1, received_batches=[0])
    picture = ClassifiedImage(classification=classification, name="a/1.png", label="cats", confidence=0.9,
                              probabilities=[0.9, 0.1])
    picture.file.save("1.png", ContentFile(image_bytes("spot", 8)))
    search = Search.objects.create(owner=user, dataset=dataset, name="A few settings", total_budget_s=900)
    TrainingRun.objects.filter(id=run.id).update(search=search)
    SuggestionJob.objects.create(owner=user, dataset=dataset, run=run, status="done", total=1, done=1)
    unsure = UnsurePicture(run=run, name="b.png", label="dogs", confidence=0.4, doubt="spread", reason="Not sure")
    unsure.file.save("b.png", ContentFile(image_bytes("spot", 8)))
    review = LabelReview.objects.create(dataset=dataset, status="done", pictures=1)
    suspect = LabelSuspect.objects.create(review=review, image=image, image_name=image.original_name, rank=0,
                                          given_label="cats", suggested_label="dogs", reason="Looks like dogs.",
                                          score=0.01)
    return {"dataset": dataset, "image": image, "class": image_class, "upload": upload, "version": run.version,
            "run": run, "classification": classification, "picture": picture, "search": search, "unsure": unsure,
            "review": review, "suspect": suspect,
            "token": ApiToken.objects.create_for(user, "a program")[0]}


def state(owned):
    """What another user's request must never change."""
    dataset = owned["dataset"]
    return {"dataset": list(Dataset.objects.filter(pk=dataset.pk).values_list("name", "val_fraction")),
            "images": sorted(dataset.images.values_list("id", "image_class__name", "split")),
            "classes": sorted(dataset.classes.values_list("id", "name")),
            "uploads": sorted(dataset.uploads.values_list("id", "status")),
            "runs": sorted(TrainingRun.objects.filter(dataset=dataset).values_list("id", "status", "cancel_requested")),
            "exports": sorted(ModelExport.objects.filter(run__dataset=dataset).values_list("id", "status")),
            "classifications": sorted(Classification.objects.filter(run__dataset=dataset).values_list(
                "id", "status", "unsure_below")),
            "searches": sorted(Search.objects.filter(dataset=dataset).values_list("id", "name", "stopped_at")),
            "tokens": sorted(ApiToken.objects.filter(owner=dataset.owner).values_list("id", "revoked_at"))}


# ---- The checks

def fetch(client, method, url):
    response = getattr(client, method)(url)
    return response.status_code, response.get("Location", "")


def asks_to_log_in(status, location):
    return (status == 302 and location.startswith(LOGIN)) or status in (401, 403)


def refused(status):
    """What someone gets at an address that names another user's object: nothing about it.
    405 (a method the page does not take) says nothing about the object either."""
    return status in (403, 404, 405)


def check_anonymous(client, url):
    answers = [fetch(client, method, url) for method in ("get", "post")]
    # Both methods may not be taken by the page, but at least one must ask to log in.
    assert all(asks_to_log_in(*answer) or answer[0] == 405 for answer in answers), answers
    assert any(asks_to_log_in(*answer) for answer in answers), answers


def never_fails(client, url):
    answers = {method: fetch(client, method, url)[0] for method in ("get", "post")}
    assert all(status < 500 for status in answers.values()), answers
    return answers


@pytest.mark.parametrize("name", sorted(URLS))
def test_each_page_for_the_owner_another_user_and_a_visitor(name, client, owned, user, other_user, staff_user):
    namespace, kwargs = URLS[name]
    kind = kind_of(name, namespace, kwargs)
    assert kind is not None, f"{name} is not known to this test: see test_every_page_of_the_site_is_known_to_this_test"
    if kind == "skipped":
        pytest.skip("listed in SKIPPED")
    url = address(name, namespace, kwargs, owned)

    if kind == "public":
        never_fails(client, url)
        client.force_login(user)
        never_fails(client, url)
        return

    check_anonymous(client, url)

    if kind == "staff":
        for someone in (user, other_user):
            client.force_login(someone)
            answers = never_fails(client, url)
            assert all(refused(status) for status in answers.values()), (name, answers)
        client.force_login(staff_user)
        assert never_fails(client, url)["get"] != 404
        return

    if kind == "object":
        before = state(owned)
        client.force_login(other_user)
        answers = never_fails(client, url)
        assert all(refused(status) for status in answers.values()), (name, answers)
        assert 404 in answers.values() or 403 in answers.values(), (name, answers)
        assert state(owned) == before, "another user's request changed the owner's things"

    client.force_login(user)
    get_status = fetch(client, "get", url)[0]
    # Last, as it may change or delete the owner's things (an empty form, a delete).
    post_status = fetch(client, "post", url)[0]
    assert get_status < 500 and post_status < 500, (name, get_status, post_status)
    assert 404 not in (get_status, post_status) or name in OWNER_MAY_404, (
        f"{name}: the owner gets 404 (GET {get_status}, POST {post_status}), so another user's 404 proves "
        "nothing; fix the fixture or list it in OWNER_MAY_404")


def test_every_file_download_reaches_the_owner_and_no_one_else(client, owned, user, other_user):
    """The files themselves: images, thumbnails, the model, its description, the code, the report, and a
    classification's spreadsheet, sorted zip and pictures."""
    d, r, c = owned["dataset"].pk, owned["run"].pk, owned["classification"].pk
    downloads = [reverse("datasets:image", args=[d, owned["image"].pk]),
                 reverse("datasets:thumbnail", args=[d, owned["image"].pk]),
                 reverse("datasets:report_csv", args=[d, owned["upload"].pk]),
                 reverse("training:model", args=[r]), reverse("training:model_info", args=[r]),
                 reverse("training:code_download", args=[r]), reverse("training:export_download", args=[r, "onnx"]),
                 reverse("predict:classification_csv", args=[c]), reverse("predict:classification_zip", args=[c]),
                 reverse("predict:classification_picture", args=[c, owned["picture"].pk]),
                 reverse("predict:classification_thumbnail", args=[c, owned["picture"].pk])]
    client.force_login(user)
    for url in downloads:
        assert client.get(url).status_code == 200, url
    client.force_login(other_user)
    for url in downloads:
        assert client.get(url).status_code == 404, url


@pytest.mark.parametrize("name", ["training:model", "training:model_info"])
def test_a_model_file_missing_from_disk_is_a_plain_404(name, client, owned, user, settings):
    (settings.MEDIA_ROOT / "models" / "x" / ("model.keras" if name == "training:model" else "model.json")).unlink()
    client.force_login(user)
    response = client.get(reverse(name, args=[owned["run"].pk]))
    assert response.status_code == 404
    assert "The model file of this run is missing" in response.content.decode()


def test_adding_no_loose_images_asks_for_some(client, owned, user):
    client.force_login(user)
    response = client.post(reverse("datasets:add_loose_images", args=[owned["dataset"].pk]))
    assert response.status_code == 200
    assert "Pick at least one image." in response.content.decode()
    assert owned["dataset"].uploads.count() == 1


# ---- Forms and lists

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


# Every query parameter the site's views read (grep request.GET), each given a NUL character,
# which PostgreSQL refuses in text: a page must treat it as any other value it does not know.
QUERY_PARAMETERS = ("after", "held", "page", "class", "split", "status", "token", "run", "from", "preset",
                    "channels", "resize", "image_size", "epochs", "time_budget_s", "model_spec", "augment_flip",
                    "unsure", "sort", "limit", "cursor")


@pytest.mark.parametrize("name", sorted(name for name in URLS if kind_of(name, *URLS[name]) not in (None, "skipped")))
def test_a_nul_character_in_the_address_is_never_a_server_error(name, client, owned, user, staff_user):
    namespace, kwargs = URLS[name]
    url = address(name, namespace, kwargs, owned)
    client.force_login(staff_user if kind_of(name, namespace, kwargs) == "staff" else user)
    for value in ("\x00", "1\x00", "cats\x00dogs"):
        query = "&".join(f"{parameter}={value}" for parameter in QUERY_PARAMETERS).replace("\x00", "%00")
        assert fetch(client, "get", f"{url}?{query}")[0] < 500, (name, value)


# Numbers as people and old links write them: not digits 0-9 (superscript two, Arabic-Indic three,
# an exponent), negative, padded, and far past any row or any int a database column holds.
ODD_NUMBERS = ("²", "٣", "-1", "1e3", " 7", "1.5", "9" * 30, "9" * 5000)


@pytest.fixture
def parameters_read(monkeypatch):
    """Records the name of every query or form parameter that a view looks up."""
    read = set()
    for method in ("get", "getlist", "__getitem__", "__contains__"):
        original = getattr(QueryDict, method)

        def recording(self, key, *args, _original=original, **kwargs):
            read.add(key)
            return _original(self, key, *args, **kwargs)
        monkeypatch.setattr(QueryDict, method, recording)
    return read


@pytest.mark.parametrize("name", sorted(name for name in URLS if kind_of(name, *URLS[name]) not in (None, "skipped")))
def test_an_odd_number_in_any_query_parameter_gets_the_page(name, client, owned, user, staff_user, parameters_read):
    namespace, kwargs = URLS[name]
    url = address(name, namespace, kwargs, owned)
    client.force_login(staff_user if kind_of(name, namespace, kwargs) == "staff" else user)
    # Which parameters the page reads: with none given, and with every known one given.
    fetch(client, "get", url)
    fetch(client, "get", url + "?" + "&".join(f"{parameter}=1" for parameter in QUERY_PARAMETERS))
    for parameter in sorted(parameters_read):
        for value in ODD_NUMBERS:
            status = fetch(client, "get", f"{url}?{urlencode({parameter: value})}")[0]
            assert status < 500, (name, parameter, value, status)


@pytest.mark.parametrize("value", ODD_NUMBERS)
def test_train_again_from_an_odd_run_number_opens_the_form(value, client, owned, user):
    client.force_login(user)
    response = client.get(reverse("training:new", args=[owned["dataset"].pk]) + "?" + urlencode({"from": value}))
    assert response.status_code == 200
    assert response.context["cloned_from"] is None


def test_train_again_from_a_run_fills_the_form_only_for_its_owner(client, owned, user, other_user):
    url = reverse("training:new", args=[owned["dataset"].pk]) + f"?from={owned['run'].pk}"
    client.force_login(user)
    assert client.get(url).context["cloned_from"] == owned["run"]
    other = Dataset.objects.create(owner=other_user, name="Theirs")
    client.force_login(other_user)
    response = client.get(reverse("training:new", args=[other.pk]) + f"?from={owned['run'].pk}")
    assert response.status_code == 200 and response.context["cloned_from"] is None


@pytest.mark.parametrize("value", [number for number in ODD_NUMBERS if number.strip() != "7"] + ["nan", "inf", "95"])
def test_an_odd_split_share_is_refused_with_a_message(value, client, owned, user):
    client.force_login(user)
    response = client.post(reverse("datasets:resplit", args=[owned["dataset"].pk]),
                           {"val_percent": value, "test_percent": "10"}, follow=True)
    assert response.status_code == 200
    assert "whole numbers from 0 to 90" in response.content.decode()
    owned["dataset"].refresh_from_db()
    assert owned["dataset"].val_fraction != 0.95


def test_whole_split_shares_split_again(client, owned, user):
    client.force_login(user)
    response = client.post(reverse("datasets:resplit", args=[owned["dataset"].pk]),
                           {"val_percent": "20", "test_percent": "10"}, follow=True)
    assert "Split again: 70 % training, 20 % validation, 10 % test." in response.content.decode()
    owned["dataset"].refresh_from_db()
    assert (owned["dataset"].val_fraction, owned["dataset"].test_fraction) == (0.2, 0.1)
