"""(being written: placeholder routes so that links resolve)"""
from django.http import HttpResponse
from django.urls import path


def _placeholder(request, *args, **kwargs):
    return HttpResponse("Coming soon.")


urlpatterns = [
    path("<int:pk>/gallery/", _placeholder, name="gallery"),
    path("<int:pk>/gallery/bulk/", _placeholder, name="bulk"),
]
