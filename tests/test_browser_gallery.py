"""The gallery in a real headless Chromium: filter, select a range with a click and a
Shift-click, move the selection to another class, and look at one image large."""
import re

import pytest

from datasets_app.models import LabelChange
from tests.browser import browser_page, expect, sign_up  # noqa: F401 (browser_page is a fixture)
from tests.conftest import shapes_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_select_a_range_move_it_to_a_class_and_look_at_an_image(live_server, browser_page):  # noqa: F811
    page, js_errors = browser_page
    sign_up(page, live_server.url)
    js_errors.clear()  # the sign-up and dataset list pages answer to test_browser.py; this test to the gallery
    dataset = shapes_for("browser-user")
    horizontal, spot = dataset.classes.get(name="horizontal"), dataset.classes.get(name="spot")

    page.goto(f"{live_server.url}/datasets/{dataset.pk}/")
    page.click("#browse-images")
    expect(page.locator("#showing")).to_contain_text("Showing 1–30 of 30 images.")
    expect(page.locator("#bulk-form")).to_be_hidden()

    # Choosing a class in the filter shows its images at once.
    page.select_option("select[name=class]", label="horizontal (10)")
    expect(page).to_have_url(re.compile(rf"class={horizontal.pk}"))
    expect(page.locator("#showing")).to_contain_text("Showing 1–10 of 10 images.")
    tiles = page.locator("#gallery .tile")
    expect(tiles).to_have_count(10)

    # The second tile's tick, then Shift on the fifth's: the four from second to fifth.
    tiles.nth(1).locator(".tick").click()
    expect(page.locator("#selected-count")).to_have_text("1 selected")
    tiles.nth(4).locator(".tick").click(modifiers=["Shift"])
    expect(page.locator("#selected-count")).to_have_text("4 selected")
    chosen = [int(tiles.nth(i).locator(".tick").get_attribute("value")) for i in range(1, 5)]
    for i in range(10):
        expect(tiles.nth(i).locator(".tick")).to_be_checked(checked=1 <= i <= 4)

    # Ctrl-click on an image adds it without opening it; another Ctrl-click takes it out again.
    tiles.nth(8).locator(".open").click(modifiers=["Control"])
    expect(page.locator("#selected-count")).to_have_text("5 selected")
    expect(page.locator("#viewer")).to_be_hidden()
    tiles.nth(8).locator(".open").click(modifiers=["Control"])
    expect(page.locator("#selected-count")).to_have_text("4 selected")

    expect(page.locator("#bulk-form")).to_be_visible()
    expect(page.locator("#action-count")).to_have_text("With the 4 selected images:")
    page.select_option("#to-class", label="spot")
    page.click("#move-to-class")

    # Back on the same filtered page, with the message, and without the four.
    expect(page.locator("main > p.message")).to_have_text("Moved 4 images to “spot”.")
    expect(page).to_have_url(re.compile(rf"class={horizontal.pk}"))
    expect(page.locator("#showing")).to_contain_text("Showing 1–6 of 6 images.")
    assert set(spot.images.filter(id__in=chosen).values_list("id", flat=True)) == set(chosen)
    changes = LabelChange.objects.filter(image_id__in=chosen)
    assert set(changes.values_list("user__username", "from_label", "to_label", "action")) == {
        ("browser-user", "horizontal", "spot", "moved in gallery")}
    assert changes.count() == 4

    # "Select page" takes every image of the page; "Clear selection" none.
    page.click("#select-page")
    expect(page.locator("#selected-count")).to_have_text("6 selected")
    page.click("#clear-selection")
    expect(page.locator("#selected-count")).to_have_text("0 selected")
    expect(page.locator("#bulk-form")).to_be_hidden()

    # A plain click opens the large view; the arrow keys walk through the page; Escape closes.
    first, second = dataset.images.filter(image_class=horizontal).order_by("id")[:2]
    tiles.first.locator(".open").click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(page.locator("#viewer-name")).to_have_text(first.original_name)
    expect(page.locator("#viewer-size")).to_have_text(f"{first.width} × {first.height} pixels")
    expect(page.locator("#viewer-label")).to_have_text("horizontal")
    expect(page.locator("#viewer-image")).to_have_attribute("src", f"/datasets/{dataset.pk}/images/{first.pk}/")
    assert page.locator("#viewer-image").evaluate("image => image.complete && image.naturalWidth") == first.width
    page.keyboard.press("ArrowRight")
    expect(page.locator("#viewer-name")).to_have_text(second.original_name)
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#viewer-name")).to_have_text(first.original_name)
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()

    # The thumbnails really load (the image view answers), not just their markup.
    loaded = page.locator("#gallery img").evaluate_all("images => images.filter(i => i.naturalWidth > 0).length")
    assert loaded == 6
    assert js_errors == []


def test_delete_asks_first_and_the_large_view_notes_a_conflict(live_server, browser_page):  # noqa: F811
    page, js_errors = browser_page
    sign_up(page, live_server.url)
    js_errors.clear()  # as above: this test answers for the gallery only
    dataset = shapes_for("browser-user")
    flagged = dataset.images.order_by("id").first()
    dataset.images.filter(id=flagged.id).update(label_conflict=True)

    page.goto(f"{live_server.url}/datasets/{dataset.pk}/gallery/?status=conflict")
    tile = page.locator("#gallery .tile")
    expect(tile).to_have_count(1)
    tile.locator(".open").click()
    expect(page.locator("#viewer-name")).to_have_text(flagged.original_name)
    expect(page.locator("#viewer-conflict")).to_be_visible()
    page.click("#viewer-close")
    expect(page.locator("#viewer")).to_be_hidden()

    page.goto(f"{live_server.url}/datasets/{dataset.pk}/gallery/")
    page.click("#select-page")
    expect(page.locator("#selected-count")).to_have_text("30 selected")
    questions = []

    def answer(dialog, accept):
        questions.append(dialog.message)
        if accept:
            dialog.accept()
        else:
            dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, accept=False))
    page.click("#delete-selected")
    expect(page.locator("#selected-count")).to_have_text("30 selected")
    assert dataset.images.count() == 30
    assert "finished keep the images they learned from" in questions[0]

    page.once("dialog", lambda dialog: answer(dialog, accept=True))
    page.click("#delete-selected")
    expect(page.locator("main > p.message")).to_contain_text("Deleted 30 images from this dataset.")
    expect(page.locator("#no-images")).to_be_visible()
    assert dataset.images.count() == 0
    assert len(questions) == 2
    assert js_errors == []
