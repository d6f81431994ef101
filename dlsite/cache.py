"""The "shared" cache on one machine: Django's file cache, with add() and incr() made atomic. Django's
incr() there is a read and then a write, so two web processes counting at the same moment both read 5
and both write 6: four clients at 1200/min got about 20 % more requests through. Here both hold an
exclusive lock on one file of the cache folder while they read and write; each takes microseconds, so
the one-picture API stays fast. With Redis (settings.CACHES), Redis' own SET NX and INCR do the same
across machines."""
import fcntl
import os
from contextlib import contextmanager

from django.core.cache.backends.filebased import FileBasedCache


class FileCache(FileBasedCache):
    @contextmanager
    def _locked(self):
        os.makedirs(self._dir, exist_ok=True)
        with open(os.path.join(self._dir, "counting.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            yield

    def add(self, key, value, timeout=None, version=None):
        with self._locked():
            return super().add(key, value, timeout, version)

    def incr(self, key, delta=1, version=None):
        with self._locked():
            return super().incr(key, delta, version)
