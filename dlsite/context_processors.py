"""Values every template may need."""
from django.conf import settings


def signup(request):
    """Whether to offer a sign-up link at all (SIGNUP_MODE "closed" offers none)."""
    return {"signup_mode": settings.SIGNUP_MODE, "signup_offered": settings.SIGNUP_MODE != "closed"}
