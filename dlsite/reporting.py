"""What error reports may show: nothing that holds a password."""
import re

from django.views.debug import SafeExceptionReporterFilter

# scheme://user:password@host — the password is the part between the first ":" after "//"
# and the "@". Also catches the password-only form redis://:password@host.
URL_PASSWORD = re.compile(r"(?P<before>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@\s]+)(?P<after>@)")


def hide_url_passwords(text: str, substitute: str = "********") -> str:
    """`text` with the password of every URL in it replaced, e.g. for an error message."""
    return URL_PASSWORD.sub(lambda m: m["before"] + substitute + m["after"], text)


class PasswordHidingFilter(SafeExceptionReporterFilter):
    """Django's filter, which hides settings named like KEY, SECRET, TOKEN or PASSWORD, and in
    addition the password of any URL in a setting, a request header or a variable of the
    traceback: CELERY_BROKER_URL and DATABASE_URL are named like none of those."""

    def cleanse_setting(self, key, value):
        value = super().cleanse_setting(key, value)
        if type(value) is str:  # not isinstance: lazy objects pass for strings there
            return hide_url_passwords(value, self.cleansed_substitute)
        return value

    def get_traceback_frame_variables(self, request, tb_frame):
        return [(name, hide_url_passwords(value, self.cleansed_substitute) if type(value) is str else value)
                for name, value in super().get_traceback_frame_variables(request, tb_frame)]
