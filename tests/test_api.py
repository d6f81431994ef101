"""The API for programs: tokens (made, shown once, stored hashed, revoked), the same ownership rules as
the pages, JSON errors in plain words, throttling per token, classifying pictures (multipart and base64),
classifications, datasets and runs; and, last, a program driving it with `requests` against the running
server."""
import base64
import io
import json
import re
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from api_app.auth import TokenRateThrottle
from api_app.models import ApiToken, digest
from datasets_app.ingestion import ingest_upload
from datasets_app.models import Dataset, Upload
from predict_app.models import Classification
from predict_app.tasks import classify_many
from tests.conftest import new_run
from tests.images import CLASSES, image_bytes, labelled_zip, make_zip
from training_app.models import TrainingRun
from training_app.tasks import make_export, train


@pytest.fixture
def model(shapes_model):
    return shapes_model


@pytest.fixture
def key(user):
    return ApiToken.objects.create_for(user, "tests")[1]


def bearer(key):
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def test_a_token_is_shown_once_and_only_its_hash_is_kept(alice, user):
    page = alice.post(reverse("api:tokens"), {"name": "shop till"})
    key = page.context["new_key"]
    assert key.startswith("icl_") and key in page.content.decode()
    token = ApiToken.objects.get(owner=user)
    assert token.key_hash == digest(key) and key not in (token.shown, token.key_hash, token.name)
    assert key not in alice.get(reverse("api:tokens")).content.decode()  # never shown again
    assert token.shown in alice.get(reverse("api:tokens")).content.decode()


def test_without_a_token_or_with_a_wrong_or_revoked_one_programs_are_refused(client, user, key):
    url = reverse("api:models")
    assert client.get(url).status_code == 401
    wrong = client.get(url, **bearer("icl_not-a-token"))
    assert wrong.status_code == 401 and wrong.json() == {"message": "This token is not one this site made."}
    assert client.get(url, **bearer(key)).status_code == 200
    assert ApiToken.objects.get().last_used_at is not None
    ApiToken.objects.get().revoke()
    revoked = client.get(url, **bearer(key))
    assert revoked.status_code == 401 and "revoked" in revoked.json()["message"]


def test_only_the_owner_reaches_a_model(client, model, key, other_user):
    mine = client.get(reverse("api:models"), **bearer(key)).json()["models"]
    assert [m["id"] for m in mine] == [model.id] and mine[0]["classes"] == sorted(CLASSES)
    theirs = ApiToken.objects.create_for(other_user, "theirs")[1]
    assert client.get(reverse("api:models"), **bearer(theirs)).json() == {"models": [], "next": None, "previous": None}
    refused = client.get(reverse("api:model", args=[model.id]), **bearer(theirs))
    assert refused.status_code == 404 and "message" in refused.json()
    download = client.get(reverse("api:model_download", args=[model.id]), **bearer(key))
    assert download.status_code == 200 and b"".join(download.streaming_content)[:2] == b"PK"


@pytest.mark.parametrize("accept", ["text/csv", "BqNuu]g", "application/xml;q=1", ""])
def test_an_accept_header_that_does_not_name_json_still_gets_the_json_answer(client, model, key, accept):
    """Not "406 Not Acceptable" (which no schema lists; Schemathesis found it with a generated header)."""
    answer = client.get(reverse("api:models"), HTTP_ACCEPT=accept, **bearer(key))
    assert answer.status_code == 200 and answer["Content-Type"] == "application/json"
    assert [m["id"] for m in answer.json()["models"]] == [model.id]


def test_pictures_are_classified_from_multipart_and_from_base64(client, model, key):
    url = reverse("api:classify", args=[model.id])
    files = [SimpleUploadedFile("a.png", image_bytes("spot", 16)), SimpleUploadedFile("b.png", b"no picture")]
    answer = client.post(url, {"images": files}, **bearer(key)).json()
    good, bad = answer["results"]
    assert good["class"] in CLASSES and set(good["probabilities"]) == set(CLASSES)
    assert good["confidence"] == pytest.approx(max(good["probabilities"].values()), abs=1e-5)
    assert isinstance(good["not_sure"], bool) and bad == {"name": "b.png", "error": bad["error"]}
    assert good["doubt"] in ("far", "spread", "unlike", None) and (good["doubt"] is None) == (not good["not_sure"])
    as_json = client.post(url, {"images": [{"name": "a.png", "data": base64.b64encode(image_bytes("spot", 16)).decode()}]},
                          content_type="application/json", **bearer(key)).json()
    assert as_json["results"][0]["probabilities"] == pytest.approx(good["probabilities"], abs=1e-5)
    for body, words in [({"images": "x"}, "base64"), ({"images": [{"data": "***"}]}, "not base64"),
                        ({"images": []}, "at least one picture")]:
        refused = client.post(url, body, content_type="application/json", **bearer(key))
        assert refused.status_code == 400 and words in refused.json()["message"]


