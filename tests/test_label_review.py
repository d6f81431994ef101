"""Likely wrong labels, the site's side (training_app/label_review.py, review_views.py): starting a search,
the review page walking the suspects, each decision recorded in the label history, owner-only, no 500 on
bad input; and the job itself run in this process on a tiny dataset with the pretrained network."""
from unittest import mock

import pytest
from django.urls import reverse

from training_app.label_review import KEEP_ACTION, MOVE_ACTION, REMOVE_ACTION
from datasets_app.models import LabelChange
from training_app.models import LabelReview, LabelSuspect
from tests.test_labelling import ingest, pets_files


@pytest.fixture
def pets(user):
    return ingest(user, pets_files(conflicts=0))


def done_review(dataset, count=3):
    """A finished search whose suspects are the first `count` cats, each said to be a dog."""
    review = LabelReview.objects.create(dataset=dataset, status=LabelReview.Status.DONE, pictures=6,
                                        features_from="the pretrained EfficientNet-Lite0 (no run chosen)")
    cats = dataset.images.filter(image_class__name="cats").order_by("id")[:count]
    for rank, image in enumerate(cats):
        LabelSuspect.objects.create(review=review, image=image, image_name=image.original_name, rank=rank,
                                    given_label="cats", suggested_label="dogs", score=0.1 * rank,
                                    reason="Pictures that look like this one are mostly labelled “dogs”.")
    return review


def page(dataset, review):
    return reverse("training:label_review", args=[dataset.pk, review.pk])


def decide_url(dataset, review, suspect):
    return reverse("training:label_review_decide", args=[dataset.pk, review.pk, suspect.pk])


def test_starting_queues_a_job_for_the_default_worker_and_shows_its_progress(alice, pets):
    with mock.patch.object(LabelReview, "send") as send:
        response = alice.post(reverse("training:label_review_start", args=[pets.pk]), {"run": ""})
    review = LabelReview.objects.get(dataset=pets)
    assert response.status_code == 302 and response["Location"] == page(pets, review)
    assert review.status == LabelReview.Status.QUEUED and review.run is None
    assert LabelReview.TASK.startswith("jobs.")  # routed to the default worker
    shown = alice.get(page(pets, review)).content.decode()
    assert "Waiting for a worker" in shown and 'http-equiv="refresh"' in shown
    # A second press while it waits goes to the same search.
    response = alice.post(reverse("training:label_review_start", args=[pets.pk]), {"run": ""})
    assert response["Location"] == page(pets, review) and LabelReview.objects.count() == 1
    assert send.call_count <= 1


@pytest.mark.parametrize("run", ["abc", "999999", "-1", "²", "1" * 400])
def test_a_run_that_is_not_this_datasets_is_refused_in_words(alice, pets, run):
    response = alice.post(reverse("training:label_review_start", args=[pets.pk]), {"run": run}, follow=True)
    assert response.status_code == 200
    assert "not a finished run of this dataset" in response.content.decode()
    assert not LabelReview.objects.exists()


def test_the_dataset_page_has_the_button(alice, pets):
    shown = alice.get(reverse("datasets:detail", args=[pets.pk])).content.decode()
    assert "Find likely wrong labels" in shown and reverse("training:label_review_start", args=[pets.pk]) in shown


def test_the_review_walks_the_suspects_one_at_a_time_with_keys(alice, pets):
    review = done_review(pets)
    first, second, third = review.suspects.order_by("rank")
    shown = alice.get(page(pets, review)).content.decode()
    assert f'data-suspect="{first.pk}"' in shown
    assert "Picture 1 of the 3" in shown and "“dogs”" in shown and first.reason in shown
    for key in ('data-key="k"', 'data-key="m"', 'data-key="x"', 'data-key="arrowright"'):
        assert key in shown
    assert "js/label_review.js" in shown
    shown = alice.get(page(pets, review) + f"?suspect={second.pk}").content.decode()
    assert f'data-suspect="{second.pk}"' in shown and f"?suspect={first.pk}" in shown and f"?suspect={third.pk}" in shown
    # A suspect that is not an open one of this review: the first open one, not an error.
    for junk in ("abc", "99999", "-3", "²", "9" * 400):
        assert f'data-suspect="{first.pk}"' in alice.get(page(pets, review) + f"?suspect={junk}").content.decode()


