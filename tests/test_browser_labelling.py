"""The inbox in a real headless Chromium: the next picture is downloaded ahead, number keys label,
Z undoes, and typing a class name does not label anything."""
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from datasets_app.models import Image
from tests.browser import browser_page, expect, sign_up  # noqa: F401 (browser_page is a fixture)
from tests.conftest import wait_for
from tests.images import image_bytes
from tests.test_labelling import ingest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOOSE = 4


def label_of(image_id):
    return Image.objects.select_related("image_class").get(pk=image_id).label


def shown_image(page):
    return page.locator("#inbox-image")


def test_labelling_the_inbox_with_the_keyboard(browser_page, live_server):  # noqa: F811
    page, js_errors = browser_page
    sign_up(page, live_server.url)
    owner = get_user_model().objects.get(username="browser-user")
    files = {"cats/0.png": image_bytes("horizontal", 16, seed=1), "dogs/0.png": image_bytes("vertical", 16, seed=2)}
    files.update({f"loose-{i}.png": image_bytes("spot", 16, seed=10 + i) for i in range(LOOSE)})
    dataset = ingest(owner, files)
    ids = list(dataset.images.filter(image_class__isnull=True).order_by("id").values_list("id", flat=True))
    assert len(ids) == LOOSE
    image_url = [reverse("datasets:image", args=[dataset.pk, image_id]) for image_id in ids]

    # The second picture is downloaded while the first is on screen.
    with page.expect_request_finished(lambda request: request.url.endswith(image_url[1])):
        page.goto(f"{live_server.url}{reverse('datasets:inbox', args=[dataset.pk])}")
    expect(shown_image(page)).to_have_attribute("src", image_url[0])
    expect(page.locator("#inbox-name")).to_have_text("loose-0.png")
    expect(page.locator("#inbox-left")).to_have_text(f"{LOOSE} left")
    expect(page.locator(".inbox-class")).to_have_text(["1 cats", "2 dogs"])

    # "2" files the picture under the second class, dogs, and the next one shows at once.
    page.keyboard.press("2")
    expect(shown_image(page)).to_have_attribute("src", image_url[1])
    wait_for(lambda: label_of(ids[0]) == "dogs", timeout=10, what="the first picture to be filed under dogs")
    expect(page.locator("#inbox-left")).to_have_text(f"{LOOSE - 1} left")

    page.keyboard.press("1")
    expect(shown_image(page)).to_have_attribute("src", image_url[2])
    wait_for(lambda: label_of(ids[1]) == "cats", timeout=10, what="the second picture to be filed under cats")

    # Z takes the last label back: the picture is in the inbox again and on screen again.
    page.keyboard.press("z")
    expect(shown_image(page)).to_have_attribute("src", image_url[1])
    wait_for(lambda: label_of(ids[1]) is None, timeout=10, what="the undo to reach the server")
    expect(page.locator("#inbox-left")).to_have_text(f"{LOOSE - 1} left")
    assert label_of(ids[0]) == "dogs"

    # Number keys typed into "Add a class" are part of the name, not labels.
    page.fill("#inbox-class-name", "")
    page.locator("#inbox-class-name").press_sequentially("size 1")
    page.keyboard.press("Enter")
    expect(page.locator(".inbox-class")).to_have_text(["1 cats", "2 dogs", "3 size 1"])
    assert label_of(ids[1]) is None
    expect(shown_image(page)).to_have_attribute("src", image_url[1])
    page.keyboard.press("3")
    expect(shown_image(page)).to_have_attribute("src", image_url[2])
    wait_for(lambda: label_of(ids[1]) == "size 1", timeout=10, what="the picture to be filed under the new class")

    assert js_errors == []
