"""Every file the site keeps goes through here: Django's storage (STORAGES["default"]), which is the
local folder MEDIA_ROOT by default and an S3-compatible bucket when STORAGE_URL is set
(dlsite/settings.py), and this host's local copies of the files that only a path will do for (a
model Keras loads, a pack NumPy maps, a zip read by many processes).

Names are storage names ("models/12/attempt-1/model.keras"), never paths. With the local folder
`local_path` is the file where it is kept; with a bucket it is a copy in this host's cache
(LOCAL_CACHE_DIR), fetched once, capped at LOCAL_CACHE_MAX_GB, the least recently used removed
first, and safe when two processes of one host want the same file at once (a lock per file). The
cache holds only what can be fetched again: a host with an empty disk works.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Iterator

from botocore.exceptions import ClientError
from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage, storages


# A download or scratch folder of this host's cache untouched this long was left by a killed process.
PARTIAL_STALE_S = 6 * 3600


@dataclass(frozen=True)
class Kept:
    """One kept file, as a listing gives it."""
    name: str
    size: int
    modified: datetime


def is_local() -> bool:
    """Whether kept files are in this machine's folder (every process reads them where they are)."""
    return settings.STORAGE_IS_LOCAL


def _clean(name: str) -> str:
    name = str(PurePosixPath(str(name).replace(os.sep, "/")))
    if name == ".":  # the top: every kept file
        return ""
    if name.startswith("/") or ".." in PurePosixPath(name).parts:
        raise ValueError(f"Not a storage name: {name!r}")
    return name


# --- writing ---------------------------------------------------------------------------------------

def save_bytes(name: str, data: bytes) -> str:
    """Keep `data` under exactly `name`, replacing what was there."""
    return _save_replacing(_clean(name), ContentFile(data))


def save_file(local: str | Path, name: str, move: bool = False) -> str:
    """Keep the local file `local` under exactly `name`, replacing what was there. `move` lets the
    local folder take the file itself (a rename) instead of a copy."""
    name = _clean(name)
    if is_local():
        target = Path(default_storage.path(name))
        target.parent.mkdir(parents=True, exist_ok=True)
        if move:
            try:
                os.replace(local, target)
                return name
            except OSError:  # another file system: copy instead
                pass
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        shutil.copyfile(local, partial)
        os.replace(partial, target)  # whole or not at all, for a reader at the same moment
        return name
    with open(local, "rb") as handle:
        saved = _save_replacing(name, File(handle))
    if move:
        os.unlink(local)
    return saved


def save_folder(local: str | Path, prefix: str, move: bool = False) -> list[str]:
    """Keep every file under the local folder `local` under `prefix/…` (its relative paths kept);
    the names kept."""
    local, prefix = Path(local), _clean(prefix)
    names = []
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        names.append(save_file(path, f"{prefix}/{path.relative_to(local).as_posix()}", move=move))
    return names


def _save_replacing(name: str, content) -> str:
    if is_local():
        target = Path(default_storage.path(name))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        with open(partial, "wb") as out:
            for chunk in content.chunks():
                out.write(chunk)
        os.replace(partial, target)
        return name
    # The bucket's objects are replaced whole by a PUT; file_overwrite keeps the name as asked.
    return replacing_bucket().save(name, content)


_replacing = {}


def replacing_bucket():
    """The bucket as a storage that writes over an object of the same name: one per settings (a new
    one costs a boto3 session, 260 ms a file when each save made its own)."""
    backend = settings.STORAGES["default"]
    key = repr(backend)
    if key not in _replacing:
        _replacing.clear()
        _replacing[key] = storages.create_storage(
            {**backend, "OPTIONS": {**backend.get("OPTIONS", {}), "file_overwrite": True}})
    return _replacing[key]


# --- reading and listing ---------------------------------------------------------------------------

def exists(name: str) -> bool:
    return default_storage.exists(_clean(name))


def open_kept(name: str, mode: str = "rb"):
    return default_storage.open(_clean(name), mode)


def read_bytes(name: str) -> bytes:
    with open_kept(name) as handle:
        return handle.read()


def listing(prefix: str) -> Iterator[Kept]:
    """Every kept file under `prefix` (a folder's name), at any depth."""
    prefix = _clean(prefix).rstrip("/")
    if is_local():
        root = Path(default_storage.path(prefix))
        base = Path(default_storage.path(""))
        stack = [root]
        while stack:
            try:
                entries = list(os.scandir(stack.pop()))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        stat = entry.stat(follow_symlinks=False)
                        yield Kept(Path(entry.path).relative_to(base).as_posix(), stat.st_size,
                                   datetime.fromtimestamp(stat.st_mtime, timezone.utc))
                except FileNotFoundError:  # removed while listed
                    continue
        return
    location = _location()
    for summary in _bucket().objects.filter(Prefix=f"{location}{prefix}/" if prefix else location):
        yield Kept(summary.key[len(location):], summary.size, summary.last_modified)


