from pathlib import PurePosixPath

from django.conf import settings as django_settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Max
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from datasets_app.access import get_dataset_for_user
from datasets_app.label_views import INBOX_CHOICE, REMOVE_CHOICE, pending_undo
from datasets_app.models import Image
from dlsite import storage
from mlcore.builder import SpecError, normalise_spec
from mlcore.explain import COLOURS_IN_WORDS
from mlcore.familiarity import sure_in_words
from mlcore.json_input import read_json
from mlcore.options import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from mlcore.words import page_number, whole_number

from .access import find_run_for_user, get_run_for_user, runs_for_user
from .compare import CompareError, comparison, run_ids, runs_to_compare
from .forms import TrainingRunForm
from .models import TrainingRun
from .presenters import (PictureChoice, budget_facts, confusion_links, export_rows, pictures_behind, plan_in_words,
                         result_in_words, run_status, settings_in_words, table_row, time_estimate,
                         trees_in_words)
from .starting import start_run


@login_required
def run_new(request, dataset_pk):
    dataset = get_dataset_for_user(request, dataset_pk)
    # The plan follows the time chosen: settings a post leaves out come from that budget's plan.
    suggested = TrainingRunForm.defaults_for(dataset, (request.POST or request.GET).get("time_budget_s", "0"))
    if request.method == "POST":
        form = TrainingRunForm.filled_in(request.POST, dataset, suggested)
        if form.is_valid() and (run := start_run(form, dataset, request.user, suggested)):
            return redirect("training:detail", pk=run.pk)
    else:
        # "Train again with changes" opens the form with an earlier run's settings.
        source = _run_to_clone(request, dataset)
        form = TrainingRunForm(initial=source.settings() if source else suggested, dataset=dataset)
    return render(request, "training_app/new.html", {
        "dataset": dataset, "form": form, "reasons": suggested["reasons"],
        "cloned_from": source if request.method != "POST" else None,
        "estimate": time_estimate(dataset, suggested).in_words(),
        "plan": plan_in_words(suggested),
    })


@login_required
def run_estimate(request, dataset_pk):
    """For the training form: how long the settings it holds would take, and the image size that fits
    the time chosen (the form's own size when it already fits). Settings left out are the suggested ones."""
    dataset = get_dataset_for_user(request, dataset_pk)
    planned = TrainingRunForm.defaults_for(dataset, request.GET.get("time_budget_s", "0"))
    chosen = dict(planned)
    try:  # only what the estimate reads; the form checks everything when it is sent
        for name in ("image_size", "channels", "epochs", "time_budget_s", "fine_tune_epochs"):
            chosen[name] = whole_number(request.GET.get(name, chosen[name]))
            if chosen[name] is None:
                raise ValueError(name)
        chosen["preset"] = request.GET.get("preset", chosen["preset"])
        if "model_spec" in request.GET:
            chosen["model_spec"] = normalise_spec(read_json(request.GET["model_spec"]))
        chosen["augmentation"] = {"flip": request.GET.get(TrainingRunForm.AUGMENTATION_PREFIX + "flip", "none")}
    except (ValueError, TypeError, SpecError):
        return JsonResponse({"text": "", "image_size": None})
    if not (MIN_IMAGE_SIZE <= chosen["image_size"] <= MAX_IMAGE_SIZE and chosen["epochs"] > 0):
        return JsonResponse({"text": "", "image_size": None})
    size = budget_facts(dataset, chosen)["image_size"]
    answer = {"text": time_estimate(dataset, {**chosen, "image_size": size}).in_words(), "image_size": size,
              "plan": plan_in_words(chosen), "plan_url": ""}
    if planned["fine_tune_epochs"] and not chosen["fine_tune_epochs"]:
        # The time chosen buys more than the form's settings do: offer the form filled in with that plan.
        answer["plan"] += (f" With this much time the suggested settings would also fine-tune its top "
                           f"{planned['model_spec']['base']['fine_tune_layers']} layers, kept only if that does better.")
        answer["plan_url"] = f"{reverse('training:new', args=[dataset.pk])}?time_budget_s={planned['time_budget_s']}"
    return JsonResponse(answer)


