from django import forms
from django.conf import settings

from datasets_app.models import Dataset
from dlsite.uploads import FolderStartForm, archive_limits
from mlcore.words import whole_number
from training_app.models import TrainingRun

from .many import Refused, check_zip
from .models import Classification


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


def model_field(user) -> forms.ModelChoiceField:
    """The trained models of `user`, each named by its run, dataset, network and how good it is."""
    field = forms.ModelChoiceField(queryset=TrainingRun.objects.visible_to(user).with_model().select_related("dataset"),
                                   label="Model", empty_label=None)
    field.label_from_instance = lambda run: (
        f"Run {run.id}: {run.dataset.name}, {run.get_preset_display().split(' (')[0]}"
        + (f", {run.test_accuracy:.1%} test accuracy" if run.test_accuracy is not None else ", never tested")
        + (f" — {run.verdict['badge']}" if run.verdict else ""))
    return field


class PredictForm(forms.Form):
    images = MultipleFileField(label="Images")
    # The pictures sent here are not kept, so what each answer was based on is worked out with the answer
    # or not at all; only when asked, since it takes longer than the answer itself.
    explain = forms.BooleanField(required=False, label="Also show why: what each answer was based on (slower)")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields = {"run": model_field(user), **self.fields}


class ManyZipForm(forms.Form):
    """Many pictures in a zip, for one model to classify (in folders or not: the folders are ignored)."""

    file = forms.FileField(label="Zip file")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields = {"run": model_field(user), **self.fields}

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > settings.MAX_UPLOAD_BYTES:
            raise forms.ValidationError(f"This file holds {upload.size:,} bytes; the limit is "
                                        f"{settings.MAX_UPLOAD_BYTES:,}.")
        if not upload.name.lower().endswith(".zip"):
            raise forms.ValidationError("Please choose a .zip file.")
        try:
            check_zip(upload, archive_limits())
        except Refused as refused:
            raise forms.ValidationError(str(refused)) from None
        upload.seek(0)
        return upload


class ManyFolderStartForm(FolderStartForm):
    """What the browser announces before it sends a folder of pictures to classify, in parts."""

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["run"] = model_field(user)


class UnsureForm(forms.ModelForm):
    """The confidence, in percent, below which a picture counts as "not sure"."""

    percent = forms.IntegerField(min_value=1, max_value=99, label="Not sure below (%)")

    class Meta:
        model = Classification
        fields = []

    def __init__(self, *args, instance, **kwargs):
        super().__init__(*args, instance=instance, initial={"percent": round(100 * instance.unsure_below)}, **kwargs)

    def save(self, commit=True):
        self.instance.unsure_below = self.cleaned_data["percent"] / 100
        self.instance.save(update_fields=["unsure_below"])
        return self.instance


class ToInboxForm(forms.Form):
    """Pictures of a classification to send to one of the person's datasets, into its inbox."""

    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(), label="Dataset", empty_label=None)
    which = forms.ChoiceField(choices=[("chosen", "the pictures ticked below"), ("unsure", "every “not sure” picture")],
                              initial="chosen")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = Dataset.objects.visible_to(user)

    def clean(self):
        cleaned = super().clean()
        # The ticked pictures' ids; anything else sent is left out (the view keeps only this job's).
        ids = (whole_number(value) for value in self.data.getlist("pictures")[:settings.MAX_ZIP_ENTRIES])
        cleaned["pictures"] = [number for number in ids if number is not None]
        return cleaned

    def message(self):
        return " ".join(message for messages in self.errors.values() for message in messages)
