"""How the API reads a JSON body: through the site's one JSON reader (mlcore/json_input.py), which
refuses a body nested too deeply, and no more than API_MAX_JSON_BYTES of it. DRF's own parser reads the
whole stream, whatever its size (Django's DATA_UPLOAD_MAX_MEMORY_SIZE guards only request.body and
forms): a 150 MB body was read whole, and the web process kept the memory."""
from django.conf import settings
from rest_framework import parsers, status
from rest_framework.exceptions import APIException, ParseError

from mlcore.json_input import UnreadableJson, read_json
from mlcore.words import whole_number


class TooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.API_MAX_JSON_BYTES
        request = (parser_context or {}).get("request")
        declared = whole_number(request.META.get("CONTENT_LENGTH")) if request is not None else None
        if (declared or 0) > limit or len(body := b"" if stream is None else stream.read(limit + 1)) > limit:
            raise TooLarge(f"A JSON body may hold at most {limit:,} bytes; send pictures as files "
                           "(multipart) or a few at a time.")
        try:
            return read_json(body, "The body")
        except UnreadableJson as error:
            raise ParseError(str(error)) from None
