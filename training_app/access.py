"""How any view fetches training runs for the person asking: anyone else's is a 404, the same as one
that does not exist, and a list holds only their own."""
from django.shortcuts import get_object_or_404

from .models import TrainingRun


def runs_for_user(request):
    return TrainingRun.objects.visible_to(request.user)


def get_run_for_user(request, pk):
    return get_object_or_404(runs_for_user(request).select_related("dataset", "version"), pk=pk)


def find_run_for_user(request, pk, **filters):
    """The run, or None when the person has no such run: for an address that only may name one
    (a form filled in from an earlier run), where a wrong number is no reason to refuse the page."""
    return None if pk is None else runs_for_user(request).filter(pk=pk, **filters).first()


def get_model_for_user(request, pk, columns=()):
    """A run of the person asking that has a trained model; with `columns`, only those are read (the
    one-picture API reads those predict_app.services.PREDICTOR_COLUMNS names)."""
    runs = runs_for_user(request).with_model()
    return get_object_or_404(runs.only(*columns) if columns else runs.select_related("dataset"), pk=pk)
