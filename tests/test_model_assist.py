"""Model-assisted labelling (predict_app/assist.py): a model's suggestions on the inbox, least sure first,
accepted in bulk through the label history; and the pictures a model was not sure about, kept only with
its owner's consent, sent to an inbox, and removed by the clean-up after their kept days.

The view tests stand a made-up model in for a trained one (FakePredictor: the answers are chosen, so what
is "not sure" is known); one worker test runs the suggestions with a real model on the real worker."""
import os
import time
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from datasets_app.ingestion import ingest_upload
from datasets_app.labelling import relabel
from datasets_app.models import Dataset, LabelChange, Upload
from dlsite import storage
from housekeeping_app.cleanup import run_cleanup
from housekeeping_app.diskuse import measure
from mlcore.familiarity import Judgement
from mlcore.serving import ModelInfo
from predict_app.models import SuggestionJob, UnsurePicture
from predict_app.tasks import suggest_classes
from tests.conftest import ingest_shapes, new_run, wait_for
from tests.images import image_bytes

pytestmark = pytest.mark.django_db

CLASS_NAMES = ["horizontal", "spot", "vertical", "cats"]  # "cats" is no class of the shapes dataset


class FakePredictor:
    """Answers (class index, confidence, doubt) in turn, one per picture it is given."""

    trees = None  # answers from the network (training_app/boosting.py: no boosted trees chosen)

    def __init__(self, answers):
        self.info = ModelInfo(CLASS_NAMES, (16, 16), 1)
        self.answers = list(answers)

    def judge_arrays(self, arrays, batch_size=32):
        taken, self.answers = self.answers[:len(arrays)], self.answers[len(arrays):]
        probabilities = np.full((len(arrays), len(CLASS_NAMES)), 0.0, np.float32)
        judgements = []
        for row, (best, confidence, doubt) in enumerate(taken):
            probabilities[row] = (1 - confidence) / (len(CLASS_NAMES) - 1)
            probabilities[row, best] = confidence
            judgements.append(Judgement(best, confidence, doubt))
        return probabilities, judgements


def fake_model(dataset, **fields):
    """A run that counts as finished with a model; its predictor is the test's FakePredictor."""
    run = new_run(dataset)
    fields = {"status": "succeeded", "model_file": f"models/{run.id}/attempt-1/model.keras",
              "class_names": CLASS_NAMES, "finished_at": timezone.now(), **fields}
    type(run).objects.filter(pk=run.pk).update(**fields)
    run.refresh_from_db()
    return run


def use_predictor(monkeypatch, predictor):
    for module in ("predict_app.views", "predict_app.tasks", "api_app.views"):
        monkeypatch.setattr(f"{module}.predictor_for", lambda run: predictor)


@pytest.fixture
def inbox(alice, user):
    """The shapes dataset with four pictures back in its inbox, in id order."""
    dataset = ingest_shapes(user)
    ids = list(dataset.images.order_by("id").values_list("id", flat=True)[:4])
    relabel(dataset, ids, None, user)
    return dataset, ids


def suggest(alice, monkeypatch, dataset, run, answers):
    answer = alice.post(reverse("predict:suggest", args=[dataset.pk]), {"run": run.pk}, follow=True)
    assert answer.status_code == 200 and "looking at the pictures of the inbox" in answer.content.decode()
    job = SuggestionJob.objects.get(dataset=dataset)
    use_predictor(monkeypatch, FakePredictor(answers))
    suggest_classes(job.id)  # what the worker runs, here in the test's process
    job.refresh_from_db()
    assert job.status == "done", job.error
    return job


# horizontal 90 %, spot 50 %, cats 99 %, vertical 70 %: in id order of the inbox's pictures
ANSWERS = [(0, 0.9, ""), (1, 0.5, "spread"), (3, 0.99, ""), (2, 0.7, "")]


