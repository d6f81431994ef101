"""Sign-up as SIGNUP_MODE says (open, by invitation, closed) and login throttling (django-axes)."""
from django.contrib.auth import get_user_model
from django.urls import reverse

from accounts_app.models import Invitation
from tests.conftest import PASSWORD

NEW_ACCOUNT = {"username": "bob", "password1": PASSWORD, "password2": PASSWORD}


def accounts():
    return set(get_user_model().objects.values_list("username", flat=True))


def test_open_sign_up_needs_no_code(client, db, settings):
    settings.SIGNUP_MODE = "open"
    assert b"Invitation code" not in client.get(reverse("signup")).content
    assert client.post(reverse("signup"), NEW_ACCOUNT).status_code == 302
    assert accounts() == {"bob"}


def test_closed_sign_up_shows_no_form_and_no_link(client, db, settings):
    settings.SIGNUP_MODE = "closed"
    page = client.get(reverse("signup")).content.decode()
    assert "Sign-up is closed" in page and "<form method=\"post\"" not in page
    response = client.post(reverse("signup"), NEW_ACCOUNT)
    assert response.status_code == 200 and accounts() == set()
    for name in ("home", "login"):
        assert reverse("signup") not in client.get(reverse(name)).content.decode(), name


def test_invite_only_sign_up_needs_an_unused_code_and_uses_it_up(client, db, settings, user):
    settings.SIGNUP_MODE = "invite"
    invitation = Invitation.objects.create(created_by=user, note="for Bob")
    assert b"Invitation code" in client.get(reverse("signup")).content

    response = client.post(reverse("signup"), NEW_ACCOUNT)  # no code
    assert response.status_code == 200 and "bob" not in accounts()
    response = client.post(reverse("signup"), NEW_ACCOUNT | {"invitation": "made-up"})
    assert "not valid" in response.content.decode() and "bob" not in accounts()

    response = client.post(reverse("signup"), NEW_ACCOUNT | {"invitation": invitation.code})
    assert response.status_code == 302
    invitation.refresh_from_db()
    assert invitation.used_by.username == "bob" and invitation.used_at is not None

    client.post(reverse("logout"))
    response = client.post(reverse("signup"), NEW_ACCOUNT | {"username": "carol", "invitation": invitation.code})
    assert "not valid" in response.content.decode() and "carol" not in accounts()


def test_staff_make_invitations_in_the_admin(client, db, settings, user):
    user.is_staff = user.is_superuser = True
    user.save()
    client.force_login(user)
    response = client.post(reverse("admin:accounts_app_invitation_add"),
                           {"code": "welcome-bob", "note": "for Bob"})
    assert response.status_code == 302
    assert Invitation.objects.get(code="welcome-bob").created_by == user


def log_in(client, password):
    return client.post(reverse("login"), {"username": "alice", "password": password})


def test_five_wrong_passwords_lock_out_even_the_right_one(client, user):
    for _ in range(4):
        response = log_in(client, "wrong password")
        assert response.status_code == 200 and "Too many" not in response.content.decode()
    response = log_in(client, "wrong password")  # the fifth: AXES_FAILURE_LIMIT
    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many wrong passwords" in page and "after 5 wrong passwords" in page and "15 minutes" in page
    response = log_in(client, PASSWORD)  # the sixth, with the right password
    assert response.status_code == 429 and "_auth_user_id" not in client.session


def test_a_successful_login_resets_the_count(client, user):
    for _ in range(4):
        log_in(client, "wrong password")
    assert log_in(client, PASSWORD).status_code == 302
    client.post(reverse("logout"))
    for _ in range(4):
        assert log_in(client, "wrong password").status_code == 200
    assert log_in(client, PASSWORD).status_code == 302


def test_another_address_is_not_locked_out_with_the_guesser(client, user):
    for _ in range(6):
        log_in(client, "wrong password")
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD},
                           REMOTE_ADDR="192.0.2.7")
    assert response.status_code == 302
