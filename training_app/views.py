import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Max
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from datasets_app.access import get_dataset_for_user
from datasets_app.models import Image
from datasets_app.versions import freeze
from housekeeping_app.quotas import queued_runs_refusal
from mlcore.budget import TIME_BUDGETS, estimate, size_for_budget
from mlcore.builder import BASES, OPTIMIZER_LABELS, SpecError, normalise_augmentation, normalise_spec
from mlcore.images import RESIZE_MODES
from mlcore.insights import guessing_in_words, most_confused, overfitting_hint, samples_per_second, times_out_of_ten
from mlcore.training import CLASS_WEIGHTING, LR_SCHEDULES

from .access import get_run_for_user
from .forms import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, TrainingRunForm
from .models import TrainingRun
from .tasks import train


@login_required
def run_new(request, dataset_pk):
    dataset = get_dataset_for_user(request, dataset_pk)
    suggested = TrainingRunForm.defaults_for(dataset)
    if request.method == "POST":
        form = TrainingRunForm.filled_in(request.POST, dataset, suggested)
        if form.is_valid() and (refusal := queued_runs_refusal(request.user)):
            form.add_error(None, refusal)  # the person's limit of runs at once (settings.QUOTA_QUEUED_RUNS)
        if form.is_valid():
            run = form.save(commit=False)
            if run.image_size == suggested["image_size"]:  # left as suggested: the budget may make it smaller
                run.image_size = budget_facts(dataset, run.settings())["image_size"]
            run.owner, run.dataset = request.user, dataset
            with transaction.atomic():
                run.version = freeze(dataset, request.user)
                run.save()
                train.delay_on_commit(run.id)  # the worker must never read an uncommitted row
            return redirect("training:detail", pk=run.pk)
    else:
        # "Train again with changes" opens the form with an earlier run's settings.
        source = _run_to_clone(request, dataset)
        form = TrainingRunForm(initial=source.settings() if source else suggested, dataset=dataset)
    return render(request, "training_app/new.html", {
        "dataset": dataset, "form": form, "reasons": suggested["reasons"],
        "cloned_from": source if request.method != "POST" else None,
        "estimate": time_estimate(dataset, suggested).in_words(),
    })


def time_estimate(dataset, chosen):
    """About how long a run with these settings takes, from "Start training" to a saved model."""
    facts = budget_facts(dataset, chosen)
    return estimate(facts["network"], chosen["image_size"], *facts["counts"], chosen["epochs"],
                    pretrained=facts["pretrained"], mirrored=facts["mirrored"], measured_images_per_s=facts["measured"],
                    budget_s=chosen.get("time_budget_s", 0))


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


@login_required
def run_estimate(request, dataset_pk):
    """For the training form: how long the settings it holds would take, and the image size that fits
    the time chosen (the form's own size when it already fits). Settings left out are the suggested ones."""
    dataset = get_dataset_for_user(request, dataset_pk)
    chosen = TrainingRunForm.defaults_for(dataset)
    try:  # only what the estimate reads; the form checks everything when it is sent
        for name in ("image_size", "channels", "epochs", "time_budget_s"):
            chosen[name] = int(request.GET.get(name, chosen[name]))
        chosen["preset"] = request.GET.get("preset", chosen["preset"])
        if "model_spec" in request.GET:
            chosen["model_spec"] = normalise_spec(json.loads(request.GET["model_spec"]))
        chosen["augmentation"] = {"flip": request.GET.get(TrainingRunForm.AUGMENTATION_PREFIX + "flip", "none")}
    except (ValueError, TypeError, SpecError):
        return JsonResponse({"text": "", "image_size": None})
    if not (MIN_IMAGE_SIZE <= chosen["image_size"] <= MAX_IMAGE_SIZE and chosen["epochs"] > 0):
        return JsonResponse({"text": "", "image_size": None})
    size = budget_facts(dataset, chosen)["image_size"]
    return JsonResponse({"text": time_estimate(dataset, {**chosen, "image_size": size}).in_words(), "image_size": size})


def _run_to_clone(request, dataset):
    run_id = request.GET.get("from", "")
    if not run_id.isdigit():
        return None
    return TrainingRun.objects.visible_to(request.user).filter(dataset=dataset, pk=int(run_id)).first()


@login_required
def run_list(request):
    # The best epoch's validation accuracy lets the table tell a run without a test result that
    # learned nothing (TrainingRun.verdict); a query with GROUP BY leaves Meta.ordering out.
    runs = (TrainingRun.objects.visible_to(request.user).select_related("dataset", "version")
            .annotate(best_val_accuracy=Max("epoch_metrics__val_accuracy")).order_by("-created_at", "-id"))
    return render(request, "training_app/list.html", {"runs": runs})


