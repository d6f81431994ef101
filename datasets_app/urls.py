from django.urls import path

from . import views

app_name = "datasets"
urlpatterns = [
    path("", views.dataset_list, name="list"),
    path("sample/", views.create_sample, name="sample"),
    path("<int:pk>/", views.dataset_detail, name="detail"),
    path("<int:pk>/progress/", views.dataset_progress, name="progress"),
    path("<int:pk>/delete/", views.dataset_delete, name="delete"),
    path("<int:pk>/images/<int:image_pk>/", views.image_file, name="image"),
]