def _run_to_clone(request, dataset):
    return find_run_for_user(request, whole_number(request.GET.get("from")), dataset=dataset)


@login_required
def run_list(request):
    # The best epoch's validation accuracy lets the table tell a run without a test result that
    # learned nothing (TrainingRun.verdict); a query with GROUP BY leaves Meta.ordering out.
    runs = (runs_for_user(request).select_related("dataset", "version")
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
        # Each links to the cell of the confusion matrix it belongs to, by the label the run learned from.
        true_of = dict(run.test_answers.filter(image_id__in=by_id).values_list("image_id", "true_class"))
        wrong = [{"image": by_id[i], "predicted": run.class_names[p], "probability": prob, "sure": sure_in_words(prob),
                  "true": run.class_names[true_of[i]] if i in true_of else None}
                 for i, p, prob in run.wrong if i in by_id]
    status = run_status(run)
    return render(request, "training_app/detail.html", {
        "run": run, "status": status, "wrong": wrong, "summary": settings_in_words(run),
        "confusion_links": confusion_links(run),
        "result": result_in_words(run), "verdict": status["verdict"] if status["learned_nothing"] else None,
        "exports": export_rows(run) if run.has_model else [], "colours_in_words": COLOURS_IN_WORDS,
        "trees": trees_in_words(run) if run.has_model else None,
        "unsure_keep_days": django_settings.UNSURE_KEEP_DAYS,
    })


PICTURES_PER_PAGE = 60


@login_required
def run_pictures(request, pk):
    """The test pictures behind a cell of the confusion matrix (?true=<class>&predicted=<class>) or a row
    of it (?true=<class>), the most confident mistakes first, each with buttons to fix its label."""
    run = get_run_for_user(request, pk)
    choice = PictureChoice.read(run, request.GET)
    context = {"run": run, "choice": choice, "undo": pending_undo(request, run.dataset)}
    if choice.problem:
        return render(request, "training_app/pictures.html", context, status=400 if choice.bad_input else 200)
    page = Paginator(choice.answers(), PICTURES_PER_PAGE).get_page(page_number(request.GET.get("page")))
    classes = list(run.dataset.classes.order_by("name"))
    context.update(page=page, pictures=pictures_behind(run, page.object_list, classes), classes=classes,
                   inbox=INBOX_CHOICE, remove=REMOVE_CHOICE)
    return render(request, "training_app/pictures.html", context)


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
    name = run.model_file if kind == "keras" else str(PurePosixPath(run.model_file).with_suffix(".json"))
    try:
        model_file = storage.open_kept(name)  # streamed from where it is kept, the local folder or the bucket
    except FileNotFoundError:  # removed from storage (by hand, or a clean-up) while the run still names it
        what = "model file" if kind == "keras" else "model description"
        return render(request, "training_app/model_missing.html", {"run": run, "what": what}, status=404)
    return FileResponse(model_file, as_attachment=True, filename=f"run-{run.id}-model.{kind}")


@login_required
def dataset_runs(request, dataset_pk):
    """Every run of one dataset in one sortable table: three queries however many runs there are."""
    dataset = get_dataset_for_user(request, dataset_pk)
    runs = (runs_for_user(request).filter(dataset=dataset)
            .annotate(best_val_accuracy=Max("epoch_metrics__val_accuracy"))
            .order_by("-created_at", "-id"))  # a query with GROUP BY leaves Meta.ordering out
    now = timezone.now()
    return render(request, "training_app/dataset_runs.html", {
        "dataset": dataset, "rows": [table_row(run, now) for run in runs],
    })


@login_required
def run_compare(request):
    """Two or more runs of one dataset side by side: /runs/compare/?runs=1,2,3. An address the page cannot
    compare (too few runs, someone else's, two datasets) gets the page with the reason, never an error."""
    try:
        runs = runs_to_compare(runs_for_user(request), run_ids(request.GET.getlist("runs")))
    except CompareError as problem:
        return render(request, "training_app/compare.html", {"problem": problem.text}, status=problem.status)
    return render(request, "training_app/compare.html", {"dataset": runs[0].dataset, **comparison(runs)})