def test_the_inbox_shows_each_suggestion_and_how_sure_least_sure_first(alice, monkeypatch, inbox):
    dataset, ids = inbox
    suggest(alice, monkeypatch, dataset, fake_model(dataset), ANSWERS)
    page = alice.get(reverse("datasets:inbox", args=[dataset.pk]))
    queue = page.context["inbox_data"]["queue"]
    assert [image["id"] for image in queue] == [ids[1], ids[3], ids[0], ids[2]]
    assert [image["model"]["percent"] for image in queue] == [50, 70, 90, 99]
    assert [image["model"]["label"] for image in queue] == ["spot", "vertical", "horizontal", "cats"]
    assert [image["model"]["known"] for image in queue] == [True, True, True, False]
    text = page.content.decode()
    assert "least sure first" in text and "Accept every suggestion at or above" in text
    assert "(cats) are not accepted" in text
    # The page asks for more after the position of the last it holds, in the same order.
    more = alice.get(reverse("datasets:inbox_queue", args=[dataset.pk]), {"after": queue[1]["position"]}).json()
    assert [image["id"] for image in more["images"]] == [ids[0], ids[2]]


def test_accepting_above_a_line_files_each_in_the_history_and_can_be_undone(alice, monkeypatch, inbox, user):
    dataset, ids = inbox
    suggest(alice, monkeypatch, dataset, fake_model(dataset), ANSWERS)
    answer = alice.post(reverse("predict:suggest_accept", args=[dataset.pk]), {"at_least": "70"}, follow=True)
    text = answer.content.decode()
    assert "2 pictures filed under the model" in text and "no such class: “cats” (1)" in text
    labels = dict(dataset.images.filter(id__in=ids).values_list("id", "image_class__name"))
    assert labels == {ids[0]: "horizontal", ids[1]: None, ids[2]: None, ids[3]: "vertical"}
    accepted = LabelChange.objects.filter(dataset=dataset, action="suggestion accepted")
    assert sorted(accepted.values_list("image_id", "to_label")) == sorted([(ids[0], "horizontal"), (ids[3], "vertical")])
    history = alice.get(reverse("datasets:history", args=[dataset.pk])).content.decode()
    assert "a model&#x27;s suggestion accepted" in history.lower()
    # The inbox now holds the two left, still least sure first, and offers to undo.
    page = alice.get(reverse("datasets:inbox", args=[dataset.pk]))
    assert [image["id"] for image in page.context["inbox_data"]["queue"]] == [ids[1], ids[2]]
    assert "Your last accept filed 2 pictures" in page.content.decode()
    undone = alice.post(reverse("predict:suggest_undo", args=[dataset.pk]), follow=True)
    assert "2 pictures back in the inbox" in undone.content.decode()
    assert dataset.images.filter(id__in=ids, image_class__isnull=True).count() == 4
    assert LabelChange.objects.filter(dataset=dataset, action="undone").count() == 2
    again = alice.post(reverse("predict:suggest_undo", args=[dataset.pk]), follow=True)
    assert "nothing to undo" in again.content.decode()


def test_a_suggestion_is_accepted_at_the_percentage_the_inbox_shows_and_not_above(alice, monkeypatch, inbox):
    """Halves round up on the page as in the accept (at least (N - 0.5) %): Python's round() took 62.5 to 62, so a
    picture shown "62 % sure" was filed by "at or above 63 %". Confidences of k/8 are exact in float32 too."""
    dataset, ids = inbox
    suggest(alice, monkeypatch, dataset, fake_model(dataset), [(0, 0.625, ""), (1, 0.375, ""), (2, 0.875, ""),
                                                               (0, 0.125, "")])
    queue = alice.get(reverse("datasets:inbox", args=[dataset.pk])).context["inbox_data"]["queue"]
    shown = {image["id"]: image["model"]["percent"] for image in queue}
    assert shown == {ids[0]: 63, ids[1]: 38, ids[2]: 88, ids[3]: 13}
    accept = reverse("predict:suggest_accept", args=[dataset.pk])
    for image_id, percent in sorted(shown.items(), key=lambda item: -item[1]):
        alice.post(accept, {"at_least": str(percent + 1)})
        assert dataset.images.get(id=image_id).image_class is None, f"filed above the {percent} % shown"
        alice.post(accept, {"at_least": str(percent)})
        assert dataset.images.get(id=image_id).image_class is not None, f"not filed at the {percent} % shown"


