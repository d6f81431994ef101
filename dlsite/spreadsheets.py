"""Every spreadsheet the site offers (a CSV download) is written here, so that each one is safe to open.

A spreadsheet program runs a cell that starts with = + - or @ as a formula (=HYPERLINK(…),
+cmd|…), and one that starts with a tab or a carriage return can hide such a start; the names
in these files come from people's folders and zips. OWASP's advice: start such a cell with a
quote, which the spreadsheet shows as text.
"""
import csv

from django.http import StreamingHttpResponse

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """A cell that a spreadsheet shows as text, never runs as a formula (numbers stay numbers)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class _Echo:
    """A file-like object whose write returns the line, so csv.writer can feed a streaming response."""

    def write(self, value):
        return value


def csv_lines(rows):
    """The CSV text of `rows` (lists of cells, the heading first), a line at a time, every cell made safe."""
    writer = csv.writer(_Echo())
    for row in rows:
        yield writer.writerow([spreadsheet_safe(cell) for cell in row])


def csv_download(rows, filename: str) -> StreamingHttpResponse:
    """A CSV file to download, written while it is sent (an upload's report may have 70,000 lines)."""
    response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
