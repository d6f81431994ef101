from django.urls import path

from . import many_views, views

app_name = "predict"
urlpatterns = [path("", views.predict, name="index"), *many_views.urlpatterns]
