from . import views

app_name = "housekeeping"
urlpatterns = views.urlpatterns