@login_required
def run_detail(request, pk):
    run = get_run_for_user(request, pk)
    wrong = []
    if run.wrong:
        images = (Image.objects.filter(dataset=run.dataset, id__in=[row[0] for row in run.wrong])
                  .select_related("image_class"))
        by_id = {image.id: image for image in images}
        wrong = [{"image": by_id[i], "predicted": run.class_names[p], "probability": prob}
                 for i, p, prob in run.wrong if i in by_id]
    status = run_status(run)
    return render(request, "training_app/detail.html", {
        "run": run, "status": status, "wrong": wrong, "summary": settings_in_words(run),
        "result": result_in_words(run), "verdict": status["verdict"] if status["learned_nothing"] else None,
    })


def result_in_words(run):
    """What the run page's result leads with: how often it was right, out of 10, what guessing would
    get, and what it mixed up most. None without a test result."""
    if run.test_accuracy is None:
        return None
    counts = run.test_class_counts()
    return {
        "right": times_out_of_ten(run.test_accuracy),
        "guessing": guessing_in_words(counts, run.class_names) if counts else None,
        "confused": most_confused(run.confusion, run.class_names) if run.confusion else None,
    }


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
        "learned_nothing": final_verdict,
        "verdict": verdict,
        "chance_hint": (f"{verdict['title']}. {verdict['text']} {verdict['tips'][0]}"
                        if verdict and not final_verdict else None),
        "is_final": run.is_final,
        "phase": run.phase,
        "phase_done": run.phase_done,
        "phase_total": run.phase_total,
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
        "overfitting_hint": overfitting_hint(metrics),
        "worker_host": run.worker_host,
        "devices": run.devices,
        "where": where_it_trains(run),
        "best_epoch_note": best_epoch_note(run),
    }


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


def best_epoch_note(run):
    if run.best_epoch is None:
        return ""
    if run.status == TrainingRun.Status.CANCELLED:
        return f"Stopped by you; the model keeps the weights of epoch {run.best_epoch}, the best so far."
    if run.stopped_early:
        return (f"Stopped early at epoch {run.epoch}; the model keeps the weights of epoch {run.best_epoch}, "
                "its best.")
    return f"The model keeps the weights of epoch {run.best_epoch}, its best."


def _before(label, separator):
    return label.split(separator, 1)[0]


def augmentation_in_words(augmentation):
    """"Off", or the random changes that are on, e.g. "flip left–right, rotate up to 15°"."""
    try:
        clean = normalise_augmentation(augmentation or {})
    except SpecError:
        return "Unknown settings"
    parts = []
    if clean["flip"] != "none":
        flips = {"horizontal": "left–right", "vertical": "upside down",
                 "horizontal_and_vertical": "left–right and upside down"}
        parts.append(f"flip {flips.get(clean['flip'], clean['flip'])}")
    units = {"rotation": ("rotate", "°"), "zoom": ("zoom", "%"), "translation": ("shift", "%"),
             "contrast": ("contrast", "%"), "brightness": ("brightness", "%")}
    for name, (verb, unit) in units.items():
        if clean.get(name):
            parts.append(f"{verb} up to {clean[name]}{unit}")
    return ", ".join(parts) if parts else "Off"


def augmentation_on(augmentation):
    return augmentation_in_words(augmentation) not in ("Off", "Unknown settings")


def optimizer_name(run):
    return _before(OPTIMIZER_LABELS.get(run.optimizer, run.optimizer), " (")


def schedule_name(run):
    return _before(LR_SCHEDULES.get(run.lr_schedule, run.lr_schedule), ":")


