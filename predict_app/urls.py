from django.urls import path

from . import assist_views, many_views, views

app_name = "predict"
urlpatterns = [
    path("", views.predict, name="index"),
    path("runs/<int:run_pk>/why/<int:image_pk>.png", views.why_wrong, name="why_wrong"),
    *many_views.urlpatterns,
    *assist_views.urlpatterns,
]
