"""Many kept files moved at once between this host and the storage (dlsite/storage.py): the files of
an upload's batch, an ingestion's new images, a staged folder a worker reads.

With a bucket each file is a request of its own, so a few go at once, from threads (boto3 clients
are thread-safe; django-storages keeps one connection per thread and storage). With the local
folder they go one after another through dlsite/storage.py, as before: no thread would make a disk
faster.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from django.core.files import File
from storages.utils import clean_name

from dlsite import storage

THREADS = 8  # requests to the bucket at once
SMALL = 8 * 1024**2  # boto3's multipart threshold: a file up to this size goes in one PUT


class Transfers:
    """One set of threads and one bucket connection each, for many files; a context manager. Each
    method returns once every file it was given is moved, raising the first failure."""

    def __init__(self, threads: int = THREADS):
        self.threads = threads
        self._pool = None
        self._bucket = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # Keeping files

    def save_files(self, pairs: list[tuple[Path, str]], move: bool = False) -> None:
        """Keep each local file under its storage name, replacing what was there; `move`: the local
        file goes (with the local folder it is renamed into place, no copy)."""
        if storage.is_local():
            for local, name in pairs:
                storage.save_file(local, name, move=move)
            return
        self._each(lambda pair: self._put_file(*pair, move), pairs)

    def save_uploaded(self, pairs: list[tuple[object, str]]) -> None:
        """Keep each uploaded file (Django's UploadedFile, or any File) under its storage name."""
        if storage.is_local():
            for uploaded, name in pairs:
                _save_local_uploaded(uploaded, name)
            return

        def put(pair):
            uploaded, name = pair
            uploaded.seek(0)
            if uploaded.size <= SMALL:
                self._put_small(name, uploaded.read())
            else:
                self._replacing().save(name, File(uploaded, name=name))
        self._each(put, pairs)

    def copy_kept(self, pairs: list[tuple[str, str]]) -> list[int]:
        """Keep a copy of each kept file (source name, new name); their sizes."""
        def copy(pair):
            source, name = pair
            if storage.is_local():
                storage.save_file(storage.local_path(source), name)
                return storage.local_path(name).stat().st_size
            data = storage.read_bytes(source)
            self._put_small(name, data)
            return len(data)
        if storage.is_local():
            return [copy(pair) for pair in pairs]
        return self._each(copy, pairs)

    # Fetching files

    def fetch_files(self, pairs: list[tuple[str, Path]]) -> None:
        """Copy each kept file (storage name) to a local path of this host (a scratch folder's: the
        caller removes them), not through the host cache, for files read once."""
        if storage.is_local():
            for name, local in pairs:
                storage.copy_to_host(name, local)
            return
        self._each(lambda pair: storage.copy_to_host(*pair), pairs)

    # The threads

    def _each(self, work, items) -> list:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="transfers")
            self._replacing()  # made here, not by two threads at once
        futures = [self._pool.submit(work, item) for item in items]
        return [future.result() for future in futures]

    def _replacing(self):
        """The bucket's storage, writing over a name as asked (the site's refuses to: file_overwrite).
        _put_small and fetch_files use two of its private helpers (_normalize_name: the object's key
        under the storage's location; _get_write_parameters: its content type and ACL), so that
        their objects are exactly those its save() would make."""
        if self._bucket is None:
            self._bucket = storage.replacing_bucket()
        return self._bucket

    def _put_file(self, local: Path, name: str, move: bool) -> None:
        with open(local, "rb") as handle:
            if os.fstat(handle.fileno()).st_size <= SMALL:
                self._put_small(name, handle.read())
            else:
                self._replacing().save(name, File(handle, name=name))
        if move:
            Path(local).unlink(missing_ok=True)

    def _put_small(self, name: str, data: bytes) -> None:
        """One PUT, as the storage's save() makes it (the same key, content type and ACL) but without
        boto3's transfer manager, which starts threads of its own for every file: a third of the time
        a small picture takes (measured on moto's server: 2,000 small files in 18 s through save(), 10 s so)."""
        bucket = self._replacing()
        key = bucket._normalize_name(clean_name(name))
        bucket.connection.meta.client.put_object(Bucket=bucket.bucket_name, Key=key, Body=data,
                                                 **bucket._get_write_parameters(key))


def _save_local_uploaded(uploaded, name: str) -> None:
    path = getattr(uploaded, "temporary_file_path", None)
    if path is not None:  # a large upload Django wrote to a temporary file: copied, not read into memory
        storage.save_file(path(), name)
        return
    uploaded.seek(0)
    storage.save_bytes(name, b"".join(uploaded.chunks()))