def test_bad_choices_get_a_message_never_a_server_error(alice, monkeypatch, inbox, user, other_user):
    dataset, ids = inbox
    suggest_url = reverse("predict:suggest", args=[dataset.pk])
    others = ingest_shapes(other_user, "Theirs")
    for run, words in [(fake_model(others), "Choose one of your trained models"),
                       (new_run(dataset), "has no trained model"), (None, "Choose one of your trained models")]:
        answer = alice.post(suggest_url, {"run": run.pk if run else "x"}, follow=True)
        assert answer.status_code == 200 and words in answer.content.decode()
    assert not SuggestionJob.objects.exists()
    accept = alice.post(reverse("predict:suggest_accept", args=[dataset.pk]), {"at_least": "90"}, follow=True)
    assert "no finished suggestions" in accept.content.decode()
    assert alice.post(reverse("predict:suggest", args=[others.pk]), {"run": 1}).status_code == 404
    assert alice.get(reverse("predict:suggest_progress", args=[dataset.pk])).status_code == 404
    suggest(alice, monkeypatch, dataset, fake_model(dataset), ANSWERS)
    for line in ("", "abc", "101", "-5"):
        answer = alice.post(reverse("predict:suggest_accept", args=[dataset.pk]), {"at_least": line}, follow=True)
        assert answer.status_code == 200 and "whole percentage from 0 to 100" in answer.content.decode()
    relabel(dataset, ids, dataset.classes.first(), user)
    empty = alice.post(suggest_url, {"run": fake_model(dataset).pk}, follow=True)
    assert "The inbox is empty" in empty.content.decode()


def classify_on_page(alice, run):
    files = [SimpleUploadedFile("unsure.png", image_bytes("spot", 16), "image/png"),
             SimpleUploadedFile("sure.png", image_bytes("horizontal", 16), "image/png")]
    return alice.post(reverse("predict:index"), {"run": run.pk, "images": files})


