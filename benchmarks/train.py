"""Training speed through the product's worker path, against plain `model.fit` on the same machine.

    .venv/bin/python benchmarks/train.py [ZIP] [--epochs N] [--batch-size B] [--rounds R]

ZIP defaults to ../shared/data/mnist-png.zip. The zip is ingested into a fresh data
folder, then each round alternates:

- product: a run of the small convolutional preset is started as the "Train" button
  does (a frozen dataset version, the `training.train_run` task sent to the broker) and
  trained by a real training worker process started as the Procfile starts it; the
  figures come from the run's rows: epoch times, first-batch time, test accuracy.
- baseline: in its own process, the same network (`make_model("small_cnn")`) and the
  same training images (as in-memory float32 arrays) with plain `model.fit(x, y,
  batch_size=B, epochs=N, validation_data=...)`, timed per epoch by a callback.

samples_per_s = training images x epochs / the epochs' seconds, for both sides; ratio =
product / baseline (goal: at least 1.0). queue_to_first_batch_s is from sending the
task to the first finished batch, with the pack already built by an earlier run (as for
every run after the first on a version); the first round also reports the pack's
building in first_queue_to_first_batch_s. Prints one JSON object, name "train".
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ZIP = ROOT.parent / "shared" / "data" / "mnist-png.zip"


def django_setup():
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dlsite.settings")
    import django

    django.setup()


def baseline(pack_folder, epochs, batch_size):
    """Plain Keras: the same network on in-memory float32 arrays."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    import keras

    from mlcore.models import make_model
    from mlcore.packing import load_pack

    pack = load_pack(pack_folder)
    (x, y, _), (xv, yv, _), (xt, yt, _) = pack["train"], pack["val"], pack["test"]
    x, xv, xt = (a.astype(np.float32) for a in (x, xv, xt))  # raw 0-255: the model's first layer rescales
    keras.utils.set_random_seed(1337)
    model = make_model("small_cnn", x.shape[1:], int(y.max()) + 1)
    model.compile(optimizer=keras.optimizers.Adam(0.001), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

    times = EpochTimes()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, validation_data=(xv, yv), callbacks=[times], verbose=0)
    _, accuracy = model.evaluate(xt, yt, batch_size=256, verbose=0)
    return {"epoch_seconds": times.seconds, "train_images": len(x), "test_accuracy": float(accuracy)}


def start_worker(env, log_path):
    """The training worker exactly as the Procfile starts it."""
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("training:"))
    command = [part.replace("%h", f"bench-{os.getpid()}") for part in shlex.split(line.split(":", 1)[1])]
    command[0] = str(Path(sys.executable).parent / command[0])
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def product_run(dataset, user, epochs, batch_size):
    """One run through the worker; returns its figures."""
    from datasets_app.versions import freeze
    from training_app.models import TrainingRun
    from training_app.runner import pack_folder
    from training_app.tasks import train

    run = TrainingRun.objects.create(owner=user, dataset=dataset, preset="small_cnn", image_size=28, channels=1,
                                     epochs=epochs, batch_size=batch_size, learning_rate=0.001,
                                     version=freeze(dataset, user))
    sent = time.perf_counter()
    train.delay(run.id)
    first_batch = None
    while True:
        run.refresh_from_db()
        if first_batch is None and run.batch > 0:
            first_batch = time.perf_counter() - sent
        if run.is_final:
            break
        time.sleep(0.05)
    if run.status != "succeeded":
        raise SystemExit(f"the run failed: {run.error}")
    seconds = list(run.epoch_metrics.values_list("seconds", flat=True))
    return {"epoch_seconds": seconds, "train_images": run.train_count, "queue_to_first_batch_s": first_batch,
            "test_accuracy": run.test_accuracy, "pack": str(pack_folder(run))}


def samples_per_s(side, epochs):
    return side["train_images"] * epochs / sum(side["epoch_seconds"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("zip", nargs="?", default=str(DEFAULT_ZIP))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline-pack", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_pack:  # a child process: the plain-Keras side, once
        print(json.dumps(baseline(args.baseline_pack, args.epochs, args.batch_size)))
        return
    if not Path(args.zip).is_file():
        raise SystemExit(f"No zip at {args.zip}; pass the path of a zip of class folders.")

    data_dir = tempfile.mkdtemp(prefix="bench-train-")
    os.environ["DATA_DIR"] = data_dir
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="dlsite.settings", PYTHONUNBUFFERED="1")
    django_setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from datasets_app.ingestion import ingest_upload
    from datasets_app.models import Dataset, Upload

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create(username="benchmark")
    dataset = Dataset.objects.create(owner=user, name="benchmark")
    upload = Upload.objects.create(dataset=dataset, kind=Upload.Kind.SERVER, source_path=args.zip,
                                   original_name=Path(args.zip).name, status=Upload.Status.RUNNING)
    ingest_upload(upload)

    worker = start_worker(env, Path(data_dir) / "worker.log")
    try:
        rounds = []
        for number in range(args.rounds):
            product = product_run(dataset, user, args.epochs, args.batch_size)
            result = subprocess.run([sys.executable, __file__, "--baseline-pack", product["pack"],
                                     "--epochs", str(args.epochs), "--batch-size", str(args.batch_size)],
                                    env=env, capture_output=True, text=True, check=False)
            if result.returncode:
                raise SystemExit(f"baseline failed:\n{result.stderr[-3000:]}")
            rounds.append({"product": product, "baseline": json.loads(result.stdout.strip().splitlines()[-1])})
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(30)

    product_rates = [samples_per_s(r["product"], args.epochs) for r in rounds]
    baseline_rates = [samples_per_s(r["baseline"], args.epochs) for r in rounds]
    later = [r["product"]["queue_to_first_batch_s"] for r in rounds[1:]] or [None]
    print(json.dumps({
        "name": "train",
        "zip": Path(args.zip).name,
        "train_images": rounds[0]["product"]["train_images"],
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "samples_per_s": round(statistics.median(product_rates)),
        "baseline_samples_per_s": round(statistics.median(baseline_rates)),
        "ratio": round(statistics.median(p / b for p, b in zip(product_rates, baseline_rates)), 2),
        "queue_to_first_batch_s": round(statistics.median(later), 2) if later[0] is not None else None,
        "first_queue_to_first_batch_s": round(rounds[0]["product"]["queue_to_first_batch_s"], 2),
        "test_accuracy": round(statistics.median(r["product"]["test_accuracy"] for r in rounds), 4),
        "baseline_test_accuracy": round(statistics.median(r["baseline"]["test_accuracy"] for r in rounds), 4),
        "rounds": [{"samples_per_s": round(p), "baseline_samples_per_s": round(b),
                    "epoch_seconds": [round(s, 2) for s in r["product"]["epoch_seconds"]],
                    "baseline_epoch_seconds": [round(s, 2) for s in r["baseline"]["epoch_seconds"]]}
                   for p, b, r in zip(product_rates, baseline_rates, rounds)],
    }))


if __name__ == "__main__":
    main()
