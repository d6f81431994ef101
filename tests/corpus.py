"""A corpus of nasty files and archives, made at test time (nothing is downloaded).

Each `Case` is one kind of bad input. Most are a few nasty files (`nasty`) that are
packed next to the good images of `GOOD` into a zip, sent as a folder, or as loose
images; a few are whole uploads that cannot hold anything else (a `.zip` that is
not a zip, an empty file). `refused` says which entry points refuse the whole upload
with a message (an archive that tries to write outside itself is refused as a whole,
by design: see mlcore/archive.py); everywhere else every good image must be kept.

Names of files that must never appear on disk start with "evil-".
"""
from __future__ import annotations

import io
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from functools import cache
from typing import Callable

from PIL import Image

from tests.images import image_bytes

ZIP, FOLDER, LOOSE, PREDICT, IMPORT = "zip", "folder", "loose", "predict", "import"
ALL = frozenset({ZIP, FOLDER, LOOSE, PREDICT, IMPORT})
ARCHIVES = frozenset({ZIP, IMPORT})  # the entry points that take a zip
SCRIPT = "<script>alert(1)</script>"
IMG_TAG = "<img src=x onerror=alert(1)>"
TINY_FILES = 20_000


@cache
def good_files() -> dict[str, bytes]:
    """Four good, all different pictures in two classes: every one must be kept."""
    return {f"{label}/good-{i}.png": image_bytes(kind, 12, seed=i)
            for i, (label, kind) in enumerate([("cats", "horizontal"), ("cats", "horizontal"),
                                                ("dogs", "vertical"), ("dogs", "vertical")])}


@dataclass
class Entry:
    name: str
    data: bytes = b""
    link: bool = False  # a symbolic link entry (zip) pointing at `data`
    compress: bool = True


@dataclass
class Case:
    id: str
    nasty: list[Entry] | Callable[[], list[Entry]] = field(default_factory=list)  # a function: made when needed
    raw: bytes | None = None  # the whole upload, for uploads that are nothing but the nasty thing
    refused: frozenset = frozenset()  # entry points that refuse the whole upload, with a message
    points: frozenset = ALL  # entry points this case can be sent through
    zip_name: str = "corpus.zip"
    nul_at: list[str] = field(default_factory=list)  # "#" in these names becomes NUL in the zip's bytes

    def entries(self) -> list[Entry]:
        return self.nasty() if callable(self.nasty) else self.nasty

    def zip_bytes(self) -> bytes:
        if self.raw is not None:
            return self.raw
        data = make_zip([Entry(n, d) for n, d in good_files().items()] + self.entries())
        for name in self.nul_at:  # zipfile cuts a name at NUL when writing, so it is put in afterwards
            data = data.replace(name.encode(), name.replace("#", "\x00").encode())
        return data

    def files(self) -> list[tuple[str, bytes]]:
        """The good and nasty files as (relative path, bytes), as a folder holds them."""
        nasty = [(e.name.replace("#", "\x00") if e.name in self.nul_at else e.name, e.data)
                 for e in self.entries() if not e.link]
        return list(good_files().items()) + nasty


