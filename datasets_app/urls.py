"""The dataset pages. Each feature's module lists its own routes, so each has one obvious home:
views (overview, image files), upload_views (zip and folder uploads, reports),
gallery_views (browse and bulk edit), label_views (inbox, classes, conflicts, history). The search for
likely wrong labels is training_app's (review_views), as it reads a network."""
from django.urls import path

from . import gallery_views, label_views, upload_views, views

app_name = "datasets"
urlpatterns = [
    path("<int:pk>/", views.dataset_detail, name="detail"),
    path("<int:pk>/progress/", views.dataset_progress, name="progress"),
    path("<int:pk>/split/", views.dataset_resplit, name="resplit"),
    path("<int:pk>/delete/", views.dataset_delete, name="delete"),
    path("<int:pk>/images/<int:image_pk>/", views.image_file, name="image"),
    path("<int:pk>/images/<int:image_pk>/thumbnail/", views.image_thumbnail, name="thumbnail"),
    path("<int:pk>/uploads/<int:upload_pk>/report/", views.upload_report, name="report"),
    path("<int:pk>/uploads/<int:upload_pk>/report.csv", views.upload_report_csv, name="report_csv"),
    path("<int:pk>/uploads/<int:upload_pk>/retry/", views.upload_retry, name="upload_retry"),
    path("<int:pk>/uploads/<int:upload_pk>/cancel/", views.upload_cancel, name="upload_cancel"),
    path("<int:pk>/uploads/<int:upload_pk>/delete/", views.upload_delete, name="upload_delete"),
    *upload_views.urlpatterns,
    *gallery_views.urlpatterns,
    *label_views.urlpatterns,
]
