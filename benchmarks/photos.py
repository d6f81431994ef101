"""What "Train" learns from real photos, against the plain Keras tutorial on the same photos.

    .venv/bin/python benchmarks/photos.py [ZIP] [--only photos|photos_scratch|baseline] [--quick]

ZIP defaults to ../shared/data/flowers-train.zip (2,934 flower photos, 5 classes). It is imported
into a fresh data folder with a stratified, seeded 20 % held out as test (10 % for validation),
and a training worker is started as supervisord.conf starts it. Runs are made as the "Train" button
makes them (benchmarks/train.py's press_train), timed from the button to the saved model.

One JSON line per figure:
- "photos": the suggested settings unchanged (the offline pretrained EfficientNet-Lite0).
  Goal: test_accuracy >= 0.935 within 300 seconds (the figure of issue 19, kept).
- "photos_15min": the same with "About 15 minutes" chosen, and nothing else: the plan that budget buys
  (mlcore.defaults.PHOTO_PLANS: the frozen top, then fine-tuning). Goal: >= 0.95 within 900 seconds.
- "photos_scratch": the best network without pretrained weights, with the settings suggested for
  it (mlcore.defaults.suggest(..., pretrained=False)). Goal: >= 0.80 within 900 seconds, and never
  below the baseline.
Each line carries the baseline of the same run: the Keras image-classification tutorial (Rescaling,
flips, rotation and zoom, three Conv2D/MaxPooling2D blocks of 16, 32 and 64 filters, Dropout 0.2,
Dense 128, Adam, 15 epochs, batch 32, 180 x 180), trained in its own process with plain
`model.fit` on the same training and validation photos and tested on the same test photos.
--quick cuts every side to 1 epoch (a smoke run; its accuracies mean nothing).
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import ROOT, django_setup, fresh_site, import_zip, product_run, start_worker, stop_worker  # noqa: E402  (the same harness)

DEFAULT_ZIP = ROOT.parent / "shared" / "data" / "flowers-train.zip"
BASELINE_SIZE, BASELINE_EPOCHS = 180, 15
GOALS = {"photos": (0.935, 300), "photos_15min": (0.95, 900), "photos_scratch": (0.80, 900)}


def baseline(version_id, epochs):
    """The Keras tutorial's network and training, on the version's own split (a child process)."""
    django_setup()
    import keras
    from keras import layers

    from datasets_app.models import DatasetVersion
    from training_app.runner import load_arrays

    class Size:  # what load_arrays reads of a run: the version and the pictures' size, colour and resizing
        version = DatasetVersion.objects.get(id=version_id)
        image_size, channels, resize_mode = BASELINE_SIZE, 3, "squash"

        @staticmethod
        def record_phase(*args):
            pass

    _, pack = load_arrays(Size)
    (x, y, _), (xv, yv, _), (xt, yt, _) = pack["train"], pack["val"], pack["test"]
    keras.utils.set_random_seed(1337)
    classes = int(y.max()) + 1
    model = keras.Sequential([
        keras.Input((BASELINE_SIZE, BASELINE_SIZE, 3)),
        layers.RandomFlip("horizontal"), layers.RandomRotation(0.1), layers.RandomZoom(0.1),
        layers.Rescaling(1.0 / 255),
        layers.Conv2D(16, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(64, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
        layers.Dropout(0.2), layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dense(classes),
    ])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    started = time.perf_counter()
    model.fit(x.astype("float32"), y, batch_size=32, epochs=epochs, validation_data=(xv.astype("float32"), yv),
              verbose=0)
    _, accuracy = model.evaluate(xt.astype("float32"), yt, batch_size=64, verbose=0)
    return {"test_accuracy": float(accuracy), "seconds": time.perf_counter() - started, "train_images": len(x)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("zip", nargs="?", default=str(DEFAULT_ZIP))
    parser.add_argument("--only", choices=["photos", "photos_15min", "photos_scratch", "baseline"], action="append")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--baseline-version", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=BASELINE_EPOCHS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_version:  # the child process
        print(json.dumps(baseline(args.baseline_version, args.epochs)))
        return
    if not Path(args.zip).is_file():
        raise SystemExit(f"No zip at {args.zip}; pass the path of a zip of class folders.")
    wanted = args.only or ["photos", "photos_15min", "baseline", "photos_scratch"]

    data_dir, env, user = fresh_site("bench-photos-")
    from mlcore.defaults import suggest
    from training_app.forms import TrainingRunForm

    dataset = import_zip(user, args.zip, "flowers", test_fraction=0.2, val_fraction=0.1)

    quick = {"epochs": 1} if args.quick else {}
    scratch = suggest(dataset.training_facts(), pretrained=False)
    scratch_changes = {key: value for key, value in scratch.items()
                       if key not in ("reasons", "model_spec", "augmentation", "use_all_gpus")}
    scratch_changes.update({f"{TrainingRunForm.AUGMENTATION_PREFIX}{name}": value
                            for name, value in scratch["augmentation"].items()})
    results, worker = {}, start_worker(env, Path(data_dir) / "worker.log")
    try:
        for name in wanted:
            if name == "baseline":
                version = dataset.versions.order_by("-id").first()
                if version is None:  # no run yet: freeze one as a run would
                    from datasets_app.versions import freeze
                    version = freeze(dataset, user)
                done = subprocess.run([sys.executable, __file__, "--baseline-version", str(version.id),
                                       "--epochs", str(1 if args.quick else BASELINE_EPOCHS)],
                                      env=env, capture_output=True, text=True, check=False)
                if done.returncode:
                    raise SystemExit(f"baseline failed:\n{done.stderr[-3000:]}")
                results[name] = json.loads(done.stdout.strip().splitlines()[-1])
            elif name == "photos_15min":  # the plan that 15 minutes buy (mlcore.defaults.PHOTO_PLANS)
                results[name] = product_run(dataset, user, {"time_budget_s": 900, **quick})
            else:
                results[name] = product_run(dataset, user, {**(scratch_changes if name == "photos_scratch" else {}),
                                                            **quick})
    finally:
        stop_worker(worker)

    base = results.get("baseline", {})
    for name in ("photos", "photos_15min", "photos_scratch"):
        if name not in results:
            continue
        run, (goal_accuracy, goal_seconds) = results[name], GOALS[name]
        print(json.dumps({
            "name": name, "zip": Path(args.zip).name,
            "test_accuracy": round(run["test_accuracy"], 4), "seconds": round(run["seconds"], 1),
            "baseline_test_accuracy": round(base["test_accuracy"], 4) if base else None,
            "baseline_seconds": round(base["seconds"], 1) if base else None,
            "goal": {"test_accuracy": goal_accuracy, "seconds": goal_seconds},
            "met": run["test_accuracy"] >= goal_accuracy and run["seconds"] <= goal_seconds,
            "train_images": run["train_images"], "epochs_run": len(run["epoch_seconds"]),
            "settings": run["settings"], "phase_results": run.get("phase_results"), "quick": args.quick,
        }))
    if "baseline" in results and len(results) == 1:
        print(json.dumps({"name": "photos_baseline", **{k: round(v, 4) for k, v in base.items()}}))


if __name__ == "__main__":
    main()