def settings_in_words(run):
    """The run's settings as (name, value) pairs a newcomer can read."""
    colour = "grayscale" if run.channels == 1 else "colour"
    base = (run.model_spec or {}).get("base") or {}
    network = run.get_preset_display()
    layers = len((run.model_spec or {}).get("layers") or [])
    if run.preset == "custom" and base.get("name") in BASES:
        network += f", on top of the pretrained {BASES[base['name']].label}"
    if layers:
        network += f" ({layers} layer{'s' if layers != 1 else ''}{' on top' if base.get('name') else ''})"
    if run.early_stopping_patience:
        patience = run.early_stopping_patience
        early = (f"On: stops when validation loss has not improved for {patience} epoch{'s' if patience != 1 else ''}, "
                 "and keeps the best epoch's weights")
    else:
        early = "Off: trains for every epoch"
    rows = [
        ("Network", network),
        ("Images", f"{run.image_size}×{run.image_size} pixels, {colour}"),
        ("Resizing", _before(RESIZE_MODES.get(run.resize_mode, run.resize_mode), " (")),
        ("Random changes (augmentation)", augmentation_in_words(run.augmentation)),
        ("Optimizer", f"{optimizer_name(run)}, step size (learning rate) {run.learning_rate:g}"),
        ("Step size schedule", LR_SCHEDULES.get(run.lr_schedule, run.lr_schedule)),
        ("Epochs", str(run.epochs)),
        ("Time", budget_in_words(run)),
        ("Batch size", f"{run.batch_size} images a step"),
        ("Early stopping", early),
        ("Class balance", CLASS_WEIGHTING.get(run.class_weighting, run.class_weighting)),
        ("Label smoothing", f"{run.label_smoothing:g}" if run.label_smoothing else "Off"),
        ("Random seed", f"{run.seed} (the same seed and settings give nearly the same result)"),
    ]
    if run.fine_tunes:
        rows.append(("Fine-tuning", (
            f"Then {run.fine_tune_epochs} more epochs with the top {base['fine_tune_layers']} layers of the "
            f"pretrained network unfrozen, step size {run.fine_tune_learning_rate:g}")))
    if run.use_all_gpus:
        rows.append(("GPUs", "Uses every GPU of its computer"))
    return rows


def budget_in_words(run):
    if not run.time_budget_s:
        return "No limit: every epoch, or until it stops improving"
    label = dict(TIME_BUDGETS)[run.time_budget_s] if run.time_budget_s in dict(TIME_BUDGETS) else f"{run.time_budget_s} s"
    return (f"{label}: after its first epochs the worker trains as many as fit (the epochs above, once it knows), "
            "and keeps the last twentieth for testing and saving")


@login_required
def run_status_json(request, pk):
    return JsonResponse(run_status(get_run_for_user(request, pk)))


@login_required
@require_POST
def run_cancel(request, pk):
    run = get_run_for_user(request, pk)
    if run.is_final:
        messages.info(request, "This run has already ended.")
    else:
        run.request_cancel()
        messages.info(request, "Stopping: the model keeps what it has learned so far.")
    # The queue page sends people back to itself; only a path on this site is followed.
    back = request.POST.get("next", "")
    if back.startswith("/") and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return redirect(back)
    return redirect("training:detail", pk=pk)


@login_required
@require_POST
def run_delete(request, pk):
    run = get_run_for_user(request, pk)
    if not run.deletable or not TrainingRun.objects.delete_unless_running(run.id):
        messages.error(request, "This run is still training: stop it first, then delete it.")
        return redirect("training:detail", pk=pk)
    messages.info(request, f"Run {pk} and its model were deleted.")
    return redirect("training:dataset_runs", dataset_pk=run.dataset_id)


@login_required
def model_download(request, pk, kind):
    run = get_run_for_user(request, pk)
    if not run.has_model:
        raise Http404("This run has no model.")
    path = run.model_path if kind == "keras" else run.model_path.with_suffix(".json")
    try:
        model_file = path.open("rb")
    except FileNotFoundError:  # removed from disk (by hand, or a clean-up) while the run still names it
        what = "model file" if kind == "keras" else "model description"
        return render(request, "training_app/model_missing.html", {"run": run, "what": what}, status=404)
    return FileResponse(model_file, as_attachment=True, filename=f"run-{run.id}-model.{kind}")


@login_required
def dataset_runs(request, dataset_pk):
    """Every run of one dataset in one sortable table: three queries however many runs there are."""
    dataset = get_dataset_for_user(request, dataset_pk)
    runs = (TrainingRun.objects.visible_to(request.user).filter(dataset=dataset)
            .annotate(best_val_accuracy=Max("epoch_metrics__val_accuracy"))
            .order_by("-created_at", "-id"))  # a query with GROUP BY leaves Meta.ordering out
    now = timezone.now()
    return render(request, "training_app/dataset_runs.html", {
        "dataset": dataset, "rows": [_table_row(run, now) for run in runs],
    })


def _table_row(run, now):
    taken = None
    if run.started_at:
        taken = max(0.0, ((run.finished_at or now) - run.started_at).total_seconds())
    return {
        "run": run,
        "colour": "grayscale" if run.channels == 1 else "colour",
        "optimizer": optimizer_name(run),
        "schedule": schedule_name(run),
        "augmentation": "On" if augmentation_on(run.augmentation) else "Off",
        "augmentation_detail": augmentation_in_words(run.augmentation),
        "best_val_percent": None if run.best_val_accuracy is None else round(100 * run.best_val_accuracy, 1),
        "seconds_taken": None if taken is None else round(taken),
        "time_taken": "" if taken is None else duration_in_words(taken),
        "where": where_it_trains(run),
    }


def duration_in_words(seconds):
    """45 s, 3 min 5 s, 2 h 5 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
