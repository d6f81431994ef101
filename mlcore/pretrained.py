"""Keras' own ImageNet weights files for the transfer-learning bases: what they are, and getting them safely.

`CATALOGUE` is the one place that says, for each downloadable base, where Keras publishes its
"no top" weights file, under which name, and how the file is checked. Both ways a file can arrive
(the download, and an upload by someone who fetched it elsewhere) go through `store_verified`:
the bytes go to a temporary file in the weights folder, hashed as they stream, and only a file
that passes every check (its size, its hash where one is known, and the HDF5 signature every .h5
file starts with) is moved into place with `os.replace`. Anything else is deleted and the
reason raised as `WeightsRefused`, in plain words. A half-written or wrong file never sits under
the name the training workers load.

No Django here: the management command, the Celery task and the staff page call these functions
with the folder and the URL base from the settings.

What is pinned, and where it comes from (never a made-up digest):

- EfficientNetB0: the MD5 that Keras itself checks the file against (`WEIGHTS_HASHES["b0"][1]` in
  keras/src/applications/efficientnet.py; Keras' `get_file` takes a 32-character hash as MD5). No
  published SHA-256 of this file could be found.
- MobileNetV2: Keras downloads it with no hash at all (keras/src/applications/mobilenet_v2.py), and
  no published hash of it could be found. Only its size is checked.
- Sizes: the byte counts Keras' own download progress prints for these addresses
  ("9406464/9406464", "16705208/16705208"), the same in many public logs.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .builder import BASES

# Where Keras publishes its applications' weights; PRETRAINED_WEIGHTS_URL replaces it (a mirror,
# or a local server in the tests). Each file's `path` is relative to it.
DEFAULT_URL_BASE = "https://storage.googleapis.com/"
CHUNK_BYTES = 256 * 1024
# Every HDF5 file (Keras' .h5 weights files are HDF5) starts with this signature, at byte 0 or
# after a user block of 512, 1024, 2048... bytes (the HDF5 file format specification, "Superblock").
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
HDF5_SIGNATURE_OFFSETS = (0, 512, 1024, 2048)
TIMEOUT_S = 30  # for connecting and for each read; a stalled transfer fails instead of hanging

Progress = Callable[[int, "int | None"], None]  # (bytes so far, bytes in all or None when unknown)


@dataclass(frozen=True)
class WeightsFile:
    base: str  # the key in mlcore.builder.BASES
    path: str  # under the URL base
    algorithm: str | None  # "sha256", "md5", or None where no hash of the file is known
    digest: str | None  # lowercase hex
    size: int | None  # bytes
    source: str  # where the check comes from, for the people who run the site

    @property
    def file_name(self) -> str:
        return BASES[self.base].weights_file

    @property
    def label(self) -> str:
        return BASES[self.base].label

    def url(self, url_base: str | None = None) -> str:
        return (url_base or DEFAULT_URL_BASE).rstrip("/") + "/" + self.path

    def check_text(self) -> str:
        """How a file is checked, for the staff page and the README."""
        parts = []
        if self.digest:
            parts.append(f"{self.algorithm.upper()} {self.digest}")
        else:
            parts.append("no published checksum")
        if self.size:
            parts.append(f"{self.size:,} bytes")
        return ", ".join(parts)


CATALOGUE = {
    "mobilenetv2": WeightsFile(
        "mobilenetv2",
        "tensorflow/keras-applications/mobilenet_v2/" + BASES["mobilenetv2"].weights_file,
        None, None, 9_406_464,
        "Keras downloads this file without checking any hash, and none is published; only its size "
        "(as Keras' own download reports it) is checked.",
    ),
    "efficientnetb0": WeightsFile(
        "efficientnetb0",
        "keras-applications/" + BASES["efficientnetb0"].weights_file,
        "md5", "50bc09e76180e00e4465e1a485ddc09d", 16_705_208,
        "The MD5 is the one Keras itself checks this file against (keras/src/applications/efficientnet.py, "
        "WEIGHTS_HASHES); no SHA-256 of it is published.",
    ),
}


class WeightsRefused(Exception):
    """The file was not kept; the message says why in plain words."""


def target_path(entry: WeightsFile, folder) -> Path:
    return Path(folder) / entry.file_name


def store_verified(chunks: Iterable[bytes], entry: WeightsFile, folder, on_progress: Progress | None = None,
                   total: int | None = None, what: str = "The file") -> Path:
    """Write `chunks` to the weights folder as the base's weights file, if they pass its checks.

    The bytes go to a temporary file in the same folder while they are hashed; the file is moved
    into place only when the size and the hash match, so a cut connection or a wrong file leaves
    nothing behind (and an earlier good file stays as it was). Raises WeightsRefused.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hasher = hashlib.new(entry.algorithm) if entry.algorithm else None
    expected_total = total or entry.size
    head = b""  # the first bytes, for the HDF5 signature
    handle = tempfile.NamedTemporaryFile(dir=folder, prefix=f".{entry.file_name}.", suffix=".part", delete=False)
    temporary = Path(handle.name)
    try:
        done = 0
        with handle:
            if on_progress:
                on_progress(0, expected_total)
            for chunk in chunks:
                handle.write(chunk)
                if len(head) < HDF5_SIGNATURE_OFFSETS[-1] + len(HDF5_SIGNATURE):
                    head += chunk[:4096]
                if hasher:
                    hasher.update(chunk)
                done += len(chunk)
                if entry.size and done > entry.size:
                    raise WeightsRefused(
                        f"{what} is bigger than {entry.label}'s weights file ({entry.size:,} bytes): it is "
                        "not that file, so it was not kept.")
                if on_progress:
                    on_progress(done, expected_total)
            handle.flush()
            os.fsync(handle.fileno())
        if total and done != total:
            raise WeightsRefused(f"{what} was cut short: {done:,} of {total:,} bytes arrived. Nothing was kept; "
                                 "try again.")
        if not is_hdf5(head):
            raise WeightsRefused(f"{what} is not a Keras weights file (an HDF5 file, .h5), so it was not kept.")
        if entry.size and done != entry.size:
            raise WeightsRefused(
                f"{what} has {done:,} bytes, but {entry.label}'s weights file has {entry.size:,}: it is not "
                "that file (or it is incomplete), so it was not kept.")
        if hasher and hasher.hexdigest() != entry.digest:
            raise WeightsRefused(
                f"{what} does not match {entry.label}'s weights file: its {entry.algorithm.upper()} checksum is "
                f"{hasher.hexdigest()}, not {entry.digest}. It may be damaged or a different file, so it was "
                "not kept.")
        final = target_path(entry, folder)
        os.chmod(temporary, 0o644)  # a temporary file is private to its owner; the workers read this one
        os.replace(temporary, final)
        return final
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def is_hdf5(head: bytes) -> bool:
    return any(head[offset:offset + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE for offset in HDF5_SIGNATURE_OFFSETS)


def download(url: str, entry: WeightsFile, folder, on_progress: Progress | None = None,
             timeout: float = TIMEOUT_S) -> Path:
    """Download the base's weights file from `url` into `folder`, checked as `store_verified` does.

    Raises WeightsRefused with a plain reason when the server cannot be reached, answers with an
    error, the connection breaks, or the file does not pass its checks.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "dlsite-fetch-pretrained"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (the URL is the operator's)
    except urllib.error.HTTPError as error:
        raise WeightsRefused(f"The server answered “{error.code} {error.reason}” for {url}: the file is not "
                             "there. Nothing was kept.") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise WeightsRefused(f"Could not reach {url} ({reason}). Check this computer's internet connection, "
                             "or upload the file on the Pretrained networks page instead. Nothing was kept.") from None
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None

        def chunks():
            try:
                while chunk := response.read(CHUNK_BYTES):
                    yield chunk
            except (OSError, http.client.HTTPException) as error:  # a reset, a timeout, IncompleteRead
                raise WeightsRefused(f"The connection broke during the download ({type(error).__name__}). "
                                     "Nothing was kept; try again.") from None

        return store_verified(chunks(), entry, folder, on_progress, total=total, what="The download")


def fetch(name: str, folder, url_base: str | None = None, on_progress: Progress | None = None) -> Path:
    """Download the catalogue's file for base `name` into `folder`."""
    entry = CATALOGUE[name]
    return download(entry.url(url_base), entry, folder, on_progress)


def file_matches(entry: WeightsFile, path) -> bool:
    """Whether a file already in place passes its base's checks (the command skips it then)."""
    path = Path(path)
    if not path.is_file() or (entry.size and path.stat().st_size != entry.size):
        return False
    hasher = hashlib.new(entry.algorithm) if entry.algorithm else None
    with path.open("rb") as handle:
        if not is_hdf5(handle.read(4096)):
            return False
        handle.seek(0)
        while hasher and (chunk := handle.read(CHUNK_BYTES)):
            hasher.update(chunk)
    return not hasher or hasher.hexdigest() == entry.digest
