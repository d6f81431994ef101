from django.apps import AppConfig


class PretrainedAppConfig(AppConfig):
    name = "pretrained_app"
    verbose_name = "Pretrained networks"
