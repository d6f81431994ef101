"""The API tokens page in a real headless Chromium: each example command fits its card and its Copy
button puts the command on the clipboard; Revoke asks first (all from static/js/api_tokens.js, since
the page has no inline script)."""
import pytest

from api_app.models import ApiToken
from tests.browser import browser_page, expect, sign_up  # noqa: F401 (browser_page is a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_each_example_fits_its_card_and_is_copied_with_its_button(live_server, browser_page):  # noqa: F811
    page, errors = browser_page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    sign_up(page, live_server.url)
    page.goto(f"{live_server.url}/api/tokens/")
    page.fill("input[name=name]", "shop till")
    page.get_by_role("button", name="Make a token").click()
    key = page.locator("#new-token-key").inner_text()

    commands = page.locator("pre.command")
    expect(commands).to_have_count(6)  # TOKEN=..., then one per task
    for index in range(6):
        command = commands.nth(index)
        assert command.evaluate("pre => pre.scrollWidth <= pre.clientWidth"), command.inner_text()
    buttons = page.get_by_role("button", name="Copy this command")
    expect(buttons).to_have_count(6)
    buttons.nth(0).click()
    expect(buttons.nth(0)).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == f"TOKEN={key}"
    buttons.nth(2).click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith('curl -H "Authorization: Bearer $TOKEN"') and "-F images=@photo.jpg" in copied

    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Revoke").click()
    assert ApiToken.objects.get().revoked_at is None
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke").click()
    expect(page.locator("#tokens")).to_contain_text("revoked")
    assert ApiToken.objects.get().revoked_at is not None
    assert errors == []
