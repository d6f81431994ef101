from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from datasets_app.models import Image
from datasets_app.versions import freeze
from datasets_app.views import get_dataset_for_user

from .forms import TrainingRunForm
from .models import TrainingRun
from .tasks import train


def get_run_for_user(request, pk):
    """The one way views fetch a run: anyone else's is a 404."""
    return get_object_or_404(TrainingRun.objects.visible_to(request.user).select_related("dataset", "version"), pk=pk)


@login_required
def run_new(request, dataset_pk):
    dataset = get_dataset_for_user(request, dataset_pk)
    suggested = TrainingRunForm.defaults_for(dataset)
    if request.method == "POST":
        form = TrainingRunForm.filled_in(request.POST, dataset, suggested)
        if form.is_valid():
            run = form.save(commit=False)
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
    })


def _run_to_clone(request, dataset):
    run_id = request.GET.get("from", "")
    if not run_id.isdigit():
        return None
    return TrainingRun.objects.visible_to(request.user).filter(dataset=dataset, pk=int(run_id)).first()


@login_required
def run_list(request):
    runs = TrainingRun.objects.visible_to(request.user).select_related("dataset", "version")
    return render(request, "training_app/list.html", {"runs": runs})


@login_required
def run_detail(request, pk):
    run = get_run_for_user(request, pk)
    wrong = []
    if run.wrong:
        images = Image.objects.filter(dataset=run.dataset, id__in=[row[0] for row in run.wrong]).select_related("image_class")
        by_id = {image.id: image for image in images}
        wrong = [{"image": by_id[i], "predicted": run.class_names[p], "probability": prob}
                 for i, p, prob in run.wrong if i in by_id]
    return render(request, "training_app/detail.html", {"run": run, "status": run_status(run), "wrong": wrong})


def run_status(run):
    """Everything the live run page draws, as JSON-ready data."""
    seconds_left = run.seconds_left()
    return {
        "id": run.id,
        "status": run.status,
        "status_label": run.get_status_display(),
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
        "metrics": list(run.epoch_metrics.values("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")),
    }


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
def model_download(request, pk, kind):
    run = get_run_for_user(request, pk)
    if not run.has_model:
        raise Http404("This run has no model.")
    path = run.model_path if kind == "keras" else run.model_path.with_suffix(".json")
    return FileResponse(path.open("rb"), as_attachment=True, filename=f"run-{run.id}-model.{kind}")
