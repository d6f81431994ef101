"""How a program proves who it is (an API token in the Authorization header) and how often it may ask."""
from django.conf import settings
from django.core.cache import caches
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.throttling import SimpleRateThrottle

from .models import ApiToken


class TokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <token>` (or `Token <token>`), a token made on the "API tokens" page."""

    keywords = (b"bearer", b"token")

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in self.keywords:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("The Authorization header must be “Bearer” and the token, "
                                                  "with one space between them.")
        try:
            key = parts[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("This token is not one this site made.") from None
        token = ApiToken.objects.for_key(key)
        if token is None or not token.owner.is_active:
            raise exceptions.AuthenticationFailed("This token is not one this site made.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This token was revoked; make a new one on the API tokens page.")
        token.note_use()
        return token.owner, token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class TokenScheme(OpenApiAuthenticationExtension):
    """How the schema (and the docs page's "Authorize" button) describes the token."""

    target_class = TokenAuthentication
    name = "token"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "A token made on the site's “API tokens” page: `Authorization: Bearer <token>`."}


class TokenRateThrottle(SimpleRateThrottle):
    """API_RATE requests per token (a person signed in on the site counts as one token), counted in
    fixed windows in the cache all web processes share (settings.CACHES["shared"]): one small count
    a window, not DRF's list of every request's time (1,200 of them a minute, read and written on
    each request). The count is atomic (Redis' SET NX and INCR, or dlsite/cache.py's lock), so no
    more than the limit get through however many clients ask at once."""

    scope = "token"

    def __init__(self):
        self.cache = caches["shared"]
        super().__init__()

    def get_rate(self):
        return settings.API_RATE

    def get_cache_key(self, request, view):
        if isinstance(request.auth, ApiToken):
            ident = f"token-{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        self.window_ends = (window + 1) * self.duration - now
        count_key = f"{self.get_cache_key(request, view)}-{window}"
        try:
            count = self.cache.incr(count_key)  # the usual case: the window's count exists
        except ValueError:  # the window's first request; or, if another process made it meanwhile, a later one
            count = 1 if self.cache.add(count_key, 1, self.duration + 1) else self.cache.incr(count_key)
        return count <= self.num_requests

    def wait(self):
        return self.window_ends


def plain_errors(exc, context):
    """Every error as JSON with a plain-words `message` (and DRF's field details, if any)."""
    from rest_framework.views import exception_handler

    response = exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, dict) and "detail" in data and len(data) == 1:
        response.data = {"message": str(data["detail"])}
    elif isinstance(data, dict):
        words = " ".join(f"{field}: {' '.join(map(str, errors)) if isinstance(errors, list) else errors}"
                         for field, errors in data.items())
        response.data = {"message": words, "fields": data}
    else:
        response.data = {"message": " ".join(map(str, data)) if isinstance(data, list) else str(data)}
    return response
