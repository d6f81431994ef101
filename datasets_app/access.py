"""How any view, of this app or another, fetches a dataset for the person asking: anyone else's is
a 404, the same as one that does not exist."""
from django.shortcuts import get_object_or_404

from .models import Dataset


def get_dataset_for_user(request, pk):
    return get_object_or_404(Dataset.objects.visible_to(request.user), pk=pk)
