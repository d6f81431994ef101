from django.urls import path

from . import builder_views, export_views, preview_views, queue_views, review_views, search_views, trees_views, views

app_name = "training"
urlpatterns = [
    path("", views.run_list, name="list"),
    path("compare/", views.run_compare, name="compare"),
    path("new/<int:dataset_pk>/", views.run_new, name="new"),
    path("new/<int:dataset_pk>/estimate/", views.run_estimate, name="estimate"),
    path("<int:pk>/", views.run_detail, name="detail"),
    path("<int:pk>/pictures/", views.run_pictures, name="pictures"),
    path("<int:pk>/status/", views.run_status_json, name="status"),
    path("<int:pk>/cancel/", views.run_cancel, name="cancel"),
    path("<int:pk>/delete/", views.run_delete, name="delete"),
    path("<int:pk>/model.keras", views.model_download, {"kind": "keras"}, name="model"),
    path("<int:pk>/model.json", views.model_download, {"kind": "json"}, name="model_info"),
    *queue_views.urlpatterns,
    *builder_views.urlpatterns,
    *export_views.urlpatterns,
    *preview_views.urlpatterns,
    *search_views.urlpatterns,
    *review_views.urlpatterns,
    *trees_views.urlpatterns,
    path("dataset/<int:dataset_pk>/", views.dataset_runs, name="dataset_runs"),
]
