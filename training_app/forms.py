from django import forms

from mlcore.models import PRESETS

from .models import TrainingRun


class TrainingRunForm(forms.ModelForm):
    preset = forms.ChoiceField(choices=list(PRESETS.items()), label="Network",
                               widget=forms.RadioSelect)
    image_size = forms.IntegerField(min_value=8, max_value=256, label="Image size (pixels)",
                                    help_text="Every image is resized to this many pixels square.")
    epochs = forms.IntegerField(min_value=1, max_value=500,
                                help_text="How many times the network sees every training image.")
    batch_size = forms.IntegerField(min_value=1, max_value=4096,
                                    help_text="Images per training step.")
    learning_rate = forms.FloatField(min_value=1e-6, max_value=1.0,
                                     help_text="How big each learning step is. 0.001 suits most cases.")

    class Meta:
        model = TrainingRun
        fields = ["preset", "image_size", "epochs", "batch_size", "learning_rate"]

    def __init__(self, *args, dataset, **kwargs):
        self.dataset = dataset
        super().__init__(*args, **kwargs)

    @staticmethod
    def defaults_for(dataset):
        """Settings a newcomer can train with unchanged."""
        size = min(max(dataset.typical_size(), 8), 64)
        return {"preset": "small_cnn", "image_size": size, "epochs": 15, "batch_size": 32, "learning_rate": 0.001}

    def clean(self):
        cleaned = super().clean()
        if self.dataset.is_busy():
            raise forms.ValidationError("Images are still being added to this dataset; wait until that finishes.")
        if self.dataset.usable_class_count() < 2:
            raise forms.ValidationError(
                "This dataset has images of fewer than two classes. A classifier needs at least two "
                "classes to tell apart: add images of another class first."
            )
        return cleaned
