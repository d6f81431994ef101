"""Starting a run from a filled-in training form, and an export of a run's model: the one way the pages
and the API start either."""
from django.db import transaction

from datasets_app.versions import freeze
from dlsite.quotas import queued_runs_refusal

from .models import ModelExport, TreesTrial
from .presenters import budget_facts
from .tasks import fit_trees, make_export, train


def start_run(form, dataset, user, suggested, search=None):
    """The run the valid `form` describes, saved on a frozen version of the dataset and queued; None, with
    the reason added to the form, when the person's limit of runs at once is reached. `search`: the "Try
    several settings" search it belongs to, if any."""
    if refusal := queued_runs_refusal(user):  # settings.QUOTA_QUEUED_RUNS
        form.add_error(None, refusal)
        return None
    run = form.save(commit=False)
    if run.image_size == suggested["image_size"]:  # left as suggested: the budget may make it smaller
        run.image_size = budget_facts(dataset, run.settings())["image_size"]
    run.owner, run.dataset, run.search = user, dataset, search
    with transaction.atomic():
        run.version = freeze(dataset, user)
        run.save()
        train.delay_on_commit(run.id)  # the worker must never read an uncommitted row
    return run


def start_export(run, kind) -> ModelExport:
    """The export of `run` in format `kind`, sent to a worker unless it is on its way already."""
    export, send = ModelExport.request(run, kind)
    if send:
        make_export.delay(export.id)
    return export


def start_trees(run) -> TreesTrial:
    """Boosted trees on `run`'s features, sent to a worker unless on their way already."""
    trial, send = TreesTrial.request(run)
    if send:
        fit_trees.delay(trial.id)
    return trial
