"""dlsite/storage.py on both kinds of storage: the local folder and a real S3 endpoint (moto's server)."""
import multiprocessing
import os
import time

import pytest

from dlsite import storage
from dlsite.settings import bucket_options

from . import s3


@pytest.fixture(params=["folder", "bucket"])
def kept(request, settings, tmp_path):
    """Each test runs once on a local folder and once on a bucket."""
    if request.param == "folder":
        return s3.use_folder(settings, tmp_path / "media")
    return s3.use_bucket(settings, request.getfixturevalue("s3_endpoint"), tmp_path)


def test_a_file_saved_replaces_what_was_kept_under_its_name(kept):
    assert storage.save_bytes("models/1/model.json", b"first") == "models/1/model.json"
    assert storage.save_bytes("models/1/model.json", b"second") == "models/1/model.json"
    assert storage.read_bytes("models/1/model.json") == b"second"
    assert [k.name for k in storage.listing("models")] == ["models/1/model.json"]
    assert [k.name for k in storage.listing("")] == ["models/1/model.json"]  # the top lists everything
    with pytest.raises(ValueError):
        storage.delete_folder("")


def test_folders_are_kept_listed_fetched_and_removed_whole(kept, tmp_path):
    made = tmp_path / "made"
    (made / "inner").mkdir(parents=True)
    (made / "a.npy").write_bytes(b"a" * 10)
    (made / "inner" / "b.txt").write_bytes(b"bb")
    assert storage.save_folder(made, "packs/p1") == ["packs/p1/a.npy", "packs/p1/inner/b.txt"]
    assert sorted((k.name, k.size) for k in storage.listing("packs")) == [("packs/p1/a.npy", 10), ("packs/p1/inner/b.txt", 2)]
    assert storage.folder_exists("packs/p1") and not storage.folder_exists("packs/p2")
    local = storage.local_folder("packs/p1")
    assert (local / "a.npy").read_bytes() == b"a" * 10 and (local / "inner" / "b.txt").read_bytes() == b"bb"
    storage.delete_folder("packs/p1")
    assert list(storage.listing("packs")) == []


def test_a_missing_file_is_said_so(kept):
    with pytest.raises(FileNotFoundError):
        storage.local_path("models/404/model.keras")


def test_names_that_climb_out_are_refused(kept):
    with pytest.raises(ValueError):
        storage.save_bytes("../outside.txt", b"x")


def test_a_bucket_file_is_fetched_once_into_the_host_cache(settings, s3_endpoint, tmp_path):
    bucket = s3.use_bucket(settings, s3_endpoint, tmp_path)
    storage.save_bytes("models/7/model.keras", b"weights")
    path = storage.local_path("models/7/model.keras")
    assert path.name == "model.keras" and path.read_bytes() == b"weights"
    assert str(path).startswith(str(tmp_path / "cache"))
    # Gone from the bucket: the cached copy still serves (nothing is fetched again).
    s3.client(s3_endpoint).delete_object(Bucket=bucket, Key="models/7/model.keras")
    assert storage.local_path("models/7/model.keras").read_bytes() == b"weights"
    # Signed, short-lived URLs only: the bucket is private.
    url = storage.signed_url("models/7/model.keras")
    assert "Signature" in url and "Expires" in url


def test_the_host_cache_removes_the_least_recently_used_beyond_its_cap(settings, s3_endpoint, tmp_path):
    s3.use_bucket(settings, s3_endpoint, tmp_path)
    settings.LOCAL_CACHE_MAX_GB = 2500 / 1024**3  # room for two files of 1,000 bytes
    for name in ("a", "b", "c"):
        storage.save_bytes(f"files/{name}", name.encode() * 1000)
    first = storage.local_path("files/a")
    time.sleep(0.02)
    second = storage.local_path("files/b")
    time.sleep(0.02)
    storage.local_path("files/a")  # used again: now b is the least recently used
    time.sleep(0.02)
    third = storage.local_path("files/c")
    assert first.exists() and third.exists() and not second.exists()
    assert storage.local_path("files/b").read_bytes() == b"b" * 1000  # fetched again when wanted


