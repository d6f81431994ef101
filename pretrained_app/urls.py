from . import views

app_name = "pretrained"
urlpatterns = views.urlpatterns