def test_one_picture_reads_the_run_in_one_query(client, model, key):
    """The run's columns the model's cache needs are read with it: each one deferred cost a query of
    its own on every request."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = reverse("api:classify", args=[model.id])
    client.post(url, {"images": [SimpleUploadedFile("a.png", image_bytes("spot", 16))]}, **bearer(key))  # loads it
    with CaptureQueriesContext(connection) as queries:
        answer = client.post(url, {"images": [SimpleUploadedFile("a.png", image_bytes("spot", 16))]}, **bearer(key))
    assert answer.status_code == 200
    assert len([q for q in queries if "training_app_trainingrun" in q["sql"]]) == 1, [q["sql"] for q in queries]


def test_many_pictures_in_a_zip_become_a_classification(client, model, key):
    archive = make_zip({f"{i}.png": image_bytes(CLASSES[i % 3], 16, seed=i) for i in range(5)})
    started = client.post(reverse("api:classification_start", args=[model.id]),
                          {"file": SimpleUploadedFile("p.zip", archive)}, **bearer(key))
    assert started.status_code == 201 and started.json()["status"] == "queued"
    job_id = started.json()["id"]
    classify_many(job_id)
    state = client.get(reverse("api:classification", args=[job_id]), **bearer(key)).json()
    assert (state["status"], state["done"], state["total"]) == ("done", 5, 5)
    first = client.get(reverse("api:classification_results", args=[job_id]) + "?limit=3", **bearer(key)).json()
    second = client.get(first["next"], **bearer(key)).json()
    pictures = first["pictures"] + second["pictures"]
    assert second["next"] is None and sorted(p["name"] for p in pictures) == [f"{i}.png" for i in range(5)]
    assert all(p["class"] in CLASSES and set(p["probabilities"]) == set(CLASSES) for p in pictures)
    # Why not sure, in words and for programs: the model's doubt, else the classification's threshold.
    assert all((p["doubt"] is None) == (not p["not_sure"]) and bool(p["why_not_sure"]) == p["not_sure"]
               for p in pictures)
    assert all(p["doubt"] == "threshold" for p in pictures if p["not_sure"] and p["confidence"] < 0.6
               and p["why_not_sure"] == "less sure than the threshold")
    refused = client.post(reverse("api:classification_start", args=[model.id]),
                          {"file": SimpleUploadedFile("p.zip", b"not a zip")}, **bearer(key))
    assert refused.status_code == 400 and "not a zip archive" in refused.json()["message"]
    assert Classification.objects.count() == 1


def test_a_program_asks_for_an_export_and_downloads_it_once_checked(client, model, key):
    url = reverse("api:exports", args=[model.pk])
    listed = {row["format"]: row for row in client.get(url, **bearer(key)).json()["exports"]}
    assert listed["onnx"]["status"] == "not made" and listed["onnx"]["download"] is None
    assert set(listed) == {"keras", "h5", "saved_model", "tflite", "tflite_int8", "onnx", "flask"}

    asked = client.post(reverse("api:export_make", args=[model.pk, "onnx"]), **bearer(key))
    assert asked.status_code == 202 and asked.json()["status"] == "queued"
    missing = client.get(reverse("api:export_download", args=[model.pk, "onnx"]), **bearer(key))
    assert missing.status_code == 404 and "not been made yet" in missing.json()["message"]
    make_export(model.exports.get(kind="onnx").id)  # what the default worker does with the message

    made = {row["format"]: row for row in client.get(url, **bearer(key)).json()["exports"]}["onnx"]
    assert made["status"] == "ready" and made["max_difference"] < 1e-4 and made["checked_pictures"] > 0
    download = client.get(made["download"], **bearer(key))
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))) as contents:
        assert json.loads(contents.read("about.json"))["class_names"] == model.class_names
    unknown = client.post(reverse("api:export_make", args=[model.pk, "exe"]), **bearer(key))
    assert unknown.status_code == 404 and "the formats are: keras" in unknown.json()["message"]


def test_a_dataset_from_a_zip_then_a_run_with_chosen_settings(client, user, key):
    made = client.post(reverse("api:datasets"), {"file": SimpleUploadedFile("shapes.zip", labelled_zip(per_class=10)),
                                                 "name": "From a program"}, **bearer(key))
    assert made.status_code == 201 and made.json()["name"] == "From a program"
    dataset = Dataset.objects.get(pk=made.json()["id"])
    ingest_upload(Upload.objects.claim(dataset.uploads.get().id))
    state = client.get(reverse("api:dataset", args=[dataset.id]), **bearer(key)).json()
    assert state["images"] == 30 and state["last_upload"]["status"] == "done"

    refused = client.post(reverse("api:run_start", args=[dataset.id]), {"epochs": 0}, content_type="application/json",
                          **bearer(key))
    assert refused.status_code == 400 and "epochs" in refused.json()["message"]
    started = client.post(reverse("api:run_start", args=[dataset.id]),
                          {"preset": "dense", "epochs": 2, "optimizer": "sgd", "augment_flip": "horizontal",
                           "use_all_gpus": False}, content_type="application/json", **bearer(key))
    assert started.status_code == 201, started.json()
    run = TrainingRun.objects.get(pk=started.json()["id"])
    assert (run.preset, run.epochs, run.optimizer, run.augmentation["flip"]) == ("dense", 2, "sgd", "horizontal")
    train(run.id)
    state = client.get(reverse("api:run", args=[run.id]), **bearer(key)).json()
    assert state["status"] == "succeeded" and len(state["metrics"]) == 2 and state["settings"]["optimizer"] == "sgd"


def test_each_token_is_throttled(client, user, key, settings, monkeypatch):
    from django.core.cache import caches

    cache = caches["shared"]
    cache.clear()
    settings.API_RATE = "3/min"
    monkeypatch.setattr(TokenRateThrottle, "timer", lambda self: 120.5)  # inside one minute's window
    answers = [client.get(reverse("api:models"), **bearer(key)).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    # Counted where every web process counts (files under DATA_DIR, or Redis), not one process's memory.
    assert cache.get(f"throttle_token_token-{ApiToken.objects.get().pk}-2") == 4 and "LocMem" not in type(cache).__name__
    throttled = client.get(reverse("api:models"), **bearer(key))
    assert throttled["Retry-After"] == "60"  # the window ends in 59.5 s
    assert "throttled" in throttled.json()["message"].lower()
    other = ApiToken.objects.create_for(user, "another program")[1]
    assert client.get(reverse("api:models"), **bearer(other)).status_code == 200  # a token of its own
    cache.clear()


def test_the_schema_and_the_docs_page_come_from_this_site(alice):
    schema = alice.get(reverse("api:schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert schema["openapi"].startswith("3.") and "/api/v1/models/{run_pk}/classify/" in schema["paths"]
    assert schema["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    page = alice.get(reverse("api:docs")).content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist" in page and "cdn" not in page.lower()


@pytest.mark.django_db(transaction=True)
def test_a_program_uses_the_api_with_requests_against_the_running_server(live_server, shapes, user):
    import requests

    run = new_run(shapes, epochs=2)
    train(run.id)
    key = ApiToken.objects.create_for(user, "a program")[1]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    base = f"{live_server.url}/api/v1"
    models = session.get(f"{base}/models/", timeout=30).json()["models"]
    assert [m["id"] for m in models] == [run.id]
    answer = session.post(f"{base}/models/{run.id}/classify/", timeout=60,
                          files=[("images", ("a.png", image_bytes("spot", 16), "image/png")),
                                 ("images", ("b.png", image_bytes("vertical", 16, seed=3), "image/png"))])
    assert answer.status_code == 200 and [r["class"] in CLASSES for r in answer.json()["results"]] == [True, True]
    as_json = session.post(f"{base}/models/{run.id}/classify/", timeout=60, json={
        "images": [{"name": "a.png", "data": base64.b64encode(image_bytes("spot", 16)).decode()}]})
    assert as_json.json()["results"][0]["name"] == "a.png"
    model_file = session.get(f"{base}/models/{run.id}/download/", timeout=60)
    assert model_file.status_code == 200 and zipfile.is_zipfile(io.BytesIO(model_file.content))
    missing = session.get(f"{base}/models/999999/", timeout=30)
    assert missing.status_code == 404 and missing.json()["message"]


@pytest.mark.parametrize("depth", [40, 1_000, 100_000])
def test_json_nested_too_deeply_is_a_400_with_a_message(client, model, key, depth):
    """About a thousand `[` made DRF's JSON parser raise RecursionError: a 500 on every operation reading JSON."""
    nested = "[" * depth + "]" * depth
    for url in (reverse("api:classify", args=[model.id]), reverse("api:run_start", args=[model.dataset_id])):
        for body in (nested, '{"images": ' + nested + "}"):
            refused = client.post(url, body, content_type="application/json", **bearer(key))
            assert refused.status_code == 400, url
            assert "nested more than 32 levels deep" in refused.json()["message"]


