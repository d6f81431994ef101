"""How any view fetches a training run for the person asking: anyone else's is a 404, the same as
one that does not exist."""
from django.shortcuts import get_object_or_404

from .models import TrainingRun


def get_run_for_user(request, pk):
    return get_object_or_404(TrainingRun.objects.visible_to(request.user).select_related("dataset", "version"), pk=pk)
