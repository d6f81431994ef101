"""Putting a model to work: one picture over HTTP through the API, and many pictures as a job.

    .venv/bin/python benchmarks/predict.py [--requests 500] [--clients 16] [--pictures 10000]

Needs PostgreSQL and Redis, as benchmarks/soak.py does (a database of its own there, removed at the
end); the web server and the workers run as `make run` runs them. An MNIST model (the Keras MNIST
example's network, 2 epochs on 6,000 digits) is trained first through the training worker.

Two JSON lines, "predict":
- "one_picture": --requests POSTs of one MNIST test PNG to /api/v1/models/<id>/classify/ with an API
  token, one client after the other (p50, p95), then --clients clients at once (p50, p95,
  requests a second, errors), against the baseline in the same run: the model's own
  `model.predict` on one picture in this process (p50, p95). Goal: one client p50 <= 10 ms and
  p95 <= 25 ms; no errors under concurrency.
- "many_pictures": --pictures MNIST test PNGs as a zip, sent to /api/v1/models/<id>/classifications/:
  pictures a second from the upload's answer to the job's end, against the plain loop in this
  process (read each file from the zip, decode, resize, `model.predict` in batches of 256) on the same
  files, and the peak memory of the worker process that ran it; --rounds rounds, the two sides taking
  turns, medians (and the first job's time: its worker process loads the model then). Goal: the job
  takes at most 1.5 times as long as the plain loop.
"""
import argparse
import http.client
import io
import json
import os
import random
import statistics
import sys
import threading
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak import MNIST_ZIP, Processes, mnist_zip, multipart, own_site, p95  # noqa: E402


def test_pictures(count):
    """(name, bytes) of the first `count` MNIST test pictures, in a fixed shuffled order."""
    with zipfile.ZipFile(MNIST_ZIP) as source:
        names = sorted(n for n in source.namelist() if n.startswith("mnist-png/test/") and n.endswith(".png"))
        random.Random(3).shuffle(names)
        return [(name.split("/")[-1], source.read(name)) for name in names[:count]]


def ms(seconds):
    return round(1000 * seconds, 2)


def post_many(port, path, body, content_type, token, count, times, errors):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(count):
        started = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": content_type,
                                                           "Authorization": f"Bearer {token}"})
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            conn, ok = http.client.HTTPConnection("127.0.0.1", port, timeout=60), False
        times.append(time.perf_counter() - started)
        if not ok:
            errors.append(1)


