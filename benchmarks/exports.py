"""A trained model in every export format, made and checked as the run page's "Make it" makes them
(training_app/exporting.py: written, then loaded in a fresh process by its own runtime and compared
with the original on the run's test pictures), for two real models trained through the worker:

- "digits": the Keras MNIST example's network, 2 epochs on 6,000 MNIST digits (28 x 28, grey);
- "flowers": EfficientNet-Lite0 (its weights come with the site), 5 epochs on the 200-photo sample
  at 128 x 128 (60 of them kept for testing), flipped left-right at random (so the random-change
  layers are in the model).

    .venv/bin/python benchmarks/exports.py [--only digits|flowers]

One JSON line per model and format, "exports": its zip's bytes against the `.keras` file's (the
baseline: size_ratio), seconds to make and check it, and what the check found: the largest
difference of any probability from the original's; for the 8-bit format, its test accuracy against
the original's on the same pictures. No goal but these: every format made and checked, float formats
within 1e-4 of the original, 8 bits within 2 points of its accuracy.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak import mnist_zip  # noqa: E402
from train import ROOT, fresh_site, import_zip, product_run, start_worker, stop_worker  # noqa: E402  (the same harness)

FLOWERS_ZIP = ROOT.parent / "shared" / "data" / "flowers-mini.zip"
MODELS = {
    "digits": {"preset": "small_cnn", "image_size": 28, "channels": 1, "epochs": 2, "batch_size": 64,
               "time_budget_s": 0},
    "flowers": {"preset": "efficientnet_lite0", "image_size": 128, "channels": 3, "epochs": 5, "batch_size": 32,
                "time_budget_s": 0, "augment_flip": "horizontal"},
}


def export_all(run, name):
    from mlcore.formats import FORMATS
    from training_app import exporting
    from training_app.models import ModelExport

    keras_bytes = run.model_path.stat().st_size
    for kind in FORMATS:
        export, _ = ModelExport.request(run, kind)
        started = time.perf_counter()
        exporting.make(ModelExport.objects.claim(export.id))  # claimed, as the task does: its writes are fenced
        seconds = time.perf_counter() - started
        export.refresh_from_db()
        print(json.dumps({
            "name": "exports", "model": name, "format": kind, "status": export.status, "error": export.error,
            "bytes": export.size_bytes, "baseline_keras_bytes": keras_bytes,
            "size_ratio": round(export.size_bytes / keras_bytes, 3) if export.size_bytes else None,
            "seconds": round(seconds, 1), "checked_pictures": export.checked_pictures,
            "max_difference": export.max_difference, "accuracy": export.accuracy,
            "original_accuracy": export.original_accuracy,
        }), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(MODELS))
    args = parser.parse_args()
    data_dir, env, user = fresh_site("bench-exports-")
    worker = start_worker(env, Path(data_dir) / "worker.log")
    try:
        for name, settings in MODELS.items():
            if args.only and name != args.only:
                continue
            if name == "digits":
                source = Path(data_dir) / "digits.zip"
                source.write_bytes(mnist_zip(0, 6000))
            elif FLOWERS_ZIP.is_file():
                source = FLOWERS_ZIP
            else:
                print(json.dumps({"name": "exports", "model": name, "skipped": f"no {FLOWERS_ZIP}"}))
                continue
            dataset = import_zip(user, source, name, **({"test_fraction": 0.3} if name == "flowers" else {}))
            product_run(dataset, user, settings)
            from training_app.models import TrainingRun

            export_all(TrainingRun.objects.filter(dataset=dataset).get(), name)
    finally:
        stop_worker(worker)


if __name__ == "__main__":
    main()
