from django.contrib import admin

from .models import EpochMetric, TrainingRun

admin.site.register(TrainingRun)
admin.site.register(EpochMetric)
