"""The likely-wrong-labels review in a real headless Chromium: the page waits for the search by itself,
then shows its suspects one at a time, walked with the keys: K keeps a label, M moves the picture to the
suggested class, X removes it; each decision is in the database and the label history, and the page goes
on to the next suspect after each."""
import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from datasets_app.models import Image, LabelChange
from tests.browser import browser_page, expect, sign_up  # noqa: F401 (browser_page is a fixture)
from tests.test_label_review import done_review
from tests.test_label_review import page as review_path
from tests.test_labelling import ingest, pets_files
from training_app.label_review import KEEP_ACTION, MOVE_ACTION, REMOVE_ACTION
from training_app.models import LabelReview

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_k_m_and_x_decide_each_suspect_and_the_page_goes_on_to_the_next(browser_page, live_server):  # noqa: F811
    page, js_errors = browser_page
    sign_up(page, live_server.url)
    owner = get_user_model().objects.get(username="browser-user")
    dataset = ingest(owner, pets_files(conflicts=0))
    review = done_review(dataset)  # the three cats, each said to be a dog
    kept, moved, removed = review.suspects.order_by("rank")
    suspect = page.locator("#label-suspect")

    # While a worker looks, the page says so and updates by itself; once the search is done, the first suspect.
    LabelReview.objects.filter(pk=review.pk).update(status=LabelReview.Status.RUNNING, phase="Looking at each picture",
                                                    done=2, total=6)
    page.goto(f"{live_server.url}{review_path(dataset, review)}")
    expect(page.locator("#label-review-status")).to_have_text(
        "Looking for likely wrong labels: Looking at each picture (2 of 6).")
    expect(suspect).to_have_count(0)
    LabelReview.objects.filter(pk=review.pk).update(status=LabelReview.Status.DONE, phase="", done=6)
    expect(suspect).to_have_attribute("data-suspect", str(kept.pk), timeout=15_000)
    expect(suspect).to_contain_text("Picture 1 of the 3 still to decide on")
    expect(page.locator("#label-suspect-label")).to_have_text("“cats”")
    expect(page.locator("#label-suspect-suggested")).to_have_text("“dogs”")
    expect(page.locator("#label-suspect-picture")).to_have_attribute(
        "src", reverse("datasets:image", args=[dataset.pk, kept.image_id]))

    # The arrows only look: to the next suspect and back, nothing decided.
    page.keyboard.press("ArrowRight")
    expect(suspect).to_have_attribute("data-suspect", str(moved.pk))
    expect(page).to_have_url(re.compile(rf"\?suspect={moved.pk}$"))
    page.keyboard.press("ArrowLeft")
    expect(suspect).to_have_attribute("data-suspect", str(kept.pk))
    assert not LabelChange.objects.filter(dataset=dataset).exists()

    # K keeps the label: the next suspect shows, now the first of two.
    page.keyboard.press("k")
    expect(suspect).to_have_attribute("data-suspect", str(moved.pk))
    expect(suspect).to_contain_text("Picture 1 of the 2 still to decide on")
    expect(page.locator("main p.message")).to_contain_text(f"“{kept.image_name}” keeps its label “cats”")
    kept.refresh_from_db()
    assert kept.decision == "kept" and kept.decided_by == owner
    assert Image.objects.get(id=kept.image_id).label == "cats"
    assert list(LabelChange.objects.filter(image_id=kept.image_id).values_list("action", "from_label", "to_label")) \
        == [(KEEP_ACTION, "cats", "cats")]

    # M moves the picture to the suggested class.
    page.keyboard.press("m")
    expect(suspect).to_have_attribute("data-suspect", str(removed.pk))
    expect(page.locator("main p.message")).to_contain_text(f"“{moved.image_name}” moved from “cats” to “dogs”")
    moved.refresh_from_db()
    assert moved.decision == "moved" and Image.objects.get(id=moved.image_id).label == "dogs"
    assert list(LabelChange.objects.filter(image_id=moved.image_id).values_list("action", "from_label", "to_label")) \
        == [(MOVE_ACTION, "cats", "dogs")]

    # X removes the picture from the dataset: nothing is left to decide on.
    removed_image = removed.image_id
    page.keyboard.press("x")
    expect(page.locator("#label-review-finished")).to_contain_text("you went through every suspect")
    expect(suspect).to_have_count(0)
    expect(page.locator("main p.message")).to_contain_text(f"“{removed.image_name}” was removed from the dataset")
    removed.refresh_from_db()
    assert removed.decision == "removed" and not Image.objects.filter(id=removed_image).exists()
    assert list(LabelChange.objects.filter(dataset=dataset, image_name=removed.image_name)
                .values_list("action", "from_label", "to_label")) == [(REMOVE_ACTION, "cats", "")]
    expect(page.locator("#label-review-decided li")).to_have_text([
        f"{removed.image_name}: removed from the dataset", f"{moved.image_name}: moved to the suggested class (“dogs”)",
        f"{kept.image_name}: label kept"])
    # Of the three cats, the one kept is the only one left.
    assert list(dataset.images.filter(image_class__name="cats").values_list("id", flat=True)) == [kept.image_id]

    # Z takes the removal back: the picture is in the dataset again, with its id, and open to decide on.
    page.keyboard.press("z")
    expect(suspect).to_have_attribute("data-suspect", str(removed.pk))
    expect(page.locator("main p.message")).to_contain_text(f"“{removed.image_name}” is back in the dataset")
    removed.refresh_from_db()
    assert removed.decision == "" and Image.objects.get(id=removed_image).label == "cats"
    page.keyboard.press("x")  # and removed again, for the history below
    expect(page.locator("#label-review-finished")).to_be_visible()

    # The label history says each, in words.
    page.goto(f"{live_server.url}{reverse('datasets:history', args=[dataset.pk])}")
    expect(page.locator("#history tbody tr td:last-child")).to_have_text([
        "Removed from the dataset, from the search for likely wrong labels",
        "Removed picture put back (undo)",
        "Removed from the dataset, from the search for likely wrong labels",
        "Moved to the suggested class, from the search for likely wrong labels",
        "Label kept after the search for likely wrong labels"])
    assert js_errors == []
