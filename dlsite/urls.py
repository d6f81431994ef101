from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/", include("accounts_app.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("datasets/", include("datasets_app.urls")),
    path("runs/", include("training_app.urls")),
    path("predict/", include("predict_app.urls")),
    path("pretrained/", include("pretrained_app.urls")),
    path("housekeeping/", include("housekeeping_app.urls")),
    path("api/", include("api_app.urls")),
    path("admin/", admin.site.urls),
]
