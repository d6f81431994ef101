from django.urls import path

from . import assist_views, many_views, views

app_name = "predict"
urlpatterns = [path("", views.predict, name="index"), *many_views.urlpatterns, *assist_views.urlpatterns]
