"""(being written: placeholder routes so that links resolve)"""
from django.http import HttpResponse
from django.urls import path


def _placeholder(request, *args, **kwargs):
    return HttpResponse("Coming soon.")


urlpatterns = [
    path("<int:pk>/inbox/", _placeholder, name="inbox"),
    path("<int:pk>/classes/", _placeholder, name="classes"),
    path("<int:pk>/conflicts/", _placeholder, name="conflicts"),
    path("<int:pk>/history/", _placeholder, name="history"),
]