def test_a_json_body_over_the_limit_is_refused_before_it_is_read(client, model, key, settings):
    settings.API_MAX_JSON_BYTES = 1000
    picture = base64.b64encode(image_bytes("spot", 16)).decode()
    body = json.dumps({"images": [{"name": "a.png", "data": picture}] * 10})
    assert len(body) > 1000
    refused = client.post(reverse("api:classify", args=[model.id]), body, content_type="application/json", **bearer(key))
    assert refused.status_code == 413 and "at most 1,000 bytes" in refused.json()["message"]
    settings.API_MAX_JSON_BYTES = len(body)
    accepted = client.post(reverse("api:classify", args=[model.id]), body, content_type="application/json", **bearer(key))
    assert accepted.status_code == 200 and len(accepted.json()["results"]) == 10


@pytest.mark.parametrize("path", ["models/abc/", "models/-1/", "models/1.5/exports/", "datasets/%C2%B2/",
                                  "classifications/-3/results/", "no-such-thing/"])
def test_an_address_that_is_not_the_apis_answers_json(client, key, path):
    """A non-integer or negative id matched no route: Django's HTML 404."""
    answer = client.get(f"/api/v1/{path}", **bearer(key))
    assert answer.status_code == 404 and answer["Content-Type"] == "application/json"
    assert "nothing at this address" in answer.json()["message"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_clients_get_no_more_than_the_limit_through(live_server, user, settings, monkeypatch):
    """Counting with a read and then a write let about 20 % more through when clients asked at once."""
    from concurrent.futures import ThreadPoolExecutor

    import requests
    from django.core.cache import caches

    caches["shared"].clear()
    settings.API_RATE = "60/min"
    monkeypatch.setattr(TokenRateThrottle, "timer", lambda self: 600.5)  # all inside one minute's window
    key = ApiToken.objects.create_for(user, "busy program")[1]
    url = f"{live_server.url}{reverse('api:token_list')}"

    def client(_):
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {key}"
            return [session.get(url, timeout=30).status_code for _ in range(25)]

    with ThreadPoolExecutor(8) as pool:
        answers = [status for statuses in pool.map(client, range(8)) for status in statuses]
    assert answers.count(200) == 60 and answers.count(429) == 8 * 25 - 60
    caches["shared"].clear()


def test_the_api_page_gives_a_copyable_example_for_each_common_task(alice, model):
    page = alice.get(reverse("api:tokens")).content.decode()
    for task, address in [("List your models", reverse("api:models")),
                          ("Classify one picture", reverse("api:classify", args=[model.id])),
                          ("Classify a zip", reverse("api:classification_start", args=[model.id])),
                          ("Start a training run", reverse("api:run_start", args=[model.dataset_id])),
                          ("download it", reverse("api:export_download", args=[model.id, "onnx"]))]:
        assert task in page and address in page
    assert page.count('<pre class="command">') == 5 and "js/api_tokens.js" in page  # its Copy buttons


def test_the_api_pages_have_no_inline_script_or_style(client):
    """The site's Content-Security-Policy allows scripts and styles from its own files only."""
    from pathlib import Path

    templates = [path.read_text() for path in (Path(__file__).parent.parent / "api_app" / "templates").rglob("*.html")]
    docs = client.get(reverse("api:docs")).content.decode()  # public, as the schema
    for text in [*templates, docs]:
        assert "<style" not in text and "style=" not in text, text
        assert re.search(r"<script(?![^>]*\bsrc=)", text) is None, text
        assert re.search(r"\son[a-z]+=", text) is None, text  # onclick=, onsubmit=, ...
