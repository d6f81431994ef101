"""Training on a worker that shares nothing with the site but the database, the broker and a bucket,
against the same training on the local folder.

    .venv/bin/python benchmarks/remote_worker.py [ZIP] [--epochs N] [--rounds R] [--quick]

ZIP defaults to ../shared/data/mnist-png.zip. An S3 server (moto's, on 127.0.0.1) holds the bucket;
Redis on 127.0.0.1 is the broker (database 13). The zip is imported twice into one site: once with
the local folder as storage, once into the bucket. Each side's run is made as the "Train" button
makes it (the small convolutional preset, Adam at 0.001, batch 128, N epochs, as benchmarks/train.py's
"train"), and trained by a worker started as supervisord.conf starts it:

- local: the worker with the site's data folder (the local folder, packs in PACK_DIR);
- remote: the worker with STORAGE_URL set, a data folder of its own, and its host cache in it.

One JSON line, "remote_worker":
- ratio: median over rounds (sides alternating) of the remote run's training images per second over
  the local run's (goal: at least 0.95);
- cold_queue_to_first_batch_s: the first remote run, on an empty folder, with no pack anywhere: it
  fetches the pictures from the bucket, builds the pack and puts it in the bucket before its first
  batch (goal: at most 20 s for 60,000 pictures);
- cold_cache_queue_to_first_batch_s: a remote worker on another empty folder, the pack in the bucket
  (downloaded);
- warm_queue_to_first_batch_s: the median of the rounds' remote runs, whose worker has the pack in
  its cache (goal: at most 6 s); local_queue_to_first_batch_s the same for the local side.
Queue-to-first-batch counts from sending the task to the worker's first progress report; each worker
is started and ready before its task is sent.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import train as train_bench  # noqa: E402 (benchmarks/train.py: the site, the worker, the Train button)

from tests import s3  # noqa: E402 (moto's server and a bucket on it, as the tests use them)

BROKER = "redis://127.0.0.1:6379/13"


@contextmanager
def on_bucket(settings_module, storage_url, cache_dir):
    """This process's site with the bucket as its storage while inside."""
    from django.test import override_settings

    options = settings_module.bucket_options(storage_url)
    with override_settings(STORAGES={**settings_module.STORAGES, "default": {
            "BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options}},
            STORAGE_IS_LOCAL=False, LOCAL_CACHE_DIR=Path(cache_dir)):
        yield


def started_worker(env, log_path, queue_check):
    worker = train_bench.start_worker(env, log_path)
    deadline = time.monotonic() + 120
    while not queue_check():
        if worker.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the worker did not start (log: {log_path})")
        time.sleep(0.5)
    return worker


def training_queue_served():
    from dlsite.celery import app

    replies = app.control.inspect(timeout=1).active_queues() or {}
    return any(queue["name"] == "training" for queues in replies.values() for queue in queues)


def one_run(dataset, user, changes, env, log_path, storage):
    """A worker started for this one run (and stopped after): the run's figures. `storage` is the
    context this process presses Train in (its version's list of pictures is kept there)."""
    worker = started_worker(env, log_path, training_queue_served)
    try:
        with storage():
            return train_bench.product_run(dataset, user, changes)
    finally:
        train_bench.stop_worker(worker)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("zip", nargs="?", default=str(train_bench.DEFAULT_ZIP))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 epoch, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.rounds = 1, 1
    if not Path(args.zip).is_file():
        raise SystemExit(f"No zip at {args.zip}; pass the path of a zip of class folders.")

    work = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    os.environ["CELERY_BROKER_URL"] = BROKER
    with s3.moto_server(work / "moto.log") as endpoint:
        bucket = s3.new_bucket(endpoint)
        storage_url = s3.storage_url(endpoint, bucket)
        data_dir, env, user = train_bench.fresh_site(str(work / "site-"))
        from dlsite import settings as settings_module
        from dlsite.celery import app

        app.control.purge()
        env = dict(env, CELERY_BROKER_URL=BROKER, DATABASE_URL=f"sqlite:///{Path(data_dir) / 'db.sqlite3'}")
        local_dataset = train_bench.import_zip(user, args.zip, name="local folder")
        started = time.monotonic()
        def in_bucket():
            return on_bucket(settings_module, storage_url, work / "site-cache")

        with in_bucket():
            bucket_dataset = train_bench.import_zip(user, args.zip, name="bucket")
        bucket_import_s = time.monotonic() - started

        changes = {"preset": "small_cnn", "image_size": 28, "channels": 1, "epochs": args.epochs, "batch_size": 128,
                   "optimizer": "adam", "learning_rate": 0.001, "lr_schedule": "constant",
                   "early_stopping_patience": 0, "label_smoothing": 0.0, "fine_tune_epochs": 0}

        def remote_env(folder):
            folder.mkdir(parents=True, exist_ok=True)
            return dict(env, **s3.environment(endpoint, bucket), DATA_DIR=str(folder), HOME=str(folder))

        warm_folder = work / "gpu-host-warm"
        cold = one_run(bucket_dataset, user, changes, remote_env(warm_folder), work / "remote-cold.log", in_bucket)
        cold_cache = one_run(bucket_dataset, user, changes, remote_env(work / "gpu-host-empty"),
                             work / "remote-cold-cache.log", in_bucket)
        # The local side's pack is built once before the rounds, as the remote side's was.
        one_run(local_dataset, user, changes, env, work / "local-first.log", nullcontext)
        rounds = []
        for number in range(args.rounds):
            sides = [("local", local_dataset, env, nullcontext),
                     ("remote", bucket_dataset, remote_env(warm_folder), in_bucket)]
            if number % 2:
                sides.reverse()
            results = {name: one_run(dataset, user, changes, side_env, work / f"{name}-{number}.log", storage)
                       for name, dataset, side_env, storage in sides}
            rounds.append(results)
    rates = [{side: r[side]["train_images"] * args.epochs / sum(r[side]["epoch_seconds"]) for side in r} for r in rounds]
    print(json.dumps({
        "name": "remote_worker",
        "zip": Path(args.zip).name,
        "train_images": rounds[0]["remote"]["train_images"],
        "epochs": args.epochs,
        "samples_per_s": round(statistics.median(r["remote"] for r in rates)),
        "local_samples_per_s": round(statistics.median(r["local"] for r in rates)),
        "ratio": round(statistics.median(r["remote"] / r["local"] for r in rates), 3),
        "cold_queue_to_first_batch_s": round(cold["queue_to_first_batch_s"], 2),
        "cold_cache_queue_to_first_batch_s": round(cold_cache["queue_to_first_batch_s"], 2),
        "warm_queue_to_first_batch_s": round(statistics.median(r["remote"]["queue_to_first_batch_s"] for r in rounds), 2),
        "local_queue_to_first_batch_s": round(statistics.median(r["local"]["queue_to_first_batch_s"] for r in rounds), 2),
        "test_accuracy": round(statistics.median(r["remote"]["test_accuracy"] for r in rounds), 4),
        "local_test_accuracy": round(statistics.median(r["local"]["test_accuracy"] for r in rounds), 4),
        "bucket_import_s": round(bucket_import_s, 1),
        "rounds": [{side: {"samples_per_s": round(rate[side]),
                           "queue_to_first_batch_s": round(r[side]["queue_to_first_batch_s"], 2)} for side in r}
                   for r, rate in zip(rounds, rates)],
        "quick": args.quick,
    }))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
