"""From the confusion matrix to the pictures in a real headless Chromium: a click on a cell of the run
page's chart opens the test pictures behind it; there, a key moves the focused picture to the model's
answer, and Z undoes it, with the picture focused again after each change."""
import re

import pytest

from datasets_app.models import Image, LabelChange
from tests.browser import browser_page, expect, sign_up  # noqa: F401 (browser_page is a fixture)
from tests.conftest import shapes_for
from tests.test_run_pictures import finished_run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_cell_of_the_matrix_opens_its_pictures_where_a_key_fixes_a_label_and_z_undoes_it(live_server,
                                                                                           browser_page):  # noqa: F811
    page, js_errors = browser_page
    sign_up(page, live_server.url)
    js_errors.clear()
    dataset = shapes_for("browser-user")
    run, (sure_wrong, *_) = finished_run(dataset)

    page.goto(f"{live_server.url}/runs/{run.pk}/")
    # The chart's row "horizontal" (the top one) and column "vertical" (the last of three).
    page.locator("#confusion-chart").scroll_into_view_if_needed()
    area = page.locator("#confusion-chart .nsewdrag").bounding_box()
    x, y = area["x"] + area["width"] * 5 / 6, area["y"] + area["height"] / 6
    page.mouse.move(x, y)  # Plotly answers a click with the point the pointer hovers
    expect(page.locator("#confusion-chart .hovertext")).to_contain_text("true horizontal, predicted vertical")
    page.mouse.click(x, y)
    expect(page).to_have_url(re.compile(r"/pictures/\?true=horizontal&predicted=vertical$"))
    expect(page.locator("#pictures-title")).to_have_text(
        "Test pictures labelled horizontal that the model called vertical")
    card = page.locator(f"#picture-{sure_wrong.id}")
    expect(card.locator(".answer-words")).to_have_text("labelled horizontal, the model says vertical, 91 % sure")

    card.focus()
    page.keyboard.press("a")
    expect(page.locator("main p.message")).to_contain_text("was moved from “horizontal” to “vertical”")
    expect(card.locator(".now")).to_have_text("now in “vertical”")
    expect(card).to_be_focused()
    assert Image.objects.get(id=sure_wrong.id).label == "vertical"

    page.keyboard.press("z")
    expect(page.locator("main p.message")).to_contain_text("is back in “horizontal”")
    expect(card.locator(".now")).to_have_count(0)
    assert Image.objects.get(id=sure_wrong.id).label == "horizontal"
    assert [c.action for c in LabelChange.objects.filter(image_id=sure_wrong.id)] == [
        "undone", "moved from test results"]
    assert js_errors == []
