from django.apps import AppConfig


class PredictAppConfig(AppConfig):
    name = "predict_app"
    verbose_name = "Predict"
