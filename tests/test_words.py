"""The plain words for numbers that every page shares (mlcore/words.py)."""
import pytest

from django.template.defaultfilters import filesizeformat

from mlcore.words import LARGEST_WHOLE, ago, colour, count, duration, file_size, whole_number


@pytest.mark.parametrize("n, one, many, expected", [
    (1, "image", None, "1 image"),
    (0, "image", None, "0 images"),
    (1500, "image", None, "1,500 images"),
    (1, "run is", "runs are", "1 run is"),
    (2, "run is", "runs are", "2 runs are"),
])
def test_count(n, one, many, expected):
    assert count(n, one, many) == expected


@pytest.mark.parametrize("seconds, rounded, exact", [
    (-3, "0 s", "0 s"),
    (44.6, "45 s", "45 s"),
    (185, "3 min", "3 min 5 s"),
    (180, "3 min", "3 min"),
    (2 * 3600 + 300, "2 h 5 min", "2 h 5 min"),
    (3 * 3600, "3 h", "3 h"),
    (50 * 3600, "2 days", "50 h"),
])
def test_duration(seconds, rounded, exact):
    assert duration(seconds) == rounded
    assert duration(seconds, exact=True) == exact


def test_colour():
    assert (colour(1), colour(3)) == ("grayscale", "colour")


@pytest.mark.parametrize("value, expected", [
    ("12", 12), (" 7 ", 7), (7, 7), ("0", 0),
    ("", None), (None, None), ("-3", None), ("+5", None), ("1_000", None), ("1.5", None), ("²", None),
    ("٣", None), (True, None), ([], None), (str(LARGEST_WHOLE), LARGEST_WHOLE), (str(LARGEST_WHOLE + 1), None),
    ("9" * 5000, None),
])
def test_whole_number(value, expected):
    assert whole_number(value) == expected


def test_whole_number_bounds():
    assert whole_number("5", 1, 10) == 5
    assert whole_number("0", 1, 10) is None and whole_number("11", 1, 10) is None


def test_whole_number_clamped_reads_a_number_past_the_largest_as_the_largest():
    assert whole_number("9" * 30, clamp=True) == LARGEST_WHOLE
    assert whole_number(str(LARGEST_WHOLE + 1), clamp=True) == LARGEST_WHOLE
    assert whole_number("x", clamp=True) is None


def test_ago():
    assert ago(185) == "3 min ago"


# Sizes around each unit's edges, halves that round to even, and the largest units.
SIZES = [0, 1, 2, 1023, 1024, 1025, 1280, 1331, 1536, 10_000, 1024**2 - 1, 1024**2, int(1.25 * 1024**2),
         2_500_000, 20 * 1024**2, 1024**3 - 1, 4 * 1024**3, 3 * 1024**4, 7 * 1024**5, 1024**6, -1, -2048]


@pytest.mark.parametrize("size, expected", [(1, "1 byte"), (1000, "1000 bytes"), (1280, "1.2 KB"),
                                            (1536, "1.5 KB"), (20 * 1024**2, "20.0 MB"), (4 * 1024**3, "4.0 GB")])
def test_file_size(size, expected):
    assert file_size(size) == expected


def test_file_size_says_what_the_templates_filesizeformat_says():
    for size in SIZES + list(range(0, 5 * 1024**2, 7919)):
        assert file_size(size) == filesizeformat(size).replace("\xa0", " "), size
