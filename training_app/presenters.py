"""What the run pages show, in the plain words and numbers they draw: a run's status as the live page
polls it, its result and settings in words, the rows of the runs tables, and the time estimate of the
training form. The views only fetch and hand these over."""
from dataclasses import dataclass
from urllib.parse import urlencode

from django.db.models import Case, F, FloatField, IntegerField, When
from django.urls import reverse
from django.utils import timezone

from mlcore.budget import TIME_BUDGETS, estimate, size_for_budget
from mlcore import options
from mlcore.builder import BASES, SpecError
from mlcore.defaults import few_photos_plan
from mlcore.evaluation import accuracy_in_words, answer_in_words
from mlcore.insights import guessing_in_words, most_confused, overfitting_hint, samples_per_second, times_out_of_ten
from mlcore.words import colour as colour_word, count, decimal, duration, file_size

from mlcore.trees import PIXELS_SIDE

from .models import TrainingRun

PIXELS_WORDS = f"{PIXELS_SIDE} × {PIXELS_SIDE}"


def time_estimate(dataset, chosen):
    """About how long a run with these settings takes, from "Start training" to a saved model."""
    facts = budget_facts(dataset, chosen)
    base = (chosen["model_spec"] or {}).get("base")
    return estimate(facts["network"], chosen["image_size"], *facts["counts"], chosen["epochs"],
                    pretrained=facts["pretrained"], mirrored=facts["mirrored"], measured_images_per_s=facts["measured"],
                    budget_s=chosen.get("time_budget_s", 0),
                    fine_tune_epochs=chosen.get("fine_tune_epochs", 0) if base and base.get("fine_tune_layers") else 0,
                    crop_views=few_photos_plan(chosen["model_spec"], chosen.get("augmentation"),
                                               chosen.get("early_stopping_patience", 0), chosen.get("fine_tune_epochs", 0),
                                               facts["counts"][0]).crops)


def plan_in_words(chosen):
    """What the settings will do with a pretrained network, for the estimate: "" for other networks."""
    base = (chosen.get("model_spec") or {}).get("base")
    if not base:
        return ""
    label = BASES[base["name"]].label if base.get("name") in BASES else "the pretrained network"
    if base.get("fine_tune_layers") and chosen.get("fine_tune_epochs"):
        return (f"The plan: a new top learns on {label}, then its top {base['fine_tune_layers']} layers are "
                f"fine-tuned for up to {chosen['fine_tune_epochs']} epochs; the validation images decide whether "
                "fine-tuning is kept.")
    return f"The plan: a new top learns on {label}, which stays as it is."


def budget_facts(dataset, chosen):
    """What mlcore.budget needs to know of a dataset and settings, and the image size that fits the budget."""
    counts = dataset.split_counts()
    base = (chosen["model_spec"] or {}).get("base")
    facts = {
        "network": base["name"] if base and chosen["preset"] == "custom" else chosen["preset"],
        "counts": (counts["train"], counts["val"], counts["test"]),
        "pretrained": bool(base),
        "mirrored": (chosen.get("augmentation") or {}).get("flip") == "horizontal",
        "measured": TrainingRun.objects.measured_speed(chosen["preset"], chosen["channels"]),
    }
    facts["image_size"] = size_for_budget(
        facts["network"], chosen["image_size"], *facts["counts"], pretrained=facts["pretrained"],
        mirrored=facts["mirrored"], budget_s=chosen.get("time_budget_s", 0), measured_images_per_s=facts["measured"])
    return facts


def result_in_words(run):
    """What the run page's result leads with: how often it was right, out of 10, what guessing would
    get, and what it mixed up most. None without a test result."""
    if run.test_accuracy is None:
        return None
    counts = run.test_class_counts()
    return {
        "right": times_out_of_ten(run.test_accuracy),
        "interval": test_accuracy_in_words(run),
        "guessing": guessing_in_words(counts, run.class_names) if counts else None,
        "confused": most_confused(run.confusion, run.class_names) if run.confusion else None,
    }


def test_accuracy_in_words(run):
    """How many test pictures it got right, and the range the true figure most likely lies in, as a
    warning when there are too few test pictures to trust it (mlcore/evaluation.py). None untested."""
    if run.test_accuracy is None:
        return None
    if run.confusion:
        right, total = sum(row[i] for i, row in enumerate(run.confusion)), sum(map(sum, run.confusion))
    else:
        total = run.test_count
        right = round(run.test_accuracy * total)
    return accuracy_in_words(right, total)