def test_each_decision_goes_through_the_label_history_and_is_not_shown_again(alice, pets, user):
    review = done_review(pets)
    first, second, third = review.suspects.order_by("rank")
    image = first.image

    response = alice.post(decide_url(pets, review, first), {"decision": "keep"})
    assert response["Location"] == page(pets, review) + f"?suspect={second.pk}"
    first.refresh_from_db()
    assert first.decision == "kept" and first.decided_by == user
    assert LabelChange.objects.filter(image=image, action=KEEP_ACTION, from_label="cats", to_label="cats").exists()
    image.refresh_from_db()
    assert image.label == "cats"

    alice.post(decide_url(pets, review, second), {"decision": "move"})
    second.refresh_from_db()
    second.image.refresh_from_db()
    assert second.decision == "moved" and second.image.label == "dogs"
    assert LabelChange.objects.filter(image=second.image, action=MOVE_ACTION, to_label="dogs").exists()

    removed_id = third.image_id
    alice.post(decide_url(pets, review, third), {"decision": "remove"})
    third.refresh_from_db()
    assert third.decision == "removed" and not pets.images.filter(id=removed_id).exists()
    assert LabelChange.objects.filter(action=REMOVE_ACTION, image_name=third.image_name).exists()

    shown = alice.get(page(pets, review)).content.decode()
    assert "Nothing left to decide on" in shown and "label kept" in shown
    # Deciding twice changes nothing more.
    response = alice.post(decide_url(pets, review, second), {"decision": "remove"}, follow=True)
    assert "decided on already" in response.content.decode()
    assert pets.images.filter(id=second.image_id).exists()


def test_the_last_decision_can_be_undone_once_with_key_z(alice, pets, user):
    review = done_review(pets)
    first, second, third = review.suspects.order_by("rank")
    undo_url = reverse("training:label_review_undo", args=[pets.pk, review.pk])

    alice.post(decide_url(pets, review, first), {"decision": "move"})
    shown = alice.get(page(pets, review)).content.decode()
    assert 'id="label-review-undo"' in shown and 'data-key="z"' in shown and "moved from “cats” to “dogs”" in shown
    response = alice.post(undo_url)
    assert response["Location"] == page(pets, review) + f"?suspect={first.pk}"
    first.refresh_from_db()
    assert first.decision == "" and first.decided_by is None and first.image.label == "cats"
    assert LabelChange.objects.filter(image=first.image, action="undone", to_label="cats").exists()
    shown = alice.get(page(pets, review)).content.decode()
    assert f'data-suspect="{first.pk}"' in shown and 'id="label-review-undo"' not in shown
    assert "no decision of this search to undo" in alice.post(undo_url, follow=True).content.decode()  # once only

    # A removed picture comes back with its id, and its suspect is open again.
    removed_id = third.image_id
    alice.post(decide_url(pets, review, third), {"decision": "remove"})
    assert not pets.images.filter(id=removed_id).exists()
    alice.post(undo_url)
    third.refresh_from_db()
    assert pets.images.filter(id=removed_id).exists() and third.image_id == removed_id and third.decision == ""

    # Keeping, undone: the picture may be suspected again with that label.
    alice.post(decide_url(pets, review, second), {"decision": "keep"})
    alice.post(undo_url)
    assert not LabelSuspect.objects.filter(review__dataset=pets, decision="kept").exists()
    assert review.open_suspects().count() == 3


def test_moving_a_picture_already_in_the_suggested_class_says_so(alice, pets, user):
    """Filed under "dogs" elsewhere (the gallery) after the search: M changes nothing and says so, rather
    than "moved from “dogs” to “dogs”" with no line in the label history."""
    from datasets_app.labelling import relabel

    review = done_review(pets, count=1)
    suspect = review.suspects.get()
    relabel(pets, [suspect.image_id], pets.classes.get(name="dogs"), user)
    response = alice.post(decide_url(pets, review, suspect), {"decision": "move"}, follow=True)
    text = response.content.decode()
    assert "is in “dogs” already" in text and "to “dogs”" not in text
    suspect.refresh_from_db()
    assert suspect.decision == "moved"
    assert not LabelChange.objects.filter(image_id=suspect.image_id, action=MOVE_ACTION).exists()


def test_a_kept_picture_is_not_suspected_again_with_the_same_label(pets, user):
    from training_app.label_review import decide

    review = done_review(pets, count=1)
    suspect = review.suspects.get()
    decide(suspect, "keep", user)
    kept = set(LabelSuspect.objects.filter(review__dataset=pets, decision="kept").values_list("image_id", "given_label"))
    assert kept == {(suspect.image_id, "cats")}


@pytest.mark.parametrize("decision", ["", "delete", "KEEP", "move\x00"])
def test_bad_decisions_are_refused_in_words(alice, pets, decision):
    review = done_review(pets, count=1)
    suspect = review.suspects.get()
    response = alice.post(decide_url(pets, review, suspect), {"decision": decision}, follow=True)
    assert response.status_code == 200 and "Choose keep, move or remove" in response.content.decode()
    suspect.refresh_from_db()
    assert suspect.decision == ""


