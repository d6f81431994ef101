"""Where the review page's line for likely wrong labels should be (mlcore.label_issues.SHOWN_BELOW), chosen
on held-out data: other flips than the ones benchmarks/label_errors.py measures (its seed is 20), and on
MNIST other digits too.

    .venv/bin/python benchmarks/label_threshold.py [--seeds 3] [--mnist-pictures N] [--only mnist|flowers]

For each data set and each held-out seed: the labels are flipped as label_errors.py flips them (2 % of
MNIST, 3 % of the flowers), the job's out-of-sample probabilities are worked out once, cleanlab's
find_label_issues once, and each candidate line then keeps the suspects whose own label gets less than it.
Features as label_errors.py: for MNIST the "Small convolutional network" trained 2 epochs on the flipped
labels of a seeded sample of N digits (a different sample for each seed); for the flowers the offline
EfficientNet-Lite0's, read once (only 2,934 photos: held out means other flips of the same photos).

One JSON line a (data set, line) with the medians over the seeds of precision, recall and F1, then one
line "label_threshold_choice": the line with the best mean of the two data sets' median F1 among those
that meet both goals on the held-out seeds (MNIST precision and recall >= 0.8, the flowers' >= 0.7),
if any. Look-alike pairs are left out here: they are a separate line (DUPLICATE_SIMILARITY).
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from label_errors import DATA, flip, pretrained_features, quick_run_features, read_zip  # noqa: E402

LINES = [0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 1.0]  # 1.0: every issue cleanlab finds
HELD_OUT_SEEDS = [101, 102, 103, 104, 105]
GOALS = {"mnist": 0.8, "flowers": 0.7}


def scores_by_line(features, noisy, flipped, class_names):
    from mlcore.label_issues import label_suspects, out_of_sample_probabilities, precision_recall

    probabilities = out_of_sample_probabilities(features, noisy, len(class_names))
    everything = label_suspects(noisy, probabilities, class_names, shown_below=1.0 + 1e-9)
    found = {}
    for line in LINES:
        precision, recall = precision_recall([s.index for s in everything if s.score < line], flipped)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        found[line] = (precision, recall, f1)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--mnist-pictures", type=int, default=10000)
    parser.add_argument("--only", choices=["mnist", "flowers"])
    args = parser.parse_args()
    seeds = HELD_OUT_SEEDS[:args.seeds]
    results = {}  # data set -> line -> [(precision, recall, f1) per seed]
    started = time.perf_counter()
    if args.only != "flowers":
        for seed in seeds:
            pixels, labels, names = read_zip(DATA / "mnist-png.zip", (28, 28), 1, args.mnist_pictures, "/train/", seed=seed)
            noisy, flipped = flip(labels, 0.02, len(names), seed=seed)
            features = quick_run_features(pixels, noisy, len(names))[0]
            for line, figures in scores_by_line(features, noisy, flipped, names).items():
                results.setdefault("mnist", {}).setdefault(line, []).append(figures)
    if args.only != "mnist":
        pixels, labels, names = read_zip(DATA / "flowers-train.zip", (224, 224), 3)
        features = pretrained_features(pixels)[0]
        for seed in seeds:
            noisy, flipped = flip(labels, 0.03, len(names), seed=seed)
            for line, figures in scores_by_line(features, noisy, flipped, names).items():
                results.setdefault("flowers", {}).setdefault(line, []).append(figures)

    medians = {}
    for dataset, by_line in results.items():
        for line, figures in by_line.items():
            precision, recall, f1 = (statistics.median(f[k] for f in figures) for k in range(3))
            medians[dataset, line] = (precision, recall, f1)
            print(json.dumps({"name": "label_threshold", "dataset": dataset, "shown_below": line, "seeds": seeds,
                              "precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3)}),
                  flush=True)
    datasets = sorted(results)
    meeting = [line for line in LINES
               if all(min(medians[d, line][:2]) >= GOALS[d] for d in datasets)]
    best = max(meeting or LINES, key=lambda line: statistics.mean(medians[d, line][2] for d in datasets))
    print(json.dumps({"name": "label_threshold_choice", "shown_below": best, "meets_goals": bool(meeting),
                      "lines_meeting_goals": meeting, "datasets": datasets, "seeds": seeds,
                      "seconds": round(time.perf_counter() - started, 1)}), flush=True)


if __name__ == "__main__":
    main()
