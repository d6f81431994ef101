"""The API's lists, a page at a time (DRF's cursor pagination): `?limit=` sets a page's length, and each
answer's `next` and `previous` are the addresses of the pages around it. A cursor stays right while rows
are added (a classification's results arrive as it runs), and a page costs the same at the end of
70,000 pictures as at the start. The list keeps the name it had before pages: `models`, `datasets`,
`pictures`."""
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from mlcore.words import whole_number


class Pages(CursorPagination):
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "limit"
    ordering = "-id"
    items = "results"  # the list's name in the answer
    invalid_cursor_message = "This page's address (its “cursor”) is not one this site made: start from the first page."

    def __init__(self):
        self.extra = {}  # fields a view adds next to the list

    def get_page_size(self, request):
        text = request.query_params.get(self.page_size_query_param)
        if text is None:
            return self.page_size
        number = whole_number(text, 1, self.max_page_size, clamp=True)
        if number is None:
            raise ValidationError({"limit": [f"A whole number from 1 to {self.max_page_size}."]})
        return number

    def get_paginated_response(self, data):
        return Response({"next": self.get_next_link(), "previous": self.get_previous_link(), self.items: data,
                         **self.extra})

    def get_paginated_response_schema(self, schema):
        link = {"type": "string", "format": "uri", "nullable": True}
        return {"type": "object", "required": ["next", "previous", self.items],
                "properties": {"next": {**link, "description": "the next page, or null after the last"},
                               "previous": {**link, "description": "the page before, or null on the first"},
                               self.items: schema}}

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
                parameter["description"] = (f"how many on a page ({self.page_size} if left out); more than "
                                            f"{self.max_page_size} reads as {self.max_page_size}")
        return parameters


def pages(items: str, ordering: str = "-id", page_size: int = 100, **extra_fields):
    """A Pages class for one list: its name, order and page length, and the schema of fields the
    view adds beside it (`extra_fields`, JSON schemas)."""

    class ListPages(Pages):
        def get_paginated_response_schema(self, schema):
            answer = super().get_paginated_response_schema(schema)
            answer["properties"].update(extra_fields)
            answer["required"] += list(extra_fields)
            return answer

    ListPages.items, ListPages.ordering, ListPages.page_size = items, ordering, page_size
    ListPages.__name__ = f"{items.title()}Pages"
    return ListPages
