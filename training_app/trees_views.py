"""Boosted trees on a run's features (training_app/boosting.py, mlcore/trees.py), from the run page:
try them, follow the worker, and choose whether they answer for the run. Thin: one ownership check,
then the row."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import redirect
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from .access import get_run_for_user
from .models import TreesTrial
from .presenters import trees_in_words
from .starting import start_trees


def _back(run):
    return redirect(reverse("training:detail", args=[run.pk]) + "#trees")


@login_required
@require_POST
def trees_make(request, pk):
    run = get_run_for_user(request, pk)
    if not run.has_model:
        raise Http404("This run has no model.")
    start_trees(run)
    if request.accepts("text/html"):
        messages.info(request, "Boosted trees: a worker is fitting them on what the network sees; the figures "
                               "will be shown below when they are ready.")
        return _back(run)
    return JsonResponse(trees_in_words(run))


@login_required
@require_POST
def trees_choose(request, pk):
    """use=1: the trees answer for the run (only when they did better on the validation pictures);
    anything else: the network alone again."""
    run = get_run_for_user(request, pk)
    trial = TreesTrial.objects.filter(run=run).first()
    use = request.POST.get("use") == "1"
    if use and (trial is None or not trial.did_better or trial.model_file != run.model_file):
        messages.error(request, "The trees can answer only when they did better than the network on the "
                                "validation pictures.")
        return _back(run)
    if trial is not None:
        TreesTrial.objects.filter(id=trial.id).update(chosen=use)
    messages.info(request, "The classify page and the API now answer with the network's features and the boosted "
                           "trees." if use else "The classify page and the API now answer with the network alone.")
    return _back(run)


@login_required
def trees_state(request, pk):
    return JsonResponse(trees_in_words(get_run_for_user(request, pk)))


urlpatterns = [
    path("<int:pk>/trees/", trees_state, name="trees_state"),
    path("<int:pk>/trees/make/", trees_make, name="trees_make"),
    path("<int:pk>/trees/choose/", trees_choose, name="trees_choose"),
]