def test_nothing_is_kept_without_the_owners_consent(alice, monkeypatch, shapes, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"  # a folder of its own, to see that no file was kept
    run = fake_model(shapes)
    use_predictor(monkeypatch, FakePredictor([(1, 0.4, "spread"), (0, 0.95, "")]))
    assert classify_on_page(alice, run).status_code == 200
    assert not UnsurePicture.objects.exists() and not list(storage.listing("unsure"))
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert "Keep pictures this model was not sure about, for 30 days, so you can label them" in page
    assert 'name="keep" value="on" checked' not in page


def test_with_consent_the_unsure_pictures_of_the_page_and_the_api_are_kept(alice, client, monkeypatch, shapes, user):
    from api_app.models import ApiToken

    run = fake_model(shapes)
    answer = alice.post(reverse("predict:unsure_setting", args=[run.pk]), {"keep": "on"}, follow=True)
    assert "kept for 30 days" in answer.content.decode()
    run.refresh_from_db()
    assert run.keep_unsure
    use_predictor(monkeypatch, FakePredictor([(1, 0.4, "spread"), (0, 0.95, "")]))
    assert classify_on_page(alice, run).status_code == 200
    key = ApiToken.objects.create_for(user, "tests")[1]
    use_predictor(monkeypatch, FakePredictor([(2, 0.8, "far")]))
    api = client.post(reverse("api:classify", args=[run.pk]),
                      {"images": [SimpleUploadedFile("from-api.png", image_bytes("vertical", 16))]},
                      HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api.status_code == 200 and api.json()["results"][0]["not_sure"] is True
    kept = {picture.name: picture for picture in UnsurePicture.objects.filter(run=run)}
    assert set(kept) == {"unsure.png", "from-api.png"}
    assert (kept["unsure.png"].label, kept["unsure.png"].via, kept["unsure.png"].doubt) == ("spot", "page", "spread")
    assert kept["from-api.png"].via == "api" and kept["from-api.png"].reason.startswith("Not sure")
    assert storage.read_bytes(kept["unsure.png"].file.name) == image_bytes("spot", 16)
    listing = alice.get(reverse("predict:unsure", args=[run.pk])).content.decode()
    assert "unsure.png" in listing and "from-api.png" in listing and "the API" in listing
    picture = alice.get(reverse("predict:unsure_picture", args=[run.pk, kept["unsure.png"].pk]))
    assert b"".join(picture.streaming_content) == image_bytes("spot", 16)
    # Turned off again: nothing new is kept.
    alice.post(reverse("predict:unsure_setting", args=[run.pk]), {})
    use_predictor(monkeypatch, FakePredictor([(1, 0.4, "spread"), (0, 0.95, "")]))
    classify_on_page(alice, run)
    assert UnsurePicture.objects.filter(run=run).count() == 2


def test_kept_pictures_go_to_a_chosen_inbox_each_or_all(alice, monkeypatch, shapes, other_user):
    run = fake_model(shapes, keep_unsure=True)
    use_predictor(monkeypatch, FakePredictor([(1, 0.4, "spread"), (0, 0.95, "")] * 2))
    classify_on_page(alice, run)
    classify_on_page(alice, run)
    first, second = UnsurePicture.objects.filter(run=run).order_by("id")
    send = reverse("predict:unsure_send", args=[run.pk])
    theirs = ingest_shapes(other_user, "Theirs")
    refused = alice.post(send, {"picture": first.pk, "dataset": theirs.pk}, follow=True)
    assert "Choose one of your datasets" in refused.content.decode()
    target = Dataset.objects.create(owner=shapes.owner, name="New pictures")
    answer = alice.post(send, {"picture": first.pk, "dataset": target.pk}, follow=True)
    assert "1 picture are being added to the inbox of “New pictures”" in answer.content.decode()
    assert list(UnsurePicture.objects.filter(run=run)) == [second]
    upload = Upload.objects.get(dataset=target)
    ingest_upload(Upload.objects.claim(upload.id))
    added = target.images.get()
    assert added.image_class is None and added.suggested_label == "spot"
    alice.post(send, {"all": "1", "dataset": target.pk})
    assert not UnsurePicture.objects.filter(run=run).exists() and Upload.objects.filter(dataset=target).count() == 2
    gone = alice.post(send, {"picture": first.pk, "dataset": target.pk}, follow=True)
    assert "no such picture any more" in gone.content.decode()
    assert alice.get(reverse("predict:unsure", args=[fake_model(theirs).pk])).status_code == 404


def test_the_clean_up_removes_unsure_pictures_after_their_kept_days(settings, tmp_path, shapes):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.UNSURE_KEEP_DAYS = 30
    run = fake_model(shapes)

    def kept(name, days_ago):
        stored = storage.save_bytes(f"unsure/{run.id}/{name}.png", image_bytes("spot", 16))
        return UnsurePicture.objects.create(run=run, name=name, file=stored, label="spot", confidence=0.4,
                                            doubt="spread", reason="Not sure", created_at=timezone.now() - timedelta(days=days_ago))

    old, recent = kept("old", 31), kept("recent", 29)
    stray = storage.save_bytes(f"unsure/{run.id + 1000}/stray.png", b"x")  # its row went with a deleted run
    past = time.time() - 3 * 24 * 3600
    os.utime(storage.local_path(stray), (past, past))
    dry = run_cleanup(dry_run=True)
    assert sorted(item.name for item in dry.removed if item.kind == "unsure") == sorted([old.file.name, stray])
    assert storage.exists(old.file.name) and UnsurePicture.objects.filter(pk=old.pk).exists()
    result = run_cleanup()
    assert result.figures()["unsure"]["count"] == 2
    assert list(UnsurePicture.objects.filter(run=run)) == [recent]
    assert not storage.exists(old.file.name) and not storage.exists(stray) and storage.exists(recent.file.name)
    used = measure()  # the staff page "Disk use" counts them as the model owner's
    assert used["kinds"]["unsure"] == len(image_bytes("spot", 16))
    assert used["users"][0]["classified"] == len(image_bytes("spot", 16))


@pytest.mark.django_db(transaction=True)
def test_the_worker_suggests_a_class_for_every_inbox_picture(celery_workers, shapes_model, client):
    run = shapes_model
    dataset = run.dataset
    ids = list(dataset.images.order_by("id").values_list("id", flat=True)[:6])
    relabel(dataset, ids, None, run.owner)
    client.force_login(run.owner)
    client.post(reverse("predict:suggest", args=[dataset.pk]), {"run": run.pk})
    job = wait_for(lambda: SuggestionJob.objects.filter(dataset=dataset, status__in=["done", "failed"]).first(),
                   timeout=180, interval=0.5, what="the suggestions")
    assert job.status == "done", job.error
    assert (job.done, job.total) == (6, 6)
    confidences = list(job.suggestions.order_by("rank").values_list("confidence", flat=True))
    assert len(confidences) == 6 and confidences == sorted(confidences)
    assert set(job.suggestions.values_list("label", flat=True)) <= set(run.class_names)
