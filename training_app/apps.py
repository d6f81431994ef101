from django.apps import AppConfig


def runs_waiting_or_training(user) -> int:
    """The runs that hold a place in the person's limit of runs at once (QUOTA_QUEUED_RUNS)."""
    from .models import TrainingRun

    return TrainingRun.objects.filter(owner=user).active().count()


class TrainingAppConfig(AppConfig):
    name = "training_app"
    verbose_name = "Training"

    def ready(self):
        from dlsite import quotas

        quotas.register("queued_runs", runs_waiting_or_training)
