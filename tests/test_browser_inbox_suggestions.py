"""The inbox's card of a model's suggestions in a real headless Chromium: each picture shows the class the
model suggests and how sure it is, least sure first; "Accept every suggestion at or above" files the
pictures at or above the line (and none of a class the dataset lacks), each in the label history, and
"Undo it" puts them back. The suggestions are made in this process by the worker's task with a made-up
model (tests/test_model_assist.py's FakePredictor), so what is sure and what is not is known."""
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from datasets_app.labelling import relabel
from datasets_app.models import LabelChange
from predict_app.models import SuggestionJob
from predict_app.tasks import suggest_classes
from tests.browser import browser_page, expect, sign_up  # noqa: F401 (browser_page is a fixture)
from tests.conftest import shapes_for, wait_for
from tests.test_browser_labelling import label_of, shown_image
from tests.test_model_assist import ANSWERS, FakePredictor, fake_model, use_predictor

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def labels(ids):
    return [label_of(image_id) for image_id in ids]


def test_the_inbox_shows_the_suggestions_least_sure_first_and_accepts_those_above_a_line(
        browser_page, live_server, monkeypatch):  # noqa: F811
    page, js_errors = browser_page
    sign_up(page, live_server.url)
    owner = get_user_model().objects.get(username="browser-user")
    dataset = shapes_for("browser-user")
    ids = list(dataset.images.order_by("id").values_list("id", flat=True)[:4])
    relabel(dataset, ids, None, owner)  # four pictures back in the inbox
    run = fake_model(dataset)
    # In id order: horizontal 90 %, spot 50 % (not sure), cats 99 % (no class of this dataset), vertical 70 %.
    use_predictor(monkeypatch, FakePredictor(ANSWERS))
    job = SuggestionJob.objects.create(owner=owner, dataset=dataset, run=run)
    suggest_classes(job.id)  # what the default worker runs
    job.refresh_from_db()
    assert job.status == "done", job.error
    card = page.locator("#inbox-assist")

    page.goto(f"{live_server.url}{reverse('datasets:inbox', args=[dataset.pk])}")
    expect(card).to_contain_text(f"Showing the suggestions of run {run.pk}")
    expect(card).to_contain_text("least sure first")
    expect(card).to_contain_text("4 pictures in the inbox have a suggestion")
    expect(card).to_contain_text("Suggestions of classes this dataset lacks (cats) are not accepted")
    expect(page.locator("#suggest-line")).to_have_value("90")

    # Least sure first; S skips to the next, so each picture's suggestion is seen in turn.
    for image_id, label, percent in [(ids[1], "spot", 50), (ids[3], "vertical", 70), (ids[0], "horizontal", 90)]:
        expect(shown_image(page)).to_have_attribute("src", reverse("datasets:image", args=[dataset.pk, image_id]))
        expect(page.locator("#inbox-suggested")).to_be_visible()
        expect(page.locator("#inbox-suggested")).to_contain_text(f"A model said {label}, {percent} % sure.")
        expect(page.locator("#inbox-suggested-missing")).to_be_hidden()
        page.keyboard.press("s")
    expect(shown_image(page)).to_have_attribute("src", reverse("datasets:image", args=[dataset.pk, ids[2]]))
    expect(page.locator("#inbox-suggested")).to_be_hidden()
    expect(page.locator("#inbox-suggested-missing")).to_contain_text(
        "The model suggests cats (99 % sure), which is not a class of this dataset.")
    assert labels(ids) == [None] * 4  # looking files nothing

    # At or above 70 %: the horizontal (90 %) and the vertical (70 %); not the spot (50 %), nor the cats.
    page.fill("#suggest-line", "70")
    page.locator("#suggest-accept button[type=submit]").click()
    expect(page.locator("main p.message.info")).to_contain_text(
        "2 pictures filed under the model's suggestion (at least 70 % sure).")
    expect(page.locator("main p.message.info")).to_contain_text("this dataset has no such class: “cats” (1)")
    assert labels(ids) == ["horizontal", None, None, "vertical"]
    assert sorted(LabelChange.objects.filter(dataset=dataset, action="suggestion accepted")
                  .values_list("image_id", "from_label", "to_label")) == sorted(
        [(ids[0], "", "horizontal"), (ids[3], "", "vertical")])
    # The two left, still least sure first; the card offers to undo.
    expect(shown_image(page)).to_have_attribute("src", reverse("datasets:image", args=[dataset.pk, ids[1]]))
    expect(page.locator("#inbox-left")).to_have_text("2 left")
    expect(card).to_contain_text("Your last accept filed 2 pictures.")

    card.get_by_role("button", name="Undo it").click()
    expect(page.locator("main p.message.info")).to_contain_text("Undone: 2 pictures back in the inbox.")
    assert labels(ids) == [None] * 4
    assert LabelChange.objects.filter(dataset=dataset, action="undone").count() == 2
    expect(card.get_by_role("button", name="Undo it")).to_have_count(0)
    expect(page.locator("#inbox-left")).to_have_text("4 left")

    # One at a time, Enter accepts the shown picture's suggestion, even one the model was not sure of.
    expect(shown_image(page)).to_have_attribute("src", reverse("datasets:image", args=[dataset.pk, ids[1]]))
    page.keyboard.press("Enter")
    expect(shown_image(page)).to_have_attribute("src", reverse("datasets:image", args=[dataset.pk, ids[3]]))
    wait_for(lambda: label_of(ids[1]) == "spot", timeout=10, what="the picture to be filed under spot")
    assert js_errors == []
