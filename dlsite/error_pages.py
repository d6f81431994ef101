"""The site's own error pages, also with DEBUG on.

`make run` turns DEBUG on for people running the site on their own computer, and with it Django
answers a missing page, a bad request or a crash with its technical pages (settings, code, the
traceback): a stale link after a delete, or Back, then shows a yellow page of code to someone who
does not program. This middleware answers those as the site does without DEBUG, with its own 404,
400 and 500 pages, and logs what Django logs; the technical details (the traceback) go to the
terminal and the log. Without DEBUG it does nothing: Django already uses the site's pages.
"""

from django.conf import settings
from django.core import signals
from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.core.handlers.exception import get_exception_response
from django.http import Http404
from django.urls import Resolver404, get_resolver, get_urlconf, resolve
from django.utils.log import log_response


class OwnErrorPages:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if settings.DEBUG:
            # An address no page has never reaches a view, so process_exception would not see it.
            try:
                resolve(request.path_info, getattr(request, "urlconf", None))
            except Resolver404 as exc:
                return self._page(request, 404, exc)
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not settings.DEBUG or isinstance(exception, PermissionDenied):
            return None  # Django's own handling; a 403 already uses the site's page
        if isinstance(exception, Http404):
            return self._page(request, 404, exception)
        if isinstance(exception, (BadRequest, SuspiciousOperation)):
            response = self._page(request, 400, exception)
            log_response("%s: %s", str(exception), request.path, response=response, request=request,
                         exception=exception)
            return response
        signals.got_request_exception.send(sender=None, request=request)
        response = get_resolver(get_urlconf()).resolve_error_handler(500)(request)
        log_response("%s: %s", "Internal Server Error", request.path, response=response, request=request,
                     exception=exception)
        return response

    @staticmethod
    def _page(request, status, exception):
        return get_exception_response(request, get_resolver(get_urlconf()), status, exception)
