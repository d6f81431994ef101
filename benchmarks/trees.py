"""Boosted trees on what the network sees, against the network alone and against trees on raw pixels
(the tutorials' "Fine tuning (XGBoost)"; issue 20, part 6).

    .venv/bin/python benchmarks/trees.py [mnist] [flowers] [--per-class N] [--test-per-class M] [--epochs E]

With no data named (as `make bench` runs it), both: all of MNIST, then the flowers.

mnist: ../shared/data/mnist-png.zip (its own test folder is the test split); --per-class keeps the first
N training and M test pictures of each digit (a zip made in the data folder), for a quick figure on a
small machine. flowers: ../shared/data/flowers-train.zip with a stratified, seeded 20 % held out as
test and 10 % as validation, as benchmarks/photos.py imports it.

The network is trained through the product, as the "Train" button trains it (benchmarks/train.py's
press_train: the suggested settings, with --epochs when given, by a training worker started as
supervisord.conf starts it). The trees are then fitted by the product's own job code
(training_app.tasks.fit_trees, run in this process): the features of train, validation and test
through the saved model, XGBoost stopped on the validation features, and XGBoost on the raw pixels
made 16 x 16. One JSON line: the three test accuracies, the two validation ones (which choose), the
network's seconds from the button to the saved model, and the trees job's seconds.
The data folder is removed at the end (kept when something failed).
"""
import argparse
import json
import shutil
import subprocess
import sys
import time
import zipfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import ROOT, fresh_site, import_zip, product_run, start_worker, stop_worker  # noqa: E402  (the same harness)

ZIPS = {"mnist": ROOT.parent / "shared" / "data" / "mnist-png.zip",
        "flowers": ROOT.parent / "shared" / "data" / "flowers-train.zip"}


def mnist_subset(source: Path, target: Path, per_class: int, test_per_class: int) -> Path:
    """The first `per_class` training and `test_per_class` test pictures of each digit, as a zip of the
    same layout (mnist-png/<train|test>/<digit>/<n>.png)."""
    kept, wanted = defaultdict(int), {"train": per_class, "test": test_per_class}
    with zipfile.ZipFile(source) as whole, zipfile.ZipFile(target, "w") as part:
        for info in whole.infolist():
            parts = info.filename.split("/")
            if info.is_dir() or len(parts) != 4 or parts[1] not in wanted:
                continue
            key = (parts[1], parts[2])
            if kept[key] < wanted[parts[1]]:
                kept[key] += 1
                part.writestr(info.filename, whole.read(info))
    return target


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="*", help=f"any of {', '.join(sorted(ZIPS))} (default: all)")
    parser.add_argument("--per-class", type=int, default=0, help="mnist: training pictures a digit (0: all)")
    parser.add_argument("--test-per-class", type=int, default=200, help="mnist with --per-class: test pictures a digit")
    parser.add_argument("--epochs", type=int, default=0, help="the network's epochs (0: as suggested)")
    args = parser.parse_args()
    unknown = set(args.data) - set(ZIPS)
    if unknown:
        parser.error(f"unknown data: {', '.join(sorted(unknown))} (choose from {', '.join(sorted(ZIPS))})")
    if len(args.data) == 1:
        measure(args.data[0], args)
        return
    # Each in a process of its own: Django's settings (the data folder, the database) are fixed once set up.
    flags = [flag for flag in sys.argv[1:] if flag not in ZIPS]
    for name in args.data or sorted(ZIPS, reverse=True):  # mnist first
        subprocess.run([sys.executable, __file__, name, *flags], check=True)


def measure(name, args):
    """Train the network on `name` through the product, fit the trees, print the line."""
    data_dir, env, user = fresh_site(f"bench-trees-{name}-")
    zip_path = ZIPS[name]
    if name == "mnist" and args.per_class:
        zip_path = mnist_subset(zip_path, Path(data_dir) / "mnist-subset.zip", args.per_class, args.test_per_class)
    extra = {"test_fraction": 0.2, "val_fraction": 0.1} if name == "flowers" else {}
    dataset = import_zip(user, zip_path, name, **extra)
    worker = start_worker(env, Path(data_dir) / "worker.log")
    try:
        network = product_run(dataset, user, {"epochs": args.epochs} if args.epochs else {})
    finally:
        stop_worker(worker)

    from training_app.models import TrainingRun, TreesTrial
    from training_app.tasks import fit_trees

    run = TrainingRun.objects.filter(dataset=dataset).latest("id")
    trial, _ = TreesTrial.request(run)
    started = time.monotonic()
    fit_trees(trial.id)  # the worker's task, in this process
    trees_seconds = time.monotonic() - started
    trial.refresh_from_db()
    if trial.status != TreesTrial.Status.READY:
        raise SystemExit(f"the trees failed: {trial.error} (data folder kept: {data_dir})")

    def r(value):
        return None if value is None else round(value, 4)

    print(json.dumps({
        "name": f"trees_{name}", "zip": Path(zip_path).name,
        "subset": ({"per_class": args.per_class, "test_per_class": args.test_per_class}
                   if name == "mnist" and args.per_class else None),
        "network_test_accuracy": r(trial.network_test), "trees_test_accuracy": r(trial.trees_test),
        "pixels_trees_test_accuracy": r(trial.pixels_test),
        "network_val_accuracy": r(trial.network_val), "trees_val_accuracy": r(trial.trees_val),
        "trees_rounds": trial.rounds, "trees_fit_seconds": round(trial.seconds, 1),
        "network_seconds": round(network["seconds"], 1), "trees_job_seconds": round(trees_seconds, 1),
        "train_images": run.train_count, "val_images": trial.val_count, "test_images": trial.test_count,
        "epochs_run": len(network["epoch_seconds"]), "preset": run.preset, "image_size": run.image_size,
    }))
    shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
