"""Settings for the test suite: everything the tests write goes to a fresh temporary
folder, never to the data folder of a running `make run`. Worker processes the
tests start inherit DATA_DIR from this process's environment."""
import os
import tempfile

os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="dlsite-tests-")

from dlsite.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
