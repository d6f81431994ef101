from django import forms
from django.conf import settings

from training_app.models import TrainingRun


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "image/png,image/jpeg,image/bmp,image/gif"}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        files = data if isinstance(data, (list, tuple)) else [data]
        # An empty file among others is answered in its own result row ("This file is empty"), as
        # any other unusable file is; Django's FileField would refuse the whole form for it.
        files = [f if getattr(f, "size", None) == 0 and getattr(f, "name", "") else
                 super(MultipleFileField, self).clean(f, initial) for f in files if f]
        if not files:
            raise forms.ValidationError("Choose at least one image.")
        if len(files) > settings.MAX_PREDICT_FILES:
            raise forms.ValidationError(f"Choose at most {settings.MAX_PREDICT_FILES} images at a time.")
        return files


class PredictForm(forms.Form):
    run = forms.ModelChoiceField(queryset=TrainingRun.objects.none(), label="Model",
                                 empty_label=None)
    images = MultipleFileField(label="Images")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        runs = TrainingRun.objects.visible_to(user).with_model().select_related("dataset")
        self.fields["run"].queryset = runs
        self.fields["run"].label_from_instance = lambda run: (
            f"Run {run.id}: {run.dataset.name}, {run.get_preset_display().split(' (')[0]}"
            + (f", {run.test_accuracy:.1%} test accuracy" if run.test_accuracy is not None else "")
            + (f" — {run.verdict['badge']}" if run.verdict else ""))
