"""Which network, picture size and plan each time budget should buy (issue 19, item 5): every candidate
plan for photos trained through the worker on the same split, so that mlcore.defaults.PHOTO_PLANS can be
chosen by measurement.

    .venv/bin/python benchmarks/photo_plans.py [ZIP] [--only NAME ...] [--quick]

ZIP defaults to ../shared/data/flowers-train.zip, imported as benchmarks/photos.py imports it (the same
587 test photos). Each candidate is one run of "Train" from the suggested settings with the network,
size and fine-tuning changed as a person would change them on the form:

- lite0, lite1, lite2: EfficientNet-Lite0, Lite1 or Lite2 at its own size, frozen, a new top only;
- lite0_tuned, lite2_tuned: the same, then the last block and head fine-tuned (the plan of
  mlcore.defaults.LAST_BLOCK_AND_HEAD and PHOTO_PLANS), with the 15-minute budget.

One JSON line per candidate ("name": "photo_plans"): plan, validation_accuracy (the figure that chooses:
the kept top's best epoch, or the phase kept), test_accuracy, seconds (from the button to the saved
model). A budget buys the candidate with the best validation figure
among those that finish well inside it; the table is in docs/benchmarks.md ("Which plan each budget buys").
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import ROOT, fresh_site, import_zip, product_run, start_worker, stop_worker  # noqa: E402  (the same harness)

DEFAULT_ZIP = ROOT.parent / "shared" / "data" / "flowers-train.zip"
FROZEN = {"lite0": ("efficientnet_lite0", 224), "lite1": ("efficientnet_lite1", 240),
          "lite2": ("efficientnet_lite2", 260)}
TUNED = {"lite0_tuned": "lite0", "lite2_tuned": "lite2"}


def changes_for(name, quick):
    """What a person would change on the form for the candidate `name`."""
    from mlcore.defaults import LAST_BLOCK_AND_HEAD
    from mlcore.presets import preset_spec

    preset, size = FROZEN[TUNED.get(name, name)]
    spec = preset_spec(preset)
    changes = {"preset": preset, "image_size": size, "fine_tune_epochs": 0}
    if name in TUNED:
        spec["base"]["fine_tune_layers"] = LAST_BLOCK_AND_HEAD
        changes.update({"fine_tune_epochs": 10, "fine_tune_learning_rate": 0.0001, "time_budget_s": 900})
    changes["model_spec"] = json.dumps(spec)
    if quick:
        changes.update({"epochs": 1, "fine_tune_epochs": 1 if name in TUNED else 0})
    return changes


def validation_figure(run_id, phase_results):
    """The validation accuracy of the model that was kept: the fine-tuning phases' own record, else the
    best epoch of the top (the one early stopping restores)."""
    from training_app.models import EpochMetric

    phases = {phase["phase"]: phase for phase in phase_results or []}
    for name in ("fine_tune", "top"):
        if phases.get(name, {}).get("kept", True) and "val_accuracy" in phases.get(name, {}):
            return round(phases[name]["val_accuracy"], 4)
    figures = EpochMetric.objects.filter(run_id=run_id).values_list("val_accuracy", flat=True)
    best = max((figure for figure in figures if figure is not None), default=None)
    return None if best is None else round(best, 4)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("zip", nargs="?", default=str(DEFAULT_ZIP))
    parser.add_argument("--only", choices=[*FROZEN, *TUNED], action="append")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 epoch a phase; accuracies mean nothing")
    args = parser.parse_args()
    if not Path(args.zip).is_file():
        raise SystemExit(f"No zip at {args.zip}; pass the path of a zip of class folders.")

    data_dir, env, user = fresh_site("bench-plans-")
    from training_app.models import TrainingRun

    dataset = import_zip(user, args.zip, "flowers", test_fraction=0.2, val_fraction=0.1)
    worker = start_worker(env, Path(data_dir) / "worker.log")
    try:
        for name in args.only or [*FROZEN, *TUNED]:
            result = product_run(dataset, user, changes_for(name, args.quick))
            run = TrainingRun.objects.filter(dataset=dataset).order_by("-id").first()
            print(json.dumps({
                "name": "photo_plans", "plan": name, "image_size": result["settings"]["image_size"],
                "validation_accuracy": validation_figure(run.id, result["phase_results"]),
                "test_accuracy": round(result["test_accuracy"], 4), "seconds": round(result["seconds"], 1),
                "phase_results": result["phase_results"], "quick": args.quick,
            }), flush=True)
    finally:
        stop_worker(worker)


if __name__ == "__main__":
    main()