def folder_exists(prefix: str) -> bool:
    return next(iter(listing(prefix)), None) is not None


def signed_url(name: str, seconds: int = 300) -> str | None:
    """A short-lived URL a browser may fetch the file from itself, or None with the local folder
    (which is served through the site's views only)."""
    if is_local():
        return None
    return default_storage.url(_clean(name), expire=seconds)


# --- removing --------------------------------------------------------------------------------------

def delete(name: str) -> None:
    default_storage.delete(_clean(name))


def delete_folder(prefix: str) -> None:
    """Remove everything kept under `prefix`."""
    prefix = _clean(prefix).rstrip("/")
    if not prefix:
        raise ValueError("Refusing to remove every kept file")
    if is_local():
        shutil.rmtree(default_storage.path(prefix), ignore_errors=True)
        return
    _bucket().objects.filter(Prefix=f"{_location()}{prefix}/").delete()


def _bucket():
    return default_storage.bucket


def _location() -> str:
    location = (getattr(default_storage, "location", "") or "").strip("/")
    return f"{location}/" if location else ""


# --- this host's copies ----------------------------------------------------------------------------

def local_path(name: str) -> Path:
    """A path on this host holding the kept file `name`: the file itself with the local folder, a
    cached copy with a bucket. FileNotFoundError when nothing is kept under that name."""
    name = _clean(name)
    if is_local():
        path = Path(default_storage.path(name))
        if not path.is_file():
            raise FileNotFoundError(f"No kept file {name}")
        return path
    return host_cache().fetch(name)


def local_folder(prefix: str) -> Path:
    """A folder on this host holding every file kept under `prefix` (see local_path)."""
    prefix = _clean(prefix).rstrip("/")
    if is_local():
        return Path(default_storage.path(prefix))
    return host_cache().fetch_folder(prefix)


def copy_to_host(name: str, path: str | Path) -> None:
    """Copy the kept file `name` to the local `path`, not through the host cache: for a file read
    once (the pictures a pack is built from). FileNotFoundError when nothing is kept under it."""
    name = _clean(name)
    if is_local() and not os.path.isfile(default_storage.path(name)):
        raise FileNotFoundError(f"No kept file {name}")
    _download(name, Path(path))


def host_cache() -> HostCache:
    return HostCache(Path(settings.LOCAL_CACHE_DIR), int(settings.LOCAL_CACHE_MAX_GB * 1024**3))