def make_zip(entries: list[Entry]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for entry in entries:
            info = zipfile.ZipInfo(entry.name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if entry.compress else zipfile.ZIP_STORED
            if entry.link:
                info.create_system = 3  # Unix, whose mode bits say "link"
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, entry.data)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height pixels (its pixel data is a stub)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _saved(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def animated_gif() -> bytes:
    frames = [Image.new("P", (10, 10), colour) for colour in (1, 50, 200)]
    return _saved(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def png_16_bit() -> bytes:
    return _saved(Image.new("I;16", (10, 10), 40000), "PNG")


def cmyk_jpeg() -> bytes:
    return _saved(Image.new("CMYK", (10, 10), (10, 200, 30, 5)), "JPEG")


def tiny_png(number: int) -> bytes:
    """A 1 x 1 PNG, different for every number below 2**24."""
    return _saved(Image.new("RGB", (1, 1), (number & 255, (number >> 8) & 255, number >> 16)), "PNG")


@cache
def tiny_files() -> list[Entry]:
    return [Entry(f"tiny/{i:05d}.png", tiny_png(i), compress=False) for i in range(TINY_FILES)]


@cache
def bomb_entries() -> list[Entry]:
    """Four 50 MB files of zeros (200 MB), each under the per-file limit, so each is really read:
    deflated they are about 50 KB each, a ratio near 1000:1."""
    zeros = b"\x00" * (50 * 10**6)
    return [Entry(f"cats/evil-bomb-{i}.png", zeros) for i in range(4)]


def nested_zip() -> bytes:
    return make_zip([Entry("inner/cats/evil-nested.png", image_bytes("spot", 12, seed=99))])


def cases() -> list[Case]:
    """Every case, built when called (the big ones are made once and kept)."""
    png = image_bytes("spot", 12, seed=7)
    jpeg = image_bytes("spot", 24, fmt="JPEG", mode="RGB", seed=8)
    same = image_bytes("spot", 12, seed=11)
    long_class = "c" * 250
    return [
        Case("not-a-zip", raw=b"This is a letter, not a zip archive.\n" * 20, points=ARCHIVES, refused=ARCHIVES),
        Case("empty-file", raw=b"", points=ARCHIVES, refused=ARCHIVES),
        Case("empty-zip", raw=make_zip([]), points=ARCHIVES, refused=ARCHIVES),
        Case("zip-slip", [Entry("../../evil-slip.png", png)], refused=ARCHIVES | {FOLDER}, points=ARCHIVES | {FOLDER}),
        Case("absolute-path", [Entry("/tmp/evil-absolute.png", png)], refused=ARCHIVES | {FOLDER},
             points=ARCHIVES | {FOLDER}),
        Case("backslash-path", [Entry("..\\..\\evil-backslash.png", png)], refused=ARCHIVES | {FOLDER},
             points=ARCHIVES | {FOLDER}),
        Case("symlink-entry", [Entry("cats/evil-link.png", b"/etc/passwd", link=True)], refused=ARCHIVES,
             points=ARCHIVES),
        Case("nested-zip", [Entry("cats/evil-inner.zip", nested_zip())], points=ARCHIVES | {FOLDER}),
        Case("zip-bomb", bomb_entries, points=ARCHIVES),
        Case("png-30000x30000", [Entry("cats/huge.png", png_declaring(30_000, 30_000))]),
        Case("truncated-png", [Entry("cats/truncated.png", png[:len(png) // 2])]),
        Case("truncated-jpeg", [Entry("cats/truncated.jpg", jpeg[:len(jpeg) // 2])]),
        # The predict page answers an empty file in its own row; the other images are classified.
        Case("empty-png", [Entry("cats/empty.png", b"")]),
        Case("html-named-png", [Entry("cats/page.png", f"<html><body>{SCRIPT}</body></html>".encode())]),
        Case("svg-named-png", [Entry("cats/drawing.png",
                                     f'<svg xmlns="http://www.w3.org/2000/svg">{SCRIPT}</svg>'.encode())]),
        Case("animated-gif", [Entry("cats/animated.gif", animated_gif())]),
        Case("png-16-bit", [Entry("cats/sixteen.png", png_16_bit())]),
        Case("cmyk-jpeg", [Entry("cats/cmyk.jpg", cmyk_jpeg())]),
        Case("unicode-names", [Entry("котки/猫-ünïcødé-🐱.png", png)]),
        Case("name-255-chars", [Entry("cats/" + "n" * 251 + ".png", png)]),
        Case("name-1500-chars", [Entry("cats/" + "m" * 1496 + ".png", png)], refused=frozenset({FOLDER})),
        # Two folders that differ only in the middle, the part a shortened name leaves out.
        Case("class-folder-250-chars", [Entry(f"{long_class}/a.png", png),
                                        Entry(f"{long_class[:120]}d{long_class[121:]}/b.png", jpeg)],
             points=ALL - {LOOSE, PREDICT}),
        Case("script-names", [Entry(f"{SCRIPT}/a.png", png), Entry(f"cats/{IMG_TAG}.png", jpeg)]),
        Case("formula-names", [Entry("=1+2/a.png", png), Entry("cats/+cmd.png", jpeg),
                               Entry("cats/-2+3.png", same), Entry("cats/@SUM(A1).png", png_16_bit())],
             points=ALL - {PREDICT}),
        Case("control-characters", [Entry("tab\tclass/a.png", png), Entry("cats/new\nline.png", jpeg)],
             points=ALL - {LOOSE, PREDICT}),
        # A zip reader ends a name at NUL ("cats/evil-nul", not an image); a browser's path is refused.
        Case("nul-in-name", [Entry("cats/evil-nul#.png", png)], nul_at=["cats/evil-nul#.png"],
             refused=frozenset({FOLDER}), points=ARCHIVES | {FOLDER, LOOSE}),
        Case("same-picture-two-classes", [Entry("cats/same.png", same), Entry("dogs/same.png", same)],
             points=ALL - {LOOSE, PREDICT}),
        Case("duplicate-entry-names", [Entry("cats/dup.png", png), Entry("cats/dup.png", jpeg)], points=ARCHIVES),
        Case("duplicate-entry-names-same-bytes", [Entry("cats/dup.png", png), Entry("cats/dup.png", png)],
             points=ARCHIVES),
        Case("hidden-and-system-files", [Entry("__MACOSX/cats/._a.png", b"\x00\x05"),
                                         Entry("cats/.DS_Store", b"\x00"), Entry("cats/Thumbs.db", b"\x00")],
             points=ALL - {PREDICT}),
        Case("zip-name-230-chars", [Entry("cats/plain.png", png)], zip_name="z" * 226 + ".zip", points=ARCHIVES),
        # 480 bytes in UTF-8: too long for a file name on disk, so not one for import_images either.
        Case("zip-name-4-byte-letters", [Entry("cats/plain.png", png)], zip_name="\U00020000" * 120 + ".zip",
             points=frozenset({ZIP})),
        Case("tiny-files-20000", tiny_files, points=ARCHIVES),
    ]


def case_ids(point: str) -> list[str]:
    return [case.id for case in cases() if point in case.points]


def case(case_id: str) -> Case:
    return next(c for c in cases() if c.id == case_id)
