"""Which format an API answer is written in: always JSON, the only one the API speaks."""
from rest_framework import exceptions
from rest_framework.negotiation import DefaultContentNegotiation


class JsonWhateverTheAcceptHeader(DefaultContentNegotiation):
    """An Accept header that does not name JSON (a program's typo, an HTTP library's odd default, noise
    from a generated request) gets the JSON answer all the same, instead of "406 Not Acceptable", which
    no operation's schema lists and which tells a newcomer's program nothing it can act on."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except exceptions.NotAcceptable:
            renderer = renderers[0]
            return renderer, renderer.media_type