class HostCache:
    """Copies of kept files on this host's disk, under `root`: one entry folder per kept file or
    kept folder (files/<key>/<base name>, folders/<key>/…, the key a hash of the name). Each entry
    appears whole (downloaded beside it, then renamed into place) under its own lock, so a second
    process wanting it waits for the first's download instead of fetching it again. An entry's
    modification time is when it was last used."""

    def __init__(self, root: Path, max_bytes: int):
        self.root, self.max_bytes = root, max_bytes

    def fetch(self, name: str) -> Path:
        entry = self._entry("files", name)
        target = entry / PurePosixPath(name).name
        # An entry whose file a caller removed (a copy that failed its check) is fetched again.
        self._fill(entry, lambda partial: _download(name, partial / target.name), here=target.is_file)
        return target

    def fetch_folder(self, prefix: str) -> Path:
        def download_all(partial):
            kept = list(listing(prefix))
            if not kept:
                raise FileNotFoundError(f"Nothing kept under {prefix}/")
            for item in kept:
                _download(item.name, partial / item.name[len(prefix) + 1:])

        entry = self._entry("folders", prefix)
        self._fill(entry, download_all)
        return entry

    def _fill(self, entry: Path, download, here=None) -> None:
        """Make sure `entry` is here (`here()`, else the folder exists): the first process to want it
        downloads it (download(partial folder)) and renames it into place whole; one arriving
        meanwhile waits on the lock, then finds it."""
        here = here or entry.is_dir
        if not here():
            with self._lock(entry):
                if not here():
                    partial = self._partial_path()
                    try:
                        download(partial)
                        if entry.exists():  # what is left of a damaged entry
                            os.replace(entry, self._partial_path())
                        os.replace(partial, entry)
                    finally:
                        shutil.rmtree(partial, ignore_errors=True)
            self.trim(keep=entry)
        _touch(entry)

    def adopt_folder(self, local: Path, prefix: str) -> Path:
        """Take a folder this process made (a pack it built) as the cached copy of `prefix`."""
        entry = self._entry("folders", prefix)
        with self._lock(entry):
            if entry.is_dir():
                shutil.rmtree(local, ignore_errors=True)
            else:
                os.replace(local, entry)
        self.trim(keep=entry)
        return entry

    def scratch_folder(self) -> Path:
        """An empty folder on the cache's disk, for something to be built and then adopted."""
        partial = self._partial_path()
        partial.mkdir()
        return partial

    def entries(self) -> list[tuple[Path, int, float]]:
        """(entry folder, bytes, last used) of each entry."""
        found = []
        for kind in ("files", "folders"):
            try:
                children = list(os.scandir(self.root / kind))
            except FileNotFoundError:
                continue
            for child in children:
                try:
                    found.append((Path(child.path), _tree_size(Path(child.path)), child.stat().st_mtime))
                except FileNotFoundError:  # removed meanwhile
                    continue
        return found

    def trim(self, keep: Path | None = None) -> None:
        """Remove the least recently used entries until the cache fits its cap; an entry another
        process is fetching (its lock held) is left. Also what a process killed mid-download left."""
        self._sweep_partial()
        entries = sorted(self.entries(), key=lambda entry: entry[2])
        total = sum(size for _, size, _ in entries)
        for entry, size, _ in entries:
            if total <= self.max_bytes:
                return
            if entry == keep:
                continue
            lock = self._try_lock(entry)
            if lock is None:
                continue
            try:
                # Renamed away first: a reader never finds half an entry.
                doomed = self._partial_path()
                os.replace(entry, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
                total -= size
            except FileNotFoundError:
                pass
            finally:
                lock.close()

    def _sweep_partial(self) -> None:
        """Remove downloads and scratch folders untouched for PARTIAL_STALE_S: a process killed while it
        fetched or built something leaves them behind (a live one keeps writing into its own)."""
        try:
            children = list(os.scandir(self.root / "partial"))
        except FileNotFoundError:
            return
        for child in children:
            try:
                if time.time() - child.stat().st_mtime > PARTIAL_STALE_S:
                    shutil.rmtree(child.path, ignore_errors=True)
            except FileNotFoundError:
                pass

    def _entry(self, kind: str, name: str) -> Path:
        (self.root / kind).mkdir(parents=True, exist_ok=True)
        return self.root / kind / hashlib.sha256(name.encode()).hexdigest()[:32]

    @contextmanager
    def _lock(self, entry: Path):
        handle = self._lock_file(entry)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            handle.close()

    def _try_lock(self, entry: Path):
        handle = self._lock_file(entry)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            handle.close()
            return None

    def _lock_file(self, entry: Path):
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        return open(locks / f"{entry.parent.name}-{entry.name}", "a")

    def _partial_path(self) -> Path:
        (self.root / "partial").mkdir(parents=True, exist_ok=True)
        return self.root / "partial" / uuid.uuid4().hex


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _touch(path: Path) -> None:
    try:
        os.utime(path, (time.time(), time.time()))
    except FileNotFoundError:
        pass


def _download(name: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_local():
        shutil.copyfile(default_storage.path(name), path)
        return
    # One GET, streamed to the disk as it comes (boto3's download_file asks for the size first, and
    # the storage's open() holds the whole file in memory before the first byte is read).
    bucket = _bucket()
    try:
        body = bucket.meta.client.get_object(Bucket=bucket.name, Key=f"{_location()}{name}")["Body"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            raise FileNotFoundError(f"No kept file {name}") from exc
        raise
    with open(path, "wb") as out:
        for chunk in body.iter_chunks(1024 * 1024):
            out.write(chunk)


def check() -> str:
    """"ok", or why the kept files cannot be reached (for /healthz): the folder is missing or not
    writable, or the bucket does not answer (a wrong address, key or name)."""
    try:
        if is_local():
            root = Path(default_storage.path(""))
            root.mkdir(parents=True, exist_ok=True)
            if not os.access(root, os.W_OK):
                return f"error: the folder {root} cannot be written to"
            return "ok"
        _bucket().meta.client.head_bucket(Bucket=_bucket().name)
        return "ok"
    except Exception as exc:  # any failure is reported, not raised
        return f"error: {exc}"
