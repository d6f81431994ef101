"""The inbox's keys in a real headless Chromium: a class named like a key is picked with that key
(on a digits dataset, key 1 files a picture under "1"), the other classes get the number keys left
over, and each button shows its key."""
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.browser import browser_page, expect, sign_up  # noqa: F401 (browser_page is a fixture)
from tests.conftest import wait_for
from tests.images import image_bytes
from tests.test_browser_labelling import label_of, shown_image
from tests.test_labelling import ingest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_on_a_digits_dataset_each_key_picks_the_class_of_its_name(browser_page, live_server):  # noqa: F811
    page, js_errors = browser_page
    sign_up(page, live_server.url)
    owner = get_user_model().objects.get(username="browser-user")
    files = {f"{digit}/0.png": image_bytes("spot", 16, seed=digit) for digit in range(3)}
    files.update({f"loose-{i}.png": image_bytes("horizontal", 16, seed=10 + i) for i in range(3)})
    dataset = ingest(owner, files, name="Digits")
    ids = list(dataset.images.filter(image_class__isnull=True).order_by("id").values_list("id", flat=True))
    image_url = [reverse("datasets:image", args=[dataset.pk, image_id]) for image_id in ids]

    page.goto(f"{live_server.url}{reverse('datasets:inbox', args=[dataset.pk])}")
    expect(page.locator(".inbox-class")).to_have_text(["0 0", "1 1", "2 2"])
    expect(shown_image(page)).to_have_attribute("src", image_url[0])

    # Key 1 is the class "1", not the first class ("0").
    page.keyboard.press("1")
    expect(shown_image(page)).to_have_attribute("src", image_url[1])
    wait_for(lambda: label_of(ids[0]) == "1", timeout=10, what="the picture to be filed under 1")
    page.keyboard.press("0")
    expect(shown_image(page)).to_have_attribute("src", image_url[2])
    wait_for(lambda: label_of(ids[1]) == "0", timeout=10, what="the picture to be filed under 0")

    # A class whose name is not a key gets the first number key no class is named after.
    page.fill("#inbox-class-name", "noise")
    page.keyboard.press("Enter")
    expect(page.locator(".inbox-class")).to_have_text(["0 0", "1 1", "2 2", "3 noise"])
    page.keyboard.press("3")
    wait_for(lambda: label_of(ids[2]) == "noise", timeout=10, what="the picture to be filed under noise")

    assert js_errors == []


def test_letters_pick_classes_named_by_them_and_skip_and_undo_keep_their_keys(browser_page, live_server):  # noqa: F811
    page, js_errors = browser_page
    sign_up(page, live_server.url)
    owner = get_user_model().objects.get(username="browser-user")
    files = {f"{name}/0.png": image_bytes("spot", 16, seed=i) for i, name in enumerate(["b", "cats", "s"])}
    files.update({f"loose-{i}.png": image_bytes("horizontal", 16, seed=10 + i) for i in range(3)})
    dataset = ingest(owner, files, name="Letters")
    ids = list(dataset.images.filter(image_class__isnull=True).order_by("id").values_list("id", flat=True))
    image_url = [reverse("datasets:image", args=[dataset.pk, image_id]) for image_id in ids]

    page.goto(f"{live_server.url}{reverse('datasets:inbox', args=[dataset.pk])}")
    # "s" is the skip key, so the class "s" gets a number key, as "cats" does.
    expect(page.locator(".inbox-class")).to_have_text(["B b", "1 cats", "2 s"])
    page.keyboard.press("b")
    wait_for(lambda: label_of(ids[0]) == "b", timeout=10, what="the picture to be filed under b")
    page.keyboard.press("s")  # skips: the third picture shows, the second stays unlabelled
    expect(shown_image(page)).to_have_attribute("src", image_url[2])
    page.keyboard.press("2")
    wait_for(lambda: label_of(ids[2]) == "s", timeout=10, what="the picture to be filed under s")
    assert label_of(ids[1]) is None

    assert js_errors == []


def test_enter_accepts_the_class_a_model_suggested(browser_page, live_server):  # noqa: F811
    """Pictures sent from a classification carry the model's class: Enter (or the button) files them there;
    a picture without a suggestion shows none, and Enter does nothing to it."""
    page, js_errors = browser_page
    sign_up(page, live_server.url)
    owner = get_user_model().objects.get(username="browser-user")
    files = {f"{name}/0.png": image_bytes("spot", 16, seed=i) for i, name in enumerate(["cats", "dogs"])}
    files.update({f"loose-{i}.png": image_bytes("horizontal", 16, seed=10 + i) for i in range(3)})
    dataset = ingest(owner, files, name="Pets")
    ids = list(dataset.images.filter(image_class__isnull=True).order_by("id").values_list("id", flat=True))
    dataset.images.filter(id=ids[0]).update(suggested_label="dogs")
    dataset.images.filter(id=ids[1]).update(suggested_label="cats")
    image_url = [reverse("datasets:image", args=[dataset.pk, image_id]) for image_id in ids]

    page.goto(f"{live_server.url}{reverse('datasets:inbox', args=[dataset.pk])}")
    expect(page.locator("#inbox-suggested")).to_contain_text("A model said dogs.")
    page.keyboard.press("Enter")
    expect(shown_image(page)).to_have_attribute("src", image_url[1])
    wait_for(lambda: label_of(ids[0]) == "dogs", timeout=10, what="the picture to be filed under dogs")
    expect(page.locator("#inbox-suggested")).to_contain_text("A model said cats.")
    page.get_by_role("button", name="Accept").click()
    expect(shown_image(page)).to_have_attribute("src", image_url[2])
    wait_for(lambda: label_of(ids[1]) == "cats", timeout=10, what="the picture to be filed under cats")
    expect(page.locator("#inbox-suggested")).to_be_hidden()
    page.keyboard.press("Enter")
    expect(shown_image(page)).to_have_attribute("src", image_url[2])
    assert label_of(ids[2]) is None
    assert js_errors == []
