"""How any view, of this app or another, fetches datasets and their images for the person asking:
anyone else's is a 404, the same as one that does not exist, and a list holds only their own."""
from django.shortcuts import get_object_or_404

from .models import Dataset, Image


def datasets_for_user(request):
    return Dataset.objects.visible_to(request.user)


def get_dataset_for_user(request, pk):
    return get_object_or_404(datasets_for_user(request), pk=pk)


def images_for_user(request):
    """Images of the person's datasets, in one query with the image (no dataset fetched first):
    an image file is asked for many times a page."""
    return Image.objects.filter(dataset__in=datasets_for_user(request))
