"""Requests that carry many files: a folder sent in parts by the browser (datasets, classifications)."""
from functools import wraps

from django.conf import settings
from django.core.exceptions import TooManyFilesSent
from django.views.decorators.csrf import csrf_exempt, csrf_protect


def too_many_files_message():
    return f"Send at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files at a time."


def refusing_too_many_files(too_many_files_response):
    """Answer a request with more than DATA_UPLOAD_MAX_NUMBER_FILES files with a message that says so.

    Django refuses such a request while reading its body, and CsrfViewMiddleware reads
    the body first, so the person would only see "Bad Request (400)". This reads the
    body before the CSRF check, then checks CSRF exactly as the middleware would.
    """
    def decorator(view):
        protected = csrf_protect(view)

        @csrf_exempt  # not exempt: checked by `protected`, once the body has been read
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            try:
                request.FILES
            except TooManyFilesSent:
                return too_many_files_response(request, *args, **kwargs)
            return protected(request, *args, **kwargs)
        return wrapper
    return decorator