def _fetch_in_another_process(cache_dir, name, queue):
    # A fresh process, as a second worker on the host would be.
    import django
    django.setup()
    from django.conf import settings as s
    s.LOCAL_CACHE_DIR = cache_dir
    queue.put(str(storage.local_path(name)))


def test_two_processes_wanting_the_same_file_get_one_copy(settings, s3_endpoint, tmp_path):
    bucket = s3.use_bucket(settings, s3_endpoint, tmp_path)
    storage.save_bytes("packs/big/train_x.npy", os.urandom(3_000_000))
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    env = {"STORAGE_URL": s3.storage_url(s3_endpoint, bucket), **s3.CREDENTIALS}
    old = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        processes = [context.Process(target=_fetch_in_another_process, args=(tmp_path / "cache", "packs/big/train_x.npy", queue))
                     for _ in range(2)]
        for process in processes:
            process.start()
        paths = {queue.get(timeout=60), queue.get(timeout=60)}
        for process in processes:
            process.join(30)
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert len(paths) == 1
    entries = storage.host_cache().entries()
    assert len(entries) == 1 and entries[0][1] == 3_000_000
    assert not any((tmp_path / "cache" / "partial").iterdir())  # no download left half-way


def test_storage_url_gives_private_bucket_options():
    options = bucket_options("s3://photos?endpoint_url=http://minio:9000&region_name=eu-west-1&location=site/")
    assert options["bucket_name"] == "photos" and options["endpoint_url"] == "http://minio:9000"
    assert options["region_name"] == "eu-west-1" and options["location"] == "site"
    assert options["default_acl"] is None and options["querystring_auth"] is True and options["file_overwrite"] is False
    with pytest.raises(Exception, match="s3://"):
        bucket_options("http://photos")


def test_healthz_says_when_the_bucket_cannot_be_reached(client, settings, s3_endpoint, tmp_path, admin_user):
    from django.core.cache import cache

    s3.use_bucket(settings, s3_endpoint, tmp_path)
    client.force_login(admin_user)
    cache.clear()
    assert client.get("/healthz").json()["storage"] == "ok"
    settings.STORAGES = {**settings.STORAGES, "default": {**settings.STORAGES["default"], "OPTIONS": {
        **settings.STORAGES["default"]["OPTIONS"], "bucket_name": "no-such-bucket"}}}
    cache.clear()
    answer = client.get("/healthz")
    assert answer.status_code == 503 and answer.json()["status"] == "degraded"
    assert answer.json()["storage"].startswith("error")


def test_what_a_killed_download_left_is_swept(settings, s3_endpoint, tmp_path):
    s3.use_bucket(settings, s3_endpoint, tmp_path)
    cache = storage.host_cache()
    left = cache.scratch_folder()
    (left / "half.npy").write_bytes(b"x")
    fresh = cache.scratch_folder()  # another process's, still at work
    old = time.time() - storage.PARTIAL_STALE_S - 60
    os.utime(left, (old, old))
    storage.save_bytes("files/a", b"a")
    storage.local_path("files/a")
    assert not left.exists() and fresh.exists()


def test_a_cached_copy_removed_by_its_user_is_fetched_again(settings, s3_endpoint, tmp_path):
    s3.use_bucket(settings, s3_endpoint, tmp_path)
    storage.save_bytes("weights/w.h5", b"good")
    path = storage.local_path("weights/w.h5")
    (path.parent / "w.h5.checked").write_text("4")  # a note beside it, as the weights' check leaves
    path.unlink()  # found damaged
    assert storage.local_path("weights/w.h5").read_bytes() == b"good"
    assert not (path.parent / "w.h5.checked").exists()  # the damaged entry went whole
