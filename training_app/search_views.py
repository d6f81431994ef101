""""Try several settings": a search tries a few values of a few settings as ordinary runs (started the way
the Train button starts one, training_app/starting.py; those beyond the person's limit of runs at once wait
their turn in the search and start as its runs end), sharing a total time; its page ranks them live
by validation accuracy and trains the best one longer. What runs it makes and how the time is shared is
mlcore/search.py."""
import json

from django.conf import settings as django_settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Max
from django.http import JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from datasets_app.access import get_dataset_for_user
from dlsite.quotas import queued_runs_refusal
from mlcore import search as searching
from mlcore.builder import SpecError
from mlcore.options import SETTINGS, normalise_augmentation
from mlcore.presets import PRESET_SPECS
from mlcore.words import count, duration

from .forms import SearchForm, SearchRunForm, TrainingRunForm
from .models import NETWORK_CHOICES, Search, TrainingRun
from .starting import start_run, start_waiting

NETWORK_LABELS = dict(NETWORK_CHOICES)


def get_search_for_user(request, pk):
    """Someone else's search is a 404, the same as one that does not exist."""
    return get_object_or_404(Search.objects.filter(owner=request.user).select_related("dataset"), pk=pk)


def posted(settings: dict):
    """A run's settings as the training form would post them (TrainingRunForm.filled_in fills in the rest)."""
    data = QueryDict(mutable=True)
    for name, value in settings.items():
        if name == "augmentation":
            for change, chosen in normalise_augmentation(value).items():
                data[TrainingRunForm.AUGMENTATION_PREFIX + change] = str(chosen)
        elif name == "model_spec":
            data[name] = json.dumps(value)
        elif name == "use_all_gpus":
            if value:
                data[name] = "on"  # an unticked box is simply absent
        else:
            data[name] = str(value)
    return data


def run_forms(form, dataset, suggested):
    """The training form of each run of a valid search form: its chosen values, the preset's own network
    and optimizer, the rest as suggested, and its share of the time."""
    each_s = form.cleaned_data["split"].each_s
    forms = []
    for choice in form.cleaned_data["runs"]:
        settings = {"preset": choice["preset"], "optimizer": PRESET_SPECS[choice["preset"]]["optimizer"],
                    "image_size": choice["image_size"], "learning_rate": choice["learning_rate"],
                    "batch_size": choice["batch_size"], "time_budget_s": each_s,
                    "augmentation": searching.augmentation_for(choice["augmentation"], suggested.get("augmentation"))}
        forms.append((choice, SearchRunForm.filled_in(posted(settings), dataset, suggested)))
    return forms


def run_form_problem(choice, run_form):
    """Why one run of a search cannot start, in words: its settings, then what its form said."""
    said = [str(error) for errors in run_form.errors.values() for error in errors]
    return f"The run “{searching.run_in_words(choice, NETWORK_LABELS)}” cannot start: {' '.join(said)}"


@login_required
def search_new(request, dataset_pk):
    dataset = get_dataset_for_user(request, dataset_pk)
    suggested = TrainingRunForm.defaults_for(dataset)
    form = SearchForm(request.POST or None, dataset=dataset, suggested=suggested, user=request.user)
    if request.method == "POST" and form.is_valid():
        made = _start_search(request, form, dataset, suggested)
        if made:
            return redirect("training:search", search_pk=made.pk)
    return render(request, "training_app/search_new.html", {
        "dataset": dataset, "form": form,
        "preview": _preview(form if form.is_bound else _as_posted(form, dataset, suggested)),
        "earlier": dataset.searches.filter(owner=request.user)[:10],
    })


