from django import forms
from django.conf import settings

from mlcore.archive import ArchiveRejected

from .ingestion import check_zip


class ZipUploadForm(forms.Form):
    name = forms.CharField(max_length=200, required=False,
                           help_text="Leave empty to use the zip file's name.")
    file = forms.FileField(label="Zip file",
                           help_text="One folder per class; the folder name is the label. PNG, JPEG, BMP or GIF.",
                           widget=forms.ClearableFileInput(attrs={"accept": ".zip,application/zip"}))

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > settings.MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"This file is {upload.size / 1024**2:,.0f} MB; the limit is {settings.MAX_UPLOAD_BYTES / 1024**2:,.0f} MB."
            )
        if not upload.name.lower().endswith(".zip"):
            raise forms.ValidationError("Please upload a .zip file of class folders.")
        try:
            self.plan = check_zip(upload)
        except ArchiveRejected as exc:
            raise forms.ValidationError(str(exc)) from None
        upload.seek(0)
        return upload

    def dataset_name(self):
        name = self.cleaned_data["name"].strip()
        return name or self.cleaned_data["file"].name.rsplit("/", 1)[-1][:-4] or "My dataset"
