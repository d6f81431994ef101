"""(being written: placeholder routes so that links resolve)"""
from django.http import HttpResponse
from django.urls import path


def _placeholder(request, *args, **kwargs):
    return HttpResponse("Coming soon.")


urlpatterns = [
    path("new/", _placeholder, name="new"),
    path("<int:pk>/add/", _placeholder, name="add"),
]
