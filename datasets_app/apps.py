from django.apps import AppConfig


class DatasetsAppConfig(AppConfig):
    name = "datasets_app"
    verbose_name = "Datasets"

    def ready(self):
        from dlsite import quotas

        from .usage import bytes_stored, images_stored

        quotas.register("images", images_stored)
        quotas.register("bytes", bytes_stored)
