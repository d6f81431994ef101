"""The schema's description of each operation, with the errors it can answer: every error is the same
JSON (api_app/serializers.py MessageSerializer), and which statuses an operation can give follows from
what it is: one that needs a token can answer 401, any can be throttled (429), one with an id in its path
can find nothing (404), one that reads a body or a query can refuse it (400), one that reads JSON can
find it too large (413), one that reads a body can be sent a kind it does not read (415). A method an
address does not have answers 405, which belongs to no operation and so is in none."""
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework.permissions import AllowAny

from .serializers import MessageSerializer


class AutoSchema(SpectacularAutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, words in self._errors():
            if str(code) not in responses:
                responses[str(code)] = {**self._get_response_for_code(MessageSerializer, str(code), direction=direction),
                                        "description": words}
        return responses

    def _errors(self):
        view = self.view
        if not all(isinstance(p, AllowAny) for p in view.get_permissions()):
            yield 401, "No token, or one this site did not make, or a revoked one."
        if "{" in self.path:
            yield 404, "Nothing of yours has this number (or the address is wrong)."
        if self.method in ("POST", "PUT", "PATCH") or self._is_list_view() or self._get_paginator():
            yield 400, "The request was refused: `message` says why, `fields` each field's reason."
        if self.method in ("POST", "PUT", "PATCH") and "application/json" in self.map_parsers():
            yield 413, "The JSON body is larger than the site takes (API_MAX_JSON_BYTES)."
        if self.method in ("POST", "PUT", "PATCH"):
            yield 415, "The body's content type is not one this operation reads."
        if self._is_list_view() or self._get_paginator():
            yield 404, "The page's address (its cursor) is not one this site made."
        if view.get_throttles():
            yield 429, "Too many requests with this token this minute; `Retry-After` says when to go on."
