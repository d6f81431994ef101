"""A real S3 endpoint for the tests: moto's standalone server (`moto_server`, an HTTP server on
127.0.0.1 speaking the S3 protocol), and the settings that point the site at a bucket on it."""
import os
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import boto3

MOTO_SERVER = Path(sys.executable).with_name("moto_server")
# moto accepts any key; boto3 needs some.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_server(log_path):
    """An S3 server on a free port of 127.0.0.1; yields its endpoint URL."""
    port = _free_port()
    with open(log_path, "ab") as log:
        process = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start (see {log_path})")
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


def new_bucket(endpoint):
    """A new empty bucket on the server; its name."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    client(endpoint).create_bucket(Bucket=name)
    return name


def client(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                        region_name=CREDENTIALS["AWS_DEFAULT_REGION"])


def storage_url(endpoint, bucket):
    return f"s3://{bucket}?endpoint_url={endpoint}&region_name=us-east-1&addressing_style=path"


def keys(endpoint, bucket, prefix=""):
    pages = client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def use_bucket(settings, endpoint, cache_dir):
    """Point this test's site (pytest-django's `settings`) at a new bucket on `endpoint`, with this
    host's cache in `cache_dir`; the bucket's name."""
    from dlsite.settings import bucket_options
    bucket = new_bucket(endpoint)
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": bucket_options(storage_url(endpoint, bucket))}}
    settings.STORAGE_IS_LOCAL = False
    settings.LOCAL_CACHE_DIR = Path(cache_dir) / "cache"
    return bucket


def use_folder(settings, media_root):
    """Point this test's site at the local folder `media_root` (the default kind of storage)."""
    settings.MEDIA_ROOT = Path(media_root)
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(media_root)}}}
    settings.STORAGE_IS_LOCAL = True


def environment(endpoint, bucket):
    """What a process of the site needs in its environment to keep its files in the bucket."""
    return {**CREDENTIALS, "STORAGE_URL": storage_url(endpoint, bucket)}


os.environ.update({key: os.environ.get(key, value) for key, value in CREDENTIALS.items()})
