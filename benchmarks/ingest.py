"""Ingestion speed and memory against a plain OpenCV decode loop over the same zip.

    .venv/bin/python benchmarks/ingest.py [ZIP] [--rounds N]

ZIP defaults to ../shared/data/mnist-png.zip (70,000 images). Each round runs,
alternately, the baseline (a plain Python loop that reads every entry of the zip
and decodes it with cv2.imdecode into a NumPy array) and the product's ingestion
(the `datasets.ingest_upload` task's code, called in-process as the worker calls
it, on a fresh dataset), each in its own process. `peak_rss_mb` is the ingesting
process's peak plus, for each of its pool processes, the largest pool process's
peak: an upper bound of their sum. The clock for `ready_s` starts once the zip is stored (its
Upload row exists) and stops when the dataset is ready (status "done").

Prints one JSON object: name "ingest", the medians of the rounds (`ratio` is the
median of each round's ready_s / baseline_s), and each round.
The database is a fresh SQLite file in a temporary DATA_DIR unless DATABASE_URL
is set (then use a database you can throw away).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ZIP = ROOT.parent / "shared" / "data" / "mnist-png.zip"


def peak_rss_mb(processes=0):
    """This process's peak resident memory, plus `processes` times the largest of its finished
    children's (the ingestion's pool): an upper bound of their sum."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + processes * child) / 1024  # Linux reports KiB


def baseline(zip_path):
    """The plain loop: every file of the zip decoded by OpenCV into an array."""
    import zipfile

    import cv2
    import numpy as np

    started = time.perf_counter()
    decoded = 0
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            pixels = cv2.imdecode(np.frombuffer(archive.read(info), np.uint8), cv2.IMREAD_UNCHANGED)
            decoded += pixels is not None
    return {"seconds": time.perf_counter() - started, "images": decoded, "peak_rss_mb": peak_rss_mb()}


def ingest(zip_path):
    """The product's path: a stored zip, the ingestion task's code, a dataset that is ready."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dlsite.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.files import File
    from django.core.management import call_command

    from datasets_app.models import Dataset, Upload
    from datasets_app.tasks import ingest as ingest_task

    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="benchmark")
    dataset = Dataset.objects.create(owner=user, name=f"benchmark {time.time()}")
    upload = Upload(dataset=dataset, original_name=Path(zip_path).name)
    with open(zip_path, "rb") as f:
        upload.file.save(Path(zip_path).name, File(f), save=True)  # "zip stored"
    started = time.perf_counter()
    ingest_task(upload.id)
    upload.refresh_from_db()
    seconds = time.perf_counter() - started
    if upload.status != Upload.Status.DONE:
        raise SystemExit(f"ingestion failed: {upload.error}")
    return {"seconds": seconds, "images": upload.accepted, "rejected": upload.rejected,
            "duplicates": upload.duplicates, "conflicts": upload.conflicts,
            "processes": settings.INGEST_PROCESSES, "peak_rss_mb": peak_rss_mb(settings.INGEST_PROCESSES)}


def run_side(side, zip_path, data_dir):
    env = dict(os.environ, DATA_DIR=data_dir)
    result = subprocess.run([sys.executable, __file__, str(zip_path), "--side", side],
                            env=env, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"{side} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("zip", nargs="?", default=str(DEFAULT_ZIP))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--side", choices=["baseline", "ingest"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:  # a child process measuring one side once
        print(json.dumps((baseline if args.side == "baseline" else ingest)(args.zip)))
        return
    if not Path(args.zip).is_file():
        raise SystemExit(f"No zip at {args.zip}; pass the path of a zip of class folders.")

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as data_dir:
        rounds = []
        for _ in range(args.rounds):  # alternate the sides; the machine is noisy
            rounds.append({"baseline": run_side("baseline", args.zip, data_dir),
                           "ingest": run_side("ingest", args.zip, data_dir)})
    ready = statistics.median(r["ingest"]["seconds"] for r in rounds)
    base = statistics.median(r["baseline"]["seconds"] for r in rounds)
    images = rounds[-1]["ingest"]["images"]
    print(json.dumps({
        "name": "ingest",
        "zip": Path(args.zip).name,
        "images": images,
        "ready_s": round(ready, 2),
        "images_per_s": round(images / ready),
        "peak_rss_mb": round(max(r["ingest"]["peak_rss_mb"] for r in rounds)),
        "baseline_s": round(base, 2),
        # Each round's two sides ran back to back, so the ratio is taken per round, then the median.
        "ratio": round(statistics.median(r["ingest"]["seconds"] / r["baseline"]["seconds"] for r in rounds), 2),
        "rounds": [{"ready_s": round(r["ingest"]["seconds"], 2), "baseline_s": round(r["baseline"]["seconds"], 2)}
                   for r in rounds],
        "processes": rounds[-1]["ingest"]["processes"],
        "database": "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite",
    }))


if __name__ == "__main__":
    main()
