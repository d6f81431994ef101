"""How any view fetches a training run for the person asking: anyone else's is a 404, the same as
one that does not exist."""
from django.shortcuts import get_object_or_404

from .models import TrainingRun


def get_run_for_user(request, pk):
    return get_object_or_404(TrainingRun.objects.visible_to(request.user).select_related("dataset", "version"), pk=pk)


def get_model_for_user(request, pk, columns=()):
    """A run of the person asking that has a trained model; with `columns`, only those are read (the
    one-picture API reads two)."""
    runs = TrainingRun.objects.visible_to(request.user).with_model()
    return get_object_or_404(runs.only(*columns) if columns else runs.select_related("dataset"), pk=pk)
