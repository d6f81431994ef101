"""Numbers in the plain words the pages use, each written once: a count with its noun, a duration,
how long ago, a size in bytes, the colour of images; and the one way a whole number a person or a
page sent is read. Django-free, so the web pages, the worker and the insights share them. The
browser's script says counts and sizes the same way (static/js/site.js `count`, `fileSize`)."""


def count(n: int, one: str, many: str | None = None) -> str:
    """"1 image", "1,500 images", "2 runs are" (count(2, "run is", "runs are")): `many` defaults to
    `one` with an "s"."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def decimal(number: float, digits: int = 4) -> str:
    """A small number such as a step size as plain decimals, never in the e-notation most people cannot
    read: 3e-06 → "0.000003", 1e-05 → "0.00001", 0.0003 → "0.0003", 0.1 → "0.1". At most `digits`
    significant digits."""
    from decimal import Decimal

    text = format(Decimal(f"{float(number):.{digits}g}"), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def duration(seconds: float, exact: bool = False) -> str:
    """As exact as a person needs: "45 s", "3 min", "2 h 5 min", "3 days". With `exact` (a run's
    time taken), minutes keep their seconds and hours never turn into days: "3 min 5 s", "50 h"."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if exact and rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours >= 48 and not exact:
        return f"{hours // 24} days"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def ago(seconds: float) -> str:
    """How long ago something happened: "45 s ago", "3 min ago"."""
    return f"{duration(seconds)} ago"


SIZE_UNITS = ("KB", "MB", "GB", "TB", "PB")


def file_size(count: float) -> str:
    """A number of bytes in the words of Django's `filesizeformat`, which the templates use, so that a
    size reads the same in a page, a message and the terminal: "1 byte", "512 bytes", "1.5 KB",
    "100.0 MB", with 1 KB = 1024 bytes. (The template filter joins number and unit with a no-break
    space; here it is a plain one, for messages and logs.)"""
    count = int(count)
    sign, count = ("-" if count < 0 else ""), abs(count)
    if count < 1024:
        return f"{sign}{count} byte{'' if count == 1 else 's'}"
    power = 1
    while power < len(SIZE_UNITS) and count >= 1024 ** (power + 1):
        power += 1
    return f"{sign}{round(count / 1024 ** power, 1):.1f} {SIZE_UNITS[power - 1]}"


def colour(channels: int) -> str:
    """What 1 or 3 channels are called on the pages."""
    return "grayscale" if channels == 1 else "colour"


LARGEST_WHOLE = 2**63 - 1  # what a database integer column holds: a larger id is no row, and would overflow


def whole_number(value, low: int = 0, high: int = LARGEST_WHOLE, clamp: bool = False) -> int | None:
    """`value` (a string a page sent, or an int) as a whole number from `low` to `high`; None when it
    is anything else. Only the digits 0-9 count ("²" and "٣" are digits to str.isdigit, and int()
    would take "+5", "1_000" and " 7 "), and a long string is refused before int() reads it. With
    `clamp`, a number past `high` reads as `high` (an id past any row: nothing comes after it)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    else:
        text = (value or "").strip() if isinstance(value, str) else ""
        if not (text.isascii() and text.isdigit()):
            return None
        if len(text) > len(str(LARGEST_WHOLE)):
            return high if clamp else None
        number = int(text)
    if clamp and number > high:
        return high
    if not low <= number <= high:
        return None
    return number



def page_number(value) -> int:
    """The page of a list that an address asks for: 1 for anything that is not a page number (a page
    past the last one is the last, as Django's paginator shows it)."""
    return whole_number(value, 1, clamp=True) or 1