def _start_search(request, form, dataset, suggested):
    """The search with its runs waiting their turn, as many of them started as the person's limit of runs
    at once allows (at least one); or None with the reason added to the form: none start when one cannot."""
    forms = run_forms(form, dataset, suggested)
    for choice, run_form in forms:
        if not run_form.is_valid():
            form.add_error(None, run_form_problem(choice, run_form))
            return None
    data = form.cleaned_data
    with transaction.atomic():  # the runs started are sent to the workers once this commits
        made = Search.objects.create(
            owner=request.user, dataset=dataset, name=data["name"] or f"Search on {dataset.name}",
            values={name: data[name] for name in searching.SEARCHED}, mode=data["mode"],
            picks=data.get("picks") or 0, seed=data["seed"], total_budget_s=data["total_budget_s"],
            waiting=[run_form.data.dict() for _, run_form in forms])
        if not start_waiting(made.id):  # the limit was reached since the form was checked
            transaction.set_rollback(True)
            form.add_error(None, queued_runs_refusal(request.user) or "No run of the search could start.")
            return None
    return made


def _as_posted(form, dataset, suggested):
    """The unbound form as if its initial values were sent: the preview of a page just opened."""
    data = QueryDict(mutable=True)
    for field in form:
        value = field.value()
        if isinstance(value, list):
            data.setlist(field.name, [str(item) for item in value])
        elif value is not None:
            data[field.name] = str(value)
    return SearchForm(data, dataset=dataset, suggested=suggested, user=form.user)


def _preview(form):
    """How many runs the form's choices make, how long each gets and how many wait their turn; or why they
    cannot start."""
    if form.is_valid():
        return form.in_words()
    return " ".join(str(error) for errors in form.errors.values() for error in errors)


@login_required
def search_preview(request, dataset_pk):
    """For the page's script: the preview of the choices it holds, as the page would say it."""
    dataset = get_dataset_for_user(request, dataset_pk)
    form = SearchForm(request.GET, dataset=dataset, suggested=TrainingRunForm.defaults_for(dataset), user=request.user)
    return JsonResponse({"text": _preview(form), "ok": form.is_valid()})


# ---- the search's page

def leaderboard(found):
    """The search's runs, best first (mlcore.search.rank_key), JSON-ready, with the best run that has a
    model; one query for the runs, whatever their number."""
    runs = list(found.runs.annotate(best_val_accuracy=Max("epoch_metrics__val_accuracy")).order_by())
    runs.sort(key=lambda run: searching.rank_key(run.best_val_accuracy, run.test_accuracy, run.id))
    best = next((run for run in runs if run.has_model and run.best_val_accuracy is not None), None)
    rows = [_row(place, run) for place, run in enumerate(runs, start=1)]
    active = sum(run.status in TrainingRun.ACTIVE for run in runs)
    waiting = len(found.waiting)
    return {"rows": rows, "best": {"id": best.id, "text": f"Train run {best.id} longer"} if best else None,
            "active": active, "waiting": waiting, "summary": _summary(runs, active, waiting, found)}


def _row(place, run):
    choice = {"preset": run.preset, "image_size": run.image_size, "learning_rate": run.learning_rate,
              "batch_size": run.batch_size, "augmentation": _changes_on(run.augmentation)}
    return {
        "place": place, "id": run.id, "url": reverse("training:detail", args=[run.id]),
        "settings": searching.run_in_words(choice, NETWORK_LABELS),
        "budget_text": f"about {duration(run.time_budget_s)}" if run.time_budget_s else "no limit",
        "status": run.status, "status_label": run.status_label, "badge_classes": run.badge_classes,
        "epoch_text": f"epoch {run.epoch} of {run.total_epochs}" if run.epoch else "",
        "best_val_text": "–" if run.best_val_accuracy is None else f"{100 * run.best_val_accuracy:.1f}%",
        "test_text": "–" if run.test_accuracy is None else f"{run.test_accuracy_percent}%",
    }


def _changes_on(augmentation):
    try:
        return searching.changes_on(augmentation)
    except SpecError:  # a run stored before these settings were checked: say "changes", the safe guess
        return True


def _summary(runs, active, waiting, found):
    finished = sum(run.status == TrainingRun.Status.SUCCEEDED for run in runs)
    parts = [f"{finished} of {count(len(runs) + waiting, 'run')} finished"]
    if active or waiting:
        parts.append(searching.waiting_in_words(active, waiting, django_settings.QUOTA_QUEUED_RUNS))
    if found.stopped_at:
        parts.append("the search was stopped")
    return ", ".join(parts) + "."