def run_status(run):
    """Everything the live run page draws, as JSON-ready data."""
    seconds_left = run.seconds_left()
    metrics = list(run.epoch_metrics.values("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                                            "seconds"))
    speed, estimated = _speed(run, metrics)
    # Whether it learned anything: a final verdict once it has ended, a hint while it trains.
    verdict = run.learning_verdict([m["val_accuracy"] for m in metrics])
    final_verdict = bool(verdict and verdict["final"])
    return {
        "id": run.id,
        "status": run.status,
        "status_label": run.status_label_with(verdict),
        "badge_classes": run.badge_classes_with(verdict),
        "untested": run.untested,
        "learned_nothing": final_verdict,
        "verdict": verdict,
        "chance_hint": (f"{verdict['title']}. {verdict['text']} {verdict['tips'][0]}"
                        if verdict and not final_verdict else None),
        "is_final": run.is_final,
        "phase": run.phase,
        "phase_done": run.phase_done,
        "phase_total": run.phase_total,
        # Every phase's own bar and time left ("Looking at the pictures ...: 1,200 of 2,343 pictures").
        **(run.phase_progress().as_dict() if run.status == TrainingRun.Status.RUNNING and run.phase
           else {"phase_text": run.phase, "phase_percent": None, "phase_seconds_left": None,
                 "phase_time_left_text": ""}),
        "epoch": run.epoch,
        "epochs": run.total_epochs,
        "batch": run.batch,
        "batches_per_epoch": run.batches_per_epoch,
        "percent": round(100 * run.fraction_done(), 1),
        "seconds_left": None if seconds_left is None else round(seconds_left),
        "cancel_requested": run.cancel_requested,
        "error": run.error,
        "metrics": metrics,
        "samples_per_s": None if speed is None else round(speed, 1),
        "samples_per_s_estimated": estimated,
        "seconds_per_epoch": round(metrics[-1]["seconds"], 1) if metrics and metrics[-1]["seconds"] else None,
        "overfitting_hint": overfitting_hint_for(run, metrics),
        "worker_host": run.worker_host,
        "devices": run.devices,
        "where": where_it_trains(run),
        "best_epoch_note": best_epoch_note(run),
    }


def overfitting_hint_for(run, metrics):
    """mlcore.insights' overfitting hint, told what the run already uses against memorising, and, once
    it has ended, which epoch's weights it kept (what came after that is not in the saved model)."""
    layers = (run.model_spec or {}).get("layers") or []
    dropout = any(layer.get("type") == "Dropout" and layer.get("rate", 0.5) for layer in layers)
    return overfitting_hint(metrics, early_stopping_patience=run.early_stopping_patience,
                            augmentation=augmentation_on(run.augmentation), dropout=dropout,
                            kept_epoch=run.best_epoch if run.is_final else None, val_count=run.val_count or 0)


def _speed(run, metrics):
    """Training images a second: from the latest finished epoch, or, during the first epoch,
    an estimate from the steps done since training started. The second value says which."""
    if metrics:
        return samples_per_second(run.train_count, metrics[-1]["seconds"]), False
    if run.status != TrainingRun.Status.RUNNING or not run.training_started_at or not run.batch:
        return None, False
    seen = run.batch * run.batch_size
    if run.train_count:
        seen = min(seen, run.train_count)
    return samples_per_second(seen, (timezone.now() - run.training_started_at).total_seconds()), True


def where_it_trains(run):
    """"trainer-1, on NVIDIA H100 (mixed precision)", or why it is not known yet."""
    if not run.worker_host and not run.devices:
        return "Not started yet" if run.status == TrainingRun.Status.QUEUED else "Not recorded"
    if not run.devices:
        return run.worker_host
    on = "its processor (CPU)" if run.devices == "CPU" else run.devices
    return f"{run.worker_host}, on {on}" if run.worker_host else on


def watched_loss(run):
    """What early stopping and "the best epoch" go by (mlcore/training.py's monitor): the validation
    loss, or the training loss for a run that had no validation images."""
    return "training loss" if run.train_count and not run.val_count else "validation loss"


def best_epoch_note(run):
    if run.best_epoch is None:
        return ""
    best = f"the best (lowest {watched_loss(run)})"
    if run.status == TrainingRun.Status.CANCELLED:
        return f"Stopped by you; the model keeps the weights of epoch {run.best_epoch}, {best} so far."
    if run.stopped_early:
        return (f"Stopped early at epoch {run.epoch}: its {watched_loss(run)} had not improved for "
                f"{count(run.early_stopping_patience, 'epoch')}. The model keeps the weights of epoch "
                f"{run.best_epoch}, {best}.")
    return f"The model keeps the weights of epoch {run.best_epoch}, {best}."


def augmentation_in_words(augmentation):
    """"Off", or the random changes that are on, e.g. "flip left–right, rotate up to 15° either way"."""
    try:
        return options.augmentation_in_words(augmentation or {})
    except SpecError:
        return "Unknown settings"


def augmentation_on(augmentation):
    return augmentation_in_words(augmentation) not in ("Off", "Unknown settings")


def _choice(table, value):
    """The Choice a run's setting names, or one that shows the stored value as it is (a choice since removed)."""
    return table.get(value) or options.Choice(value)


def optimizer_name(run):
    return _choice(options.OPTIMIZERS, run.optimizer).label


def schedule_name(run):
    return _choice(options.SCHEDULES, run.lr_schedule).label


def settings_in_words(run):
    """The run's settings as (name, value) pairs a newcomer can read."""
    colour = colour_word(run.channels)
    base = (run.model_spec or {}).get("base") or {}
    network = run.get_preset_display()
    layers = len((run.model_spec or {}).get("layers") or [])
    if run.preset == "custom" and base.get("name") in BASES:
        network += f", on top of the pretrained {BASES[base['name']].label}"
    if layers:
        network += f" ({count(layers, 'layer')}{' on top' if base.get('name') else ''})"
    if run.early_stopping_patience:
        patience = run.early_stopping_patience
        early = (f"On: stops when {watched_loss(run)} has not improved for {count(patience, 'epoch')}, "
                 f"and keeps the weights of the best epoch (the one with the lowest {watched_loss(run)})")
    else:
        early = "Off: trains for every epoch"
    rows = [
        ("Network", network),
        ("Images", f"{run.image_size}×{run.image_size} pixels, {colour}"),
        ("Resizing", _choice(options.RESIZE_MODES, run.resize_mode).words),
        ("Random changes (augmentation)", augmentation_in_words(run.augmentation)),
        ("Optimizer", f"{optimizer_name(run)}, step size (learning rate) {decimal(run.learning_rate)}"),
        ("Step size schedule", _choice(options.SCHEDULES, run.lr_schedule).words),
        ("Epochs", str(run.epochs)),
        ("Time", budget_in_words(run)),
        ("Batch size", f"{run.batch_size} images a step"),
        ("Early stopping", early),
        ("Class balance", _choice(options.BALANCES, run.class_weighting).words),
        ("Label smoothing", f"{run.label_smoothing:g}" if run.label_smoothing else "Off"),
        ("Random seed", f"{run.seed} (the same seed and settings give nearly the same result)"),
    ]
    if run.fine_tunes:
        rows.append(("Fine-tuning", (
            f"Then {run.fine_tune_epochs} more epochs with the top {base['fine_tune_layers']} layers of the "
            f"pretrained network unfrozen, step size {decimal(run.fine_tune_learning_rate)}")))
    few = run.few_photos_in_words()
    if few:
        rows.append(("Few photos", few))
    phases = phases_in_words(run.phase_results)
    if phases:
        rows.append(("What each phase gave", phases))
    if run.use_all_gpus:
        rows.append(("GPUs", "Uses every GPU of its computer"))
    return rows


def phases_in_words(phases):
    """The plan's phases and what each gave on the validation images, in one sentence:
    "New top alone: 93.1 % right on the validation images; after fine-tuning: 95.4 % (kept)"."""
    if not phases:
        return ""
    parts = []
    for phase in phases:
        if phase.get("phase") == "top":
            parts.append(f"New top alone: {_percent(phase['val_accuracy'])} right on the validation images")
        elif phase.get("phase") == "refit":
            views = " (with their crops and mirror images)" if phase.get("crops") else ""
            parts.append(f"the model kept then learned again on the {phase['train']:,} training and {phase['val']:,} "
                         f"validation images together{views}, so the validation figures are from before that, when "
                         "those images were still unseen")
        elif phase.get("phase") == "mirrors" and phase.get("skipped"):
            parts.append("no time was left to try the validation images mirrored")
        elif phase.get("skipped") == "time":
            parts.append("no fine-tuning: too little of the time budget was left for it")
        elif phase.get("skipped"):
            parts.append("no fine-tuning: training was stopped before it")
        elif phase.get("phase") == "mirrors":
            alone, averaged = phase["val_accuracy"], phase["mirrored_val_accuracy"]
            if phase.get("kept"):
                parts.append(f"averaging each image's answer with its mirror image's gave {_percent(averaged)} "
                             f"(against {_percent(alone)} alone), so the model answers from each image and its "
                             "mirror image together")
            elif averaged > alone:  # a run from before the model could do it
                parts.append(f"averaging each image's answer with its mirror image's would give {_percent(averaged)} "
                             f"(against {_percent(alone)} alone), which the saved model does not do")
            else:
                parts.append(f"averaging each image's answer with its mirror image's gave {_percent(averaged)} "
                             f"(against {_percent(alone)} alone), so the model answers from the image alone")
        elif phase.get("phase") == "fine_tune":
            verdict = ("kept" if phase.get("kept") else
                       "not better, so the model went back to the new top alone")
            parts.append(f"after fine-tuning: {_percent(phase['val_accuracy'])} ({verdict})")
    said = "; ".join(parts)
    return said[:1].upper() + said[1:] + "."  # a run trained whole has only its mirror check


def _percent(share):
    return f"{100 * share:.1f} %"


def budget_in_words(run):
    if not run.time_budget_s:
        return "No limit: every epoch, or until it stops improving"
    # A search's run gets a share of its total time, which need not be one of the budgets offered.
    label = dict(TIME_BUDGETS).get(run.time_budget_s) or f"About {duration(run.time_budget_s)}"
    return (f"{label}: after its first epochs the worker trains as many as fit (the epochs above, once it knows), "
            "and keeps the last twentieth for testing and saving")


def table_row(run, now):
    taken = None
    if run.started_at:
        taken = max(0.0, ((run.finished_at or now) - run.started_at).total_seconds())
    return {
        "run": run,
        "colour": colour_word(run.channels),
        "optimizer": optimizer_name(run),
        "schedule": schedule_name(run),
        "step_size": decimal(run.learning_rate),
        "augmentation": "On" if augmentation_on(run.augmentation) else "Off",
        "augmentation_detail": augmentation_in_words(run.augmentation),
        "best_val_percent": None if run.best_val_accuracy is None else round(100 * run.best_val_accuracy, 1),
        "seconds_taken": None if taken is None else round(taken),
        "time_taken": "" if taken is None else duration(taken, exact=True),
        "where": where_it_trains(run),
    }


def export_rows(run):
    """One row per format of mlcore/formats.py: what it is, and where its export stands, in words."""
    from django.urls import reverse

    from mlcore.formats import FORMATS

    from .models import ModelExport

    made = {export.kind: export for export in run.exports.all()}
    # exporting.py checks on the test pictures, or, when a run has none, its validation or training ones.
    pictures = "test picture" if run.test_count else "validation picture" if run.val_count else "training picture"
    rows = []
    for kind, fmt in FORMATS.items():
        export = made.get(kind)
        ready = export is not None and export.status == ModelExport.Status.READY
        rows.append({
            "kind": kind, "label": fmt.label, "words": fmt.words,
            "status": export.status if export else "",
            "state": _export_state(export, fmt, pictures),
            "busy": export is not None and export.status in (ModelExport.Status.QUEUED, ModelExport.Status.RUNNING),
            "failed": export is not None and export.status == ModelExport.Status.FAILED,
            "size": file_size(export.size_bytes) if ready else "",
            "download_url": reverse("training:export_download", args=[run.pk, kind]) if ready else "",
            "make_url": reverse("training:export_make", args=[run.pk, kind]),
        })
    return rows


def _export_state(export, fmt, kind="test picture"):
    if export is None:
        return ""
    if export.status == export.Status.FAILED:
        return export.error
    if export.status != export.Status.READY:
        return export.phase or export.get_status_display()
    pictures = count(export.checked_pictures, kind)
    if export.accuracy is not None:
        return (f"Checked with {fmt.runtime}: right on {100 * export.accuracy:.1f} % of {pictures} "
                f"(the original model: {100 * export.original_accuracy:.1f} %).")
    if export.max_difference < 1e-4:
        return (f"Checked with {fmt.runtime} on {pictures}: the same answers as the original (probabilities "
                f"differ by at most {export.max_difference:.1g}).")
    return (f"Checked with {fmt.runtime} on {pictures}: its probabilities differ from the original's by "
            f"at most {export.max_difference:.4f}.")


# Said wherever the trees may answer: every download is the network alone.
TREES_ELSEWHERE = ("The downloads (the .keras file, every format under “Use the model elsewhere”, the “serve it "
                   "yourself” bundle too) answer from the network alone, without the trees.")


def _percent(value):
    return "–" if value is None else f"{100 * value:.1f} %"


def trees_in_words(run):
    """Boosted trees on the run's features (TreesTrial) as the run page and its polling show them: where the
    job stands, the figures in words, and whether the owner may let the trees answer."""
    from .models import TreesTrial

    trial = TreesTrial.objects.filter(run_id=run.pk).first()
    state = {"status": "", "busy": False, "percent": 0, "phase": "", "error": "", "summary": "", "baseline": "",
             "validation": "", "verdict": "", "can_choose": False, "chosen": False, "elsewhere": "",
             "make_url": reverse("training:trees_make", args=[run.pk]),
             "choose_url": reverse("training:trees_choose", args=[run.pk]),
             "state_url": reverse("training:trees_state", args=[run.pk])}
    if trial is None:
        return state
    state.update(status=trial.status, busy=trial.status in (TreesTrial.Status.QUEUED, TreesTrial.Status.RUNNING),
                 percent=round(100 * trial.progress), phase=trial.phase or trial.get_status_display())
    if trial.status == TreesTrial.Status.FAILED:
        state["error"] = trial.error
    if trial.status != TreesTrial.Status.READY:
        return state
    if trial.model_file != run.model_file:  # the run was trained again since: these trees were for its old model
        state.update(status="stale", verdict="These trees were fitted on an earlier model of this run: try again.")
        return state
    if trial.test_count:
        state["summary"] = (f"Boosted trees on what the network sees: {_percent(trial.trees_test)} on the "
                            f"{count(trial.test_count, 'test picture')}, the network alone: {_percent(trial.network_test)}.")
        state["baseline"] = (f"Boosted trees on the raw pixels (each picture made {PIXELS_WORDS}), for comparison: "
                             f"{_percent(trial.pixels_test)}.")
    else:
        state["summary"] = "This run has no test pictures, so there is no fair figure to report for the trees."
    if trial.learned_from and trial.learned_from < run.train_count:
        sample = (f"The trees learned from {trial.learned_from:,} of the {run.train_count:,} training pictures, "
                  "picked at random class by class, so that they take minutes, not hours.")
        state["baseline"] = f"{state['baseline']} {sample}".strip()
    if trial.val_count:
        state["validation"] = (f"On the {count(trial.val_count, 'validation picture')}, which decide: the trees "
                               f"{_percent(trial.trees_val)}, the network {_percent(trial.network_val)}.")
        if trial.did_better:
            state["verdict"] = ("The trees did better on the validation pictures: you may let them answer on the "
                                "classify page and in the API.")
        else:
            state["verdict"] = ("The network alone did as well or better on the validation pictures, so it keeps "
                                "answering.")
    else:
        state["verdict"] = "This run has no validation pictures to decide with, so the network keeps answering."
    state.update(can_choose=trial.did_better, chosen=trial.answers, elsewhere=TREES_ELSEWHERE)
    return state


# The test pictures behind the confusion matrix (the run's "pictures" page).

@dataclass
class PictureChoice:
    """Which test pictures the address asks for: a cell (true and predicted class) or a row (true class
    only), by the class names the run learned. `problem` says in words why there is nothing to show:
    a bad address (`bad_input`), or a run without kept answers."""
    run: TrainingRun
    true: int | None = None
    predicted: int | None = None
    problem: str = ""
    bad_input: bool = False

    @classmethod
    def read(cls, run, query):
        names = run.class_names or []
        true_name, predicted_name = query.get("true"), query.get("predicted")
        if run.test_accuracy is None or not names:
            return cls(run, problem="This run has no test results yet, so there are no test pictures to show.")
        for name in (true_name, predicted_name):
            if name is not None and name not in names:
                return cls(run, bad_input=True,
                           problem=f"This run has no class called “{name[:200]}”. Its classes are "
                                   f"{', '.join(f'“{n}”' for n in names)}.")
        if true_name is None:
            return cls(run, bad_input=True, problem="Choose a class: open a row or a cell of the confusion matrix "
                                                    "on the run's page.")
        choice = cls(run, names.index(true_name), None if predicted_name is None else names.index(predicted_name))
        if not run.test_answers.exists():
            choice.problem = ("This run finished before the site kept what the model said of each test picture, so "
                              "the pictures behind its confusion matrix cannot be shown. Its most confident mistakes "
                              "are still on the run's page; a run trained now keeps them all.")
        return choice

    @property
    def true_name(self):
        return None if self.true is None else self.run.class_names[self.true]

    @property
    def predicted_name(self):
        return None if self.predicted is None else self.run.class_names[self.predicted]

    @property
    def title(self):
        if self.predicted is None:
            return f"Test pictures labelled {self.true_name}"
        if self.predicted == self.true:
            return f"Test pictures of {self.true_name} it got right"
        return f"Test pictures labelled {self.true_name} that the model called {self.predicted_name}"

    @property
    def order_words(self):
        if self.predicted is None:
            return "the mistakes first, the surest of them first; then the right answers, the least sure first"
        return "the least sure first" if self.predicted == self.true else "the surest mistakes first"

    def answers(self):
        """The run's answers for these pictures: the mistakes first, the surest of them first, then the right
        answers, the least sure first (the ones nearest to being wrong)."""
        answers = self.run.test_answers.filter(true_class=self.true)
        if self.predicted is not None:
            answers = answers.filter(predicted_class=self.predicted)
        right = When(predicted_class=F("true_class"), then=1)
        return answers.annotate(
            is_right=Case(right, default=0, output_field=IntegerField()),
            order=Case(When(predicted_class=F("true_class"), then=F("confidence")), default=-F("confidence"),
                       output_field=FloatField()),
        ).order_by("is_right", "order", "id")


def confusion_links(run):
    """The confusion matrix as rows of links to the pictures behind each row and cell; [] without one."""
    base = reverse("training:pictures", args=[run.pk])
    names = run.class_names or []
    if not run.confusion or len(run.confusion) != len(names):
        return []
    rows = []
    for true, counts in zip(names, run.confusion):
        cells = [{"count": n, "url": f"{base}?{urlencode({'true': true, 'predicted': said})}",
                  "title": f"labelled {true}, the model said {said}: {n}"} for said, n in zip(names, counts)]
        rows.append({"name": true, "url": f"{base}?{urlencode({'true': true})}", "cells": cells})
    return rows


def pictures_behind(run, answers, classes):
    """Each answer with its picture as it is in the dataset now (None when it was removed since), its
    caption in words, what changed since the run ("now in the inbox", "now in “tulip”"), and `fix`: the
    dataset's class named as the model said, offered as the one-click move when the picture is elsewhere."""
    answers = list(answers)
    class_named = {image_class.name: image_class for image_class in classes}
    images = {image.id: image for image in run.dataset.images.filter(id__in=[a.image_id for a in answers])
              .select_related("image_class").only("id", "dataset", "original_name", "image_class__name")}
    pictures = []
    for answer in answers:
        true, predicted = run.class_names[answer.true_class], run.class_names[answer.predicted_class]
        image = images.get(answer.image_id)
        now = ""
        if image is None:
            now = "removed from the dataset since this run"
        elif image.label != true:
            now = f"now in “{image.label}”" if image.label else "now in the inbox"
        fix = class_named.get(predicted)
        pictures.append({"answer": answer, "image": image, "words": answer_in_words(true, predicted, answer.confidence),
                         "right": true == predicted, "true": true, "predicted": predicted, "now": now,
                         "fix": fix if image is not None and fix and image.image_class_id != fix.id else None})
    return pictures
