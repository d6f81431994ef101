"""Starting a run from a filled-in training form, and an export of a run's model: the one way the pages
and the API start either. A search's runs that the owner's limit of runs at once leaves no room for wait
their turn in the search, and start here one by one as places free up (start_waiting)."""
import logging

from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import QueryDict

from datasets_app.versions import freeze
from dlsite.quotas import queued_runs_refusal

from .forms import SearchRunForm, TrainingRunForm
from .models import ModelExport, Search, TreesTrial
from .presenters import budget_facts
from .tasks import fit_trees, make_export, train

logger = logging.getLogger(__name__)


def start_run(form, dataset, user, suggested, search=None, version=None):
    """The run the valid `form` describes, saved on a frozen version of the dataset (`version`, else the
    dataset as it is now) and queued; None, with the reason added to the form, when the person's limit of
    runs at once is reached. `search`: the "Try several settings" search it belongs to, if any."""
    with transaction.atomic():
        # The person's row is locked while the runs are counted and the new one saved: two starts at once
        # (two runs of searches ending together, a click meanwhile) cannot both take the last place.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        if refusal := queued_runs_refusal(user):  # settings.QUOTA_QUEUED_RUNS
            form.add_error(None, refusal)
            return None
        run = form.save(commit=False)
        if run.image_size == suggested["image_size"]:  # left as suggested: the budget may make it smaller
            run.image_size = budget_facts(dataset, run.settings())["image_size"]
        run.owner, run.dataset, run.search = user, dataset, search
        run.version = version or freeze(dataset, user)
        run.save()
        train.delay_on_commit(run.id)  # the worker must never read an uncommitted row
    return run


def start_waiting(search_id) -> int:
    """Start as many of the search's runs waiting their turn as its owner's limit of runs at once allows
    now, first in line first; how many started. Called when a run ends, by the search's page as it
    polls, and by the hourly clean-up, so it costs little when nothing can start and may be called any
    number of times: the search's row stays locked until the runs it started are saved, so two callers
    never start one run twice."""
    with transaction.atomic():
        # The search's row alone (not its dataset's nor its owner's, which start_run and freeze lock in
        # that order, as the Train button does: no two starts wait for each other's locks).
        search = (Search.objects.select_for_update(of=("self",)).select_related("dataset", "owner")
                  .filter(id=search_id).first())
        if search is None or not search.waiting or search.stopped_at or queued_runs_refusal(search.owner):
            return 0
        dataset, owner = search.dataset, search.owner
        if dataset.is_busy():
            # The training form refuses a dataset whose pictures are being added (as the Train button
            # does): the runs wait for the next call rather than fail that check one by one and be dropped.
            return 0
        suggested = TrainingRunForm.defaults_for(dataset)
        # Every run of a search learns from the same pictures, even when the dataset changed meanwhile.
        first = search.runs.exclude(version=None).order_by("id").first()
        started = 0
        while search.waiting:
            form = SearchRunForm(_as_posted(search.waiting[0]), dataset=dataset)
            if not form.is_valid():  # checked when the search started: only a change of the site's makes this
                logger.warning("Search %s: a waiting run cannot start any more and is dropped: %s",
                               search.id, form.errors.as_text())
            elif start_run(form, dataset, owner, suggested, search=search,
                           version=first.version if first else None) is None:
                break  # the limit is reached: the rest wait for the next place
            else:
                started += 1
            search.waiting = search.waiting[1:]
        search.save(update_fields=["waiting"])
    return started


def start_all_waiting() -> int:
    """start_waiting for every search with runs waiting their turn: the hourly clean-up's safety net, for a
    run that went without a word (its worker died right after it ended it) while nobody had its page open."""
    searches = Search.objects.filter(stopped_at=None).exclude(waiting=[]).values_list("id", flat=True)
    return sum(start_waiting(search_id) for search_id in searches)


def _as_posted(data: dict) -> QueryDict:
    posted = QueryDict(mutable=True)
    posted.update(data)
    return posted


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
