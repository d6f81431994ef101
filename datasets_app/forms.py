from django import forms
from django.conf import settings

from dlsite.uploads import MAX_BATCH_BYTES, FolderStartForm, archive_limits
from mlcore.archive import ArchiveRejected, plan_files
from mlcore.words import file_size

from .sources import check_zip, fit_dataset_name

DEFAULT_SPLIT_PERCENT = 10
SMALLEST_TRAINING_PERCENT = 10


class SplitPercentForm(forms.Form):
    """How a new dataset splits images that no train/, val/ or test/ folder places."""

    val_percent = forms.IntegerField(label="Validation %", min_value=0, max_value=90, required=False,
                                     initial=DEFAULT_SPLIT_PERCENT)
    test_percent = forms.IntegerField(label="Test %", min_value=0, max_value=90, required=False,
                                      initial=DEFAULT_SPLIT_PERCENT)

    def clean(self):
        cleaned = super().clean()
        val, test = self._percent("val_percent"), self._percent("test_percent")
        if val + test > 100 - SMALLEST_TRAINING_PERCENT:
            raise forms.ValidationError(
                f"Validation and test together can be at most {100 - SMALLEST_TRAINING_PERCENT} %: "
                "the model needs images left to learn from."
            )
        return cleaned

    def _percent(self, field):
        # An empty box (or a form sent by a program that leaves the fields out) means the default.
        value = self.cleaned_data.get(field)
        return DEFAULT_SPLIT_PERCENT if value is None else value

    def split_fractions(self):
        """The dataset fields: {"val_fraction": …, "test_fraction": …}."""
        return {"val_fraction": self._percent("val_percent") / 100,
                "test_fraction": self._percent("test_percent") / 100}


class AddZipForm(forms.Form):
    file = forms.FileField(label="Zip file",
                           help_text="One folder per class; the folder name is the label. PNG, JPEG, BMP or GIF.",
                           widget=forms.ClearableFileInput(attrs={"accept": ".zip,application/zip"}))

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > settings.MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"This file is {file_size(upload.size)}; the limit is {file_size(settings.MAX_UPLOAD_BYTES)}."
            )
        if not upload.name.lower().endswith(".zip"):
            raise forms.ValidationError("Please upload a .zip file of class folders.")
        try:
            self.plan = check_zip(upload)
        except ArchiveRejected as exc:
            raise forms.ValidationError(str(exc)) from None
        upload.seek(0)
        return upload


class ZipUploadForm(SplitPercentForm, AddZipForm):
    """A new dataset from a zip."""

    name = forms.CharField(max_length=200, required=False,
                           help_text="Leave empty to use the zip file's name.")
    field_order = ["name", "file", "val_percent", "test_percent"]

    def dataset_name(self):
        name = self.cleaned_data["name"].strip()
        return fit_dataset_name(name or self.cleaned_data["file"].name.rsplit("/", 1)[-1][:-4] or "My dataset")


class NewFolderDatasetForm(SplitPercentForm, FolderStartForm):
    """A new dataset from a folder the browser sends."""

    name = forms.CharField(max_length=200, required=False)

    def dataset_name(self):
        return fit_dataset_name(self.cleaned_data["name"].strip() or self.cleaned_data["folder_name"])


class MultipleImageInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleImageField(forms.FileField):
    """Several files in one field (Django's documented recipe): cleans each, gives a list."""

    def __init__(self, **kwargs):
        # An empty file is one more file the upload's report lists as not used; the others are still read.
        super().__init__(widget=MultipleImageInput(attrs={"accept": "image/*"}), allow_empty_file=True, **kwargs)

    def clean(self, data, initial=None):
        files = list(data) if isinstance(data, (list, tuple)) else [data]
        # No file at all is cleaned as one missing file, so that `required` is checked (not an empty list).
        return [super(MultipleImageField, self).clean(one, initial) for one in files or [None]]


class LooseImagesForm(forms.Form):
    """Images picked one by one, with no folder: they wait in the dataset's inbox for a class.

    This plain form is what works without JavaScript (at most DATA_UPLOAD_MAX_NUMBER_FILES
    images); with JavaScript the page sends them in batches like a folder."""

    images = MultipleImageField(label="Images", error_messages={"required": "Pick at least one image."})

    def clean_images(self):
        files = self.cleaned_data["images"]
        size = sum(f.size for f in files)
        if size > MAX_BATCH_BYTES:
            raise forms.ValidationError(f"These images hold {file_size(size)}; send at most "
                                        f"{file_size(MAX_BATCH_BYTES)} at a time.")
        try:
            plan_files([(f.name, f.size) for f in files], archive_limits())
        except ArchiveRejected as exc:
            raise forms.ValidationError(str(exc)) from None
        return files
