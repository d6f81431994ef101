from django.apps import AppConfig


class HousekeepingAppConfig(AppConfig):
    name = "housekeeping_app"
    verbose_name = "Housekeeping"