@login_required
def search_detail(request, search_pk):
    found = get_search_for_user(request, search_pk)
    values = found.values
    chosen = [(searching.LABELS[name].capitalize(), _values_in_words(name, values.get(name, [])))
              for name in searching.SEARCHED]
    each = found.runs.order_by("created_at", "id").values_list("time_budget_s", flat=True).first()
    return render(request, "training_app/search.html", {
        "search": found, "dataset": found.dataset, "board": leaderboard(found), "chosen": chosen,
        "total_text": dict(searching.TOTAL_BUDGETS).get(found.total_budget_s, duration(found.total_budget_s)),
        "each_text": duration(each) if each else "",
    })


def _values_in_words(name, values):
    if name == "preset":
        return ", ".join(NETWORK_LABELS.get(value, value) for value in values)
    if name == "augmentation":
        return ", ".join("on" if value else "off" for value in values)
    if name == "image_size":
        return ", ".join(f"{value} px" for value in values)
    return ", ".join(str(value) for value in values)


@login_required
def search_status(request, search_pk):
    """The leaderboard for the page's script. Its poll also starts the runs waiting their turn that have
    room, as a run's end does, so none stays waiting if the worker that ended a run died before it could
    start the next one."""
    found = get_search_for_user(request, search_pk)
    if found.waiting and start_waiting(found.id):
        found.refresh_from_db(fields=["waiting"])
    return JsonResponse(leaderboard(found))


@login_required
@require_POST
def search_stop(request, search_pk):
    found = get_search_for_user(request, search_pk)
    found.stop()
    messages.info(request, "Search stopped: the runs waiting their turn will not start, those waiting for a "
                           "worker were cancelled, and those training stop at their next step, keeping what "
                           "they learned so far.")
    return redirect("training:search", search_pk=search_pk)


@login_required
@require_POST
def search_longer(request, search_pk):
    """A new ordinary run with the best run's settings, a longer time budget and room for more epochs."""
    found = get_search_for_user(request, search_pk)
    best_id = leaderboard(found)["best"]
    if best_id is None:
        messages.error(request, "No run of this search has finished with a model yet: wait for one, then try again.")
        return redirect("training:search", search_pk=search_pk)
    best = found.runs.get(pk=best_id["id"])
    dataset = found.dataset
    suggested = TrainingRunForm.defaults_for(dataset)
    settings = best.settings()
    # The worker wrote down how many epochs fitted its share of the time (TrainingRun.record_plan): allow
    # twice as many, and at least the suggested number, within what the form accepts.
    settings["epochs"] = min(max(2 * best.epochs, suggested["epochs"]), SETTINGS["epochs"]["max"])
    settings["time_budget_s"] = searching.longer_budget(best.time_budget_s)
    form = TrainingRunForm.filled_in(posted(settings), dataset, suggested)
    run = start_run(form, dataset, request.user, suggested, search=found) if form.is_valid() else None
    if run is None:
        said = " ".join(str(error) for errors in form.errors.values() for error in errors)
        messages.error(request, f"Run {best.id} could not be trained again: {said}")
        return redirect("training:search", search_pk=search_pk)
    budget = f"about {duration(run.time_budget_s)}" if run.time_budget_s else "no time limit"
    messages.info(request, f"Training run {best.id}'s settings again, longer: {budget}, up to "
                           f"{count(run.epochs, 'epoch')}.")
    return redirect("training:detail", pk=run.pk)


urlpatterns = [
    path("search/new/<int:dataset_pk>/", search_new, name="search_new"),
    path("search/new/<int:dataset_pk>/preview/", search_preview, name="search_preview"),
    path("search/<int:search_pk>/", search_detail, name="search"),
    path("search/<int:search_pk>/status/", search_status, name="search_status"),
    path("search/<int:search_pk>/stop/", search_stop, name="search_stop"),
    path("search/<int:search_pk>/longer/", search_longer, name="search_longer"),
]
