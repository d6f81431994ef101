"""What "Train" learns from a handful of photos per class, against a plain baseline on the same photos.

    .venv/bin/python benchmarks/photos_few.py [ZIP] [--sizes 5,10,20] [--picks 3] [--quick]

ZIP defaults to ../shared/data/flowers-train.zip (2,934 flower photos, 5 classes). It is imported as
benchmarks/photos.py imports it (a stratified, seeded 20 % held out as test, 10 % for validation), so
its 587 test photos are the same ones. Then, for each size and each of `--picks` seeds, `size` photos
of each class are picked (seeded) from that dataset's training and validation photos, and a zip is
made as a person would make it to fix the split: train/<class>/... with the picks and test/<class>/...
with the 587 test photos. It is imported as a new dataset (its validation photos are taken out of the
train/ folder, as the site does), and "Train" is pressed with the suggested settings unchanged
(benchmarks/train.py's press_train), timed from the button to the saved model, with a training worker
started as supervisord.conf starts it.

One JSON line per size ("name": "photos_few"):
- per_class, test_accuracy (the median of the picks' runs), seconds (the median of their times),
  each pick's figures in "picks";
- baseline_test_accuracy: frozen EfficientNet-Lite0 features (the pooled 1,280 numbers, at the size and
  resizing the suggested settings use) and scikit-learn's LogisticRegression, fitted on the same picks
  (training and validation photos together) and tested on the same test photos, in this same run; the
  median of the picks.
Goals: 10 per class >= 0.85, 5 per class >= 0.75, each run within 120 s (20 per class: reported).
--quick: 1 epoch per run (a smoke run; its accuracies mean nothing).
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import ROOT, fresh_site, import_zip, product_run, start_worker, stop_worker  # noqa: E402  (the same harness)

DEFAULT_ZIP = ROOT.parent / "shared" / "data" / "flowers-train.zip"
GOALS = {10: 0.85, 5: 0.75}
GOAL_SECONDS = 120


def picked_zip(rows, per_class, seed, folder) -> Path:
    """A zip of `per_class` photos of each class picked with `seed` from the training and validation
    photos of `rows` (a version's manifest) in train/, and every test photo in test/."""
    import numpy as np

    from dlsite import storage

    pool, test = defaultdict(list), []
    for row in sorted(rows, key=lambda row: row["image_id"]):
        (test if row["split"] == "test" else pool[row["label"]]).append(row)
    rng = np.random.default_rng(seed)
    picked = [pool[label][i] for label in sorted(pool) for i in sorted(rng.choice(len(pool[label]), per_class,
                                                                                  replace=False))]
    path = Path(folder) / f"flowers-{per_class}-per-class-pick-{seed}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:  # JPEGs: nothing to gain by deflating
        for split, chosen in (("train", picked), ("test", test)):
            for row in chosen:
                archive.write(storage.local_path(row["file"]), f"{split}/{row['label']}/{row['image_id']}.jpg")
    return path


def baseline(runs):
    """Frozen Lite0 features and a logistic regression, for each run: its pack's training and validation
    photos (the picks) against its test photos. The test photos' features are read once (the same photos
    in every pick, checked by their number and classes)."""
    import keras
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from mlcore.builder import build_model
    from mlcore.packing import load_pack
    from mlcore.serving import predict_batch
    from pretrained_app.weights import weights_folder_for

    trunk, test, accuracies = None, None, []
    for run in runs:
        pack = load_pack(run["pack"])
        (x, y, _), (xv, yv, _), (xt, yt, _) = pack["train"], pack["val"], pack["test"]
        if trunk is None:
            model = build_model(run["spec"], x.shape[1:], int(max(y.max(), yt.max())) + 1,
                                weights_folder_for(run["spec"]))
            pooled = next(layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D))
            trunk = keras.Model(model.input, pooled.output)
        if test is None or len(test[1]) != len(yt) or (np.bincount(test[1]) != np.bincount(yt)).any():
            test = predict_batch(trunk, xt), yt
        features = predict_batch(trunk, np.concatenate([x, xv]))
        fitted = LogisticRegression(max_iter=3000).fit(features, np.concatenate([y, yv]))
        accuracies.append(float((fitted.predict(test[0]) == test[1]).mean()))
    return accuracies


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("zip", nargs="?", default=str(DEFAULT_ZIP))
    parser.add_argument("--sizes", default="5,10,20", help="photos per class, comma-separated")
    parser.add_argument("--picks", type=int, default=3, help="seeded picks of each size (the median is reported)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if not Path(args.zip).is_file():
        raise SystemExit(f"No zip at {args.zip}; pass the path of a zip of class folders.")
    sizes = [int(size) for size in args.sizes.split(",")]

    data_dir, env, user = fresh_site("bench-photos-few-")
    from datasets_app.versions import freeze, manifest_rows

    whole = import_zip(user, args.zip, "flowers", test_fraction=0.2, val_fraction=0.1)  # as photos.py
    rows = manifest_rows(freeze(whole, user))
    zips = tempfile.mkdtemp(prefix="picks-", dir=data_dir)
    results, worker = defaultdict(list), start_worker(env, Path(data_dir) / "worker.log")
    try:
        for per_class in sizes:
            for seed in range(args.picks):
                dataset = import_zip(user, picked_zip(rows, per_class, seed, zips), f"flowers {per_class} a class, "
                                     f"pick {seed}", val_fraction=0.1)
                run = product_run(dataset, user, {"epochs": 1} if args.quick else {})
                results[per_class].append(run | {"seed": seed})
    finally:
        stop_worker(worker)

    for per_class in sizes:
        runs = results[per_class]
        base = baseline(runs)
        accuracy = statistics.median(run["test_accuracy"] for run in runs)
        seconds = statistics.median(run["seconds"] for run in runs)
        goal = GOALS.get(per_class)
        print(json.dumps({
            "name": "photos_few", "zip": Path(args.zip).name, "per_class": per_class,
            "test_accuracy": round(accuracy, 4), "seconds": round(seconds, 1),
            "baseline_test_accuracy": round(statistics.median(base), 4),
            "goal": {"test_accuracy": goal, "seconds": GOAL_SECONDS},
            "met": None if goal is None else (accuracy >= goal and max(run["seconds"] for run in runs) <= GOAL_SECONDS),
            "picks": [{"seed": run["seed"], "test_accuracy": round(run["test_accuracy"], 4),
                       "seconds": round(run["seconds"], 1), "baseline_test_accuracy": round(b, 4),
                       "train_images": run["train_images"], "epochs_run": len(run["epoch_seconds"])}
                      for run, b in zip(runs, base)],
            "test_images": len([row for row in rows if row["split"] == "test"]),
            "settings": runs[0]["settings"], "quick": args.quick,
        }), flush=True)


if __name__ == "__main__":
    main()