def test_a_suggested_class_that_is_gone_is_said_in_words(alice, pets):
    review = done_review(pets, count=1)
    suspect = review.suspects.get()
    pets.classes.filter(name="dogs").update(name="puppies")
    response = alice.post(decide_url(pets, review, suspect), {"decision": "move"}, follow=True)
    assert "is gone" in response.content.decode()
    suspect.refresh_from_db()
    assert suspect.decision == ""


def test_only_the_owner_sees_or_decides(client, other_user, pets):
    review = done_review(pets, count=1)
    suspect = review.suspects.get()
    client.force_login(other_user)
    assert client.get(page(pets, review)).status_code == 404
    assert client.post(decide_url(pets, review, suspect), {"decision": "remove"}).status_code == 404
    assert client.post(reverse("training:label_review_start", args=[pets.pk])).status_code == 404
    assert pets.images.filter(id=suspect.image_id).exists()
    client.logout()
    assert client.get(page(pets, review)).status_code == 302  # to the sign-in page


def test_a_failed_search_shows_its_reason(alice, pets):
    review = LabelReview.objects.create(dataset=pets, status=LabelReview.Status.FAILED,
                                        error="Looking for wrong labels needs at least two classes")
    assert "needs at least two classes" in alice.get(page(pets, review)).content.decode()


def test_the_job_ranks_a_tiny_dataset_with_the_pretrained_network(pets):
    """The task in this process: the claim, the pretrained EfficientNet-Lite0's features, the stored suspects."""
    from training_app.tasks import find_label_issues

    review = LabelReview.objects.create(dataset=pets)
    find_label_issues(review.id)
    review.refresh_from_db()
    assert review.status == LabelReview.Status.DONE, review.error
    assert review.pictures == 6 and review.total == 6 and review.done == 6
    for suspect in review.suspects.all():
        assert suspect.given_label in ("cats", "dogs") and suspect.suggested_label != suspect.given_label
        assert suspect.image.label == suspect.given_label and suspect.reason


def test_the_job_says_in_words_when_there_is_too_little_to_compare(user):
    from training_app.tasks import find_label_issues

    dataset = ingest(user, {k: v for k, v in pets_files(conflicts=0).items() if not k.startswith("dogs/")})
    review = LabelReview.objects.create(dataset=dataset)
    find_label_issues(review.id)
    review.refresh_from_db()
    assert review.status == LabelReview.Status.FAILED and "at least two classes" in review.error


@pytest.mark.django_db(transaction=True)
def test_the_default_worker_finds_a_picture_labelled_wrong_on_purpose(celery_workers, shapes_model, client):
    """The whole way, as a person goes: the dataset page's button (with the run's network, which it offers
    first), the real default worker, the review page showing the one picture mislabelled on purpose, with
    the class it belongs to suggested."""
    from datasets_app.labelling import relabel
    from tests.conftest import wait_for

    run = shapes_model
    dataset = run.dataset
    spot = dataset.images.filter(image_class__name="spot").order_by("id").first()
    relabel(dataset, [spot.id], dataset.classes.get(name="horizontal"), run.owner)  # a spot filed as stripes
    client.force_login(run.owner)

    shown = client.get(reverse("datasets:detail", args=[dataset.pk])).content.decode()
    assert f'<option value="{run.pk}" selected>the network of run {run.pk}' in shown
    response = client.post(reverse("training:label_review_start", args=[dataset.pk]), {"run": str(run.pk)})
    review = LabelReview.objects.get(dataset=dataset)
    assert response.status_code == 302 and response["Location"] == page(dataset, review)
    assert review.run == run and review.features_from == f"the network of run {run.pk}"

    review = wait_for(lambda: LabelReview.objects.filter(pk=review.pk, status__in=["done", "failed"]).first(),
                      timeout=180, interval=0.5, what="the search for wrong labels on the default worker")
    assert review.status == LabelReview.Status.DONE, review.error
    assert review.pictures == 30 and (review.done, review.total) == (30, 30)
    suspects = list(review.suspects.order_by("rank"))
    assert suspects and suspects[0].image_id == spot.id, [(s.image_name, s.given_label) for s in suspects]
    first = suspects[0]
    assert (first.given_label, first.suggested_label, first.kind) == ("horizontal", "spot", "label")
    # Shapes this plain are told apart by any network: the planted mistake is the only suspect.
    assert len(suspects) == 1

    shown = client.get(page(dataset, review)).content.decode()
    assert "Waiting for a worker" not in shown and 'http-equiv="refresh"' not in shown
    assert f'data-suspect="{first.pk}"' in shown and "Picture 1 of the 1 still to decide on" in shown
    assert "it more likely belongs to <strong id=\"label-suspect-suggested\">“spot”</strong>" in shown
    assert first.reason in shown and "mostly labelled “spot”" in first.reason
    assert "Move to “spot”" in shown