def one_picture(args, run, token, picture):
    from mlcore.images import load_model_input
    from mlcore.serving import ModelInfo

    path = f"/api/v1/models/{run.id}/classify/"
    body, content_type = multipart({}, {"images": ("digit.png", picture)})
    warm, errors = [], []
    post_many(args.port, path, body, content_type, token, 20, warm, errors)  # the model is loaded and warm
    alone, errors = [], []
    post_many(args.port, path, body, content_type, token, args.requests, alone, errors)
    together, together_errors = [], []
    per_client = max(1, args.requests // args.clients)
    threads = [threading.Thread(target=post_many, args=(args.port, path, body, content_type, token, per_client,
                                                        together, together_errors)) for _ in range(args.clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started

    # Baseline: the model itself, in this process, one picture at a time.
    import keras

    model = keras.models.load_model(run.model_path, compile=False)
    info = ModelInfo.from_json(run.model_path.with_suffix(".json").read_text())
    pixels = load_model_input(picture, info.image_size, info.channels)[None]
    for _ in range(5):
        model.predict(pixels, verbose=0)
    baseline = []
    for _ in range(args.requests):
        begun = time.perf_counter()
        model.predict(pixels, verbose=0)
        baseline.append(time.perf_counter() - begun)
    return {"name": "predict", "figure": "one_picture", "requests": args.requests, "clients": args.clients,
            "p50_ms": ms(statistics.median(alone)), "p95_ms": ms(p95(alone)), "errors_one_client": len(errors),
            "concurrent_p50_ms": ms(statistics.median(together)), "concurrent_p95_ms": ms(p95(together)),
            "concurrent_errors": len(together_errors), "concurrent_per_s": round(len(together) / wall, 1),
            "baseline_p50_ms": ms(statistics.median(baseline)), "baseline_p95_ms": ms(p95(baseline)),
            "ratio_p50": round(statistics.median(alone) / statistics.median(baseline), 2)}


def plain_loop(run, archive_bytes):
    """What the job does, written plainly in this process: seconds for every picture of the zip."""
    import keras
    import numpy as np

    from mlcore.images import load_model_input
    from mlcore.serving import ModelInfo

    model = keras.models.load_model(run.model_path, compile=False)
    info = ModelInfo.from_json(run.model_path.with_suffix(".json").read_text())
    started = time.perf_counter()
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as archive:
        names = [name for name in archive.namelist() if name.endswith(".png")]
        for first in range(0, len(names), 256):
            batch = np.stack([load_model_input(archive.read(name), info.image_size, info.channels)
                              for name in names[first:first + 256]])
            model.predict(batch, verbose=0)
    return time.perf_counter() - started


def peak_memory_mb(root_pid):
    """The largest peak resident memory (VmHWM) among the processes of the group `root_pid` leads."""
    peak = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != root_pid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ProcessLookupError, ValueError):
            continue
    return round(peak / 1024, 1)


def run_job(args, run, token, archive_bytes):
    """Seconds from the zip upload's answer to the classification's end, and the classification."""
    from predict_app.models import Classification

    body, content_type = multipart({}, {"file": ("pictures.zip", archive_bytes)})
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=600)
    conn.request("POST", f"/api/v1/models/{run.id}/classifications/", body=body,
                 headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"})
    answer = conn.getresponse()
    job_id = json.loads(answer.read())["id"]
    started = time.perf_counter()
    while True:
        job = Classification.objects.get(id=job_id)
        if job.is_finished:
            break
        time.sleep(0.05)
    return time.perf_counter() - started, job


def many_pictures(args, run, token, processes):
    """--rounds rounds, the job and the plain loop taking turns (this machine's speed drifts); medians."""
    pictures = test_pictures(args.pictures)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in pictures:
            archive.writestr(name, data)
    archive_bytes = buffer.getvalue()
    job_times, plain_times = [], []
    for _ in range(args.rounds):
        job_s, job = run_job(args, run, token, archive_bytes)
        job_times.append(job_s)
        plain_times.append(plain_loop(run, archive_bytes))
    job_s, plain_s = statistics.median(job_times), statistics.median(plain_times)
    return {"name": "predict", "figure": "many_pictures", "pictures": len(pictures), "rounds": args.rounds,
            "status": job.status, "classified": job.images.exclude(label="").count(),
            "job_seconds": round(job_s, 2), "first_job_seconds": round(job_times[0], 2),
            "job_per_s": round(len(pictures) / job_s, 1), "baseline_seconds": round(plain_s, 2),
            "baseline_per_s": round(len(pictures) / plain_s, 1), "ratio": round(job_s / plain_s, 2),
            "worker_peak_mb": peak_memory_mb(processes.running["default"].pid)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--pictures", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the many-pictures figure")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()

    # API_RATE: the benchmark's one token asks far more than a program would.
    site, why_not = own_site("predict", args.port, API_RATE="1000000/min")
    if why_not:
        print(json.dumps({"name": "predict", "skipped": why_not}))
        return
    env, data_dir, remove = site
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from api_app.models import ApiToken
    from dlsite.celery import app
    from train import import_zip, product_run  # the same harness as the training benchmarks
    from training_app.models import TrainingRun

    call_command("migrate", verbosity=0)
    app.control.purge()
    processes = Processes(env, data_dir)
    try:
        user = get_user_model().objects.create_user("predict", password="a-long-bench-password")
        model_zip = data_dir / "digits.zip"
        model_zip.write_bytes(mnist_zip(0, 6000))
        dataset = import_zip(user, model_zip, name="digits")
        for name in ("default", "training", "web"):
            processes.start(name)
        product_run(dataset, user, {"preset": "small_cnn", "image_size": 28, "channels": 1, "epochs": 2,
                                    "batch_size": 64, "time_budget_s": 0})
        run = TrainingRun.objects.filter(status="succeeded").get()
        token = ApiToken.objects.create_for(user, "benchmark")[1]
        print(json.dumps(one_picture(args, run, token, test_pictures(1)[0][1])), flush=True)
        print(json.dumps(many_pictures(args, run, token, processes)), flush=True)
    finally:
        processes.stop_all()
        from django.db import connections

        connections.close_all()
    remove()


if __name__ == "__main__":
    main()
