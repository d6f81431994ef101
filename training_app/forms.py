import json

from django import forms
from django.conf import settings

from dlsite.quotas import queued_runs_left, queued_runs_refusal
from mlcore import search
from mlcore.builder import (BASE_PARAMS, BASES, LAYER_TYPES, SpecError, missing_weights_message, normalise_spec,
                            summarise)
from mlcore.budget import TIME_BUDGETS
from mlcore.defaults import suggest
from mlcore.json_input import UnreadableJson, read_json
from mlcore.options import AUGMENTATIONS, SETTINGS, augmentation_in_words, normalise_augmentation
from mlcore.presets import PRESET_SPECS, available_presets, preset_spec
from mlcore.words import decimal, whole_number

from pretrained_app.weights import on_site as weights_on_site

from .models import TrainingRun


class PlainNumberInput(forms.NumberInput):
    """A number box that shows a small step size as "0.000003", not Python's "3e-06"."""

    def format_value(self, value):
        return decimal(value, digits=10) if isinstance(value, float) else super().format_value(value)


def field_for(param: dict, radio: bool = False) -> forms.Field:
    """The form field of a setting described in mlcore/options.py: its label, help, range or choices."""
    common = {"label": param["label"], "help_text": param["help"], "initial": param["default"]}
    if param["kind"] == "int":
        return forms.IntegerField(min_value=param["min"], max_value=param["max"], **common)
    if param["kind"] == "float":
        return forms.FloatField(min_value=param["min"], max_value=param["max"], widget=PlainNumberInput, **common)
    if param["kind"] == "bool":
        return forms.BooleanField(required=False, **common)
    return forms.TypedChoiceField(choices=[tuple(pair) for pair in param["choices"]], coerce=type(param["default"]),
                                  widget=forms.RadioSelect if radio else None, **common)


def _setting_field(model_field, **kwargs):
    """A run setting's field from its description; the others (the network) as Django makes them. Choices
    are radio buttons: each needs its sentence of explanation to be understood."""
    if model_field.name in SETTINGS:
        return field_for(SETTINGS[model_field.name], radio=True)
    return model_field.formfield(**kwargs)


class TrainingRunForm(forms.ModelForm):
    """Every setting of a run. The network arrives as JSON in `model_spec`, kept up to date by the
    layer builder (static/js/builder.js); augmentation arrives as one field per setting."""

    model_spec = forms.CharField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = TrainingRun
        fields = ["preset", "model_spec", "image_size", "channels", "resize_mode", "epochs", "batch_size",
                  "optimizer", "learning_rate", "lr_schedule", "early_stopping_patience", "class_weighting",
                  "label_smoothing", "seed", "fine_tune_epochs", "fine_tune_learning_rate", "use_all_gpus",
                  "time_budget_s"]
        formfield_callback = _setting_field
        labels = {"preset": "Network"}
        help_texts = {
            "preset": "A ready-made network to train. With JavaScript on, the layer builder below chooses it instead.",
        }

    AUGMENTATION_PREFIX = "augment_"

    def __init__(self, *args, dataset, **kwargs):
        self.dataset = dataset
        super().__init__(*args, **kwargs)
        for name, change in AUGMENTATIONS.items():
            self.fields[self.AUGMENTATION_PREFIX + name] = field_for(change.param)
        initial_augmentation = (self.initial or {}).get("augmentation") or {}
        for name, value in normalise_augmentation(initial_augmentation).items():
            self.initial.setdefault(self.AUGMENTATION_PREFIX + name, value)
        if isinstance(self.initial.get("model_spec"), dict):
            self.initial["model_spec"] = json.dumps(self.initial["model_spec"])

    def augmentation_fields(self):
        return [self[self.AUGMENTATION_PREFIX + name] for name in AUGMENTATIONS]

    def other_fields(self):
        return [field for field in self if not field.name.startswith(self.AUGMENTATION_PREFIX)]

    # ---- for the page (training_app/templates/training_app/new.html): its sections, in plain words

    def _named(self, *names):
        return [self[name] for name in names]

    def input_fields(self):
        """"Pictures going in": what every image becomes before the network sees it."""
        return self._named("image_size", "channels", "resize_mode")

    def main_learning_fields(self):
        """"How it learns", the settings most people look at."""
        return self._named("time_budget_s", "epochs", "batch_size", "learning_rate")

    def advanced_learning_fields(self):
        return self._named("optimizer", "lr_schedule", "class_weighting", "early_stopping_patience",
                           "label_smoothing", "seed")

    def fine_tune_fields(self):
        return self._named("fine_tune_epochs", "fine_tune_learning_rate")

    def advanced_has_errors(self):
        """The "More settings" block opens by itself when one of its settings needs a change."""
        return any(field.errors for field in [*self.advanced_learning_fields(), self["use_all_gpus"]])

    def builder_start(self):
        """What the embedded layer builder opens with: {"options": its JSON options (builder_options below),
        "preset": the preset to open by name, or "" when it opens `options["spec"]` instead}.

        A preset opened by name shows its description; a changed or copied network opens as it is.
        The page's settings (step size, optimizer) are never changed by this first opening."""
        if getattr(self, "_builder_start", None) is None:
            size, channels = whole_number(self["image_size"].value()), whole_number(self["channels"].value())
            options = builder_options(self.dataset, image_size=size, channels=channels if channels in (1, 3) else None)
            preset = self["preset"].value() or ""
            spec = self._spec(self["model_spec"].value())
            available = {p["key"] for p in options["presets"] if p["available"]}
            if preset in available and (spec is None or self._same_network(spec, preset)):
                self._builder_start = {"options": options, "preset": preset}
            else:
                if spec is None and preset in PRESET_SPECS:
                    spec = preset_spec(preset)
                options["spec"] = spec
                self._builder_start = {"options": options, "preset": ""}
        return self._builder_start

    @staticmethod
    def _spec(value):
        if isinstance(value, dict):
            return value
        try:
            spec = read_json(value or "")
        except (TypeError, ValueError):
            return None
        return spec if isinstance(spec, dict) else None

    @staticmethod
    def _same_network(spec, preset):
        try:
            return normalise_spec(spec) == normalise_spec(preset_spec(preset))
        except SpecError:
            return False

    @staticmethod
    def defaults_for(dataset, budget_s=0):
        """Settings a newcomer can train with unchanged (mlcore/defaults.py says why each), for the time
        budget chosen: a bigger one buys more of the plan for photos (mlcore.defaults.PHOTO_PLANS)."""
        return suggest(dataset.training_facts(), weights_on_site(), budget_s=budget_for_plan(budget_s))

    @classmethod
    def filled_in(cls, posted, dataset, suggested):
        """The form over `posted` with every setting it leaves out taken from `suggested`: a program
        (or a person with JavaScript off) can send only what it wants to change."""
        data = posted.copy()
        flat = {key: value for key, value in suggested.items() if key not in ("augmentation", "reasons")}
        flat["model_spec"] = json.dumps(flat["model_spec"])
        if "preset" in posted:
            del flat["model_spec"]  # the posted preset's own network, not the suggested one
        for name, value in normalise_augmentation(suggested.get("augmentation")).items():
            flat[cls.AUGMENTATION_PREFIX + name] = value
        for key, value in flat.items():
            if key not in data and key != "use_all_gpus":  # an unticked box is simply absent
                data[key] = str(value)
        return cls(data, dataset=dataset)

    def clean_model_spec(self):
        text = self.cleaned_data.get("model_spec") or ""
        if not text:
            return None  # the preset's own network
        try:
            return read_json(text, "The network description")
        except UnreadableJson as error:
            raise forms.ValidationError(f"{error} Open a preset again.") from None

    def clean(self):
        cleaned = super().clean()
        if self.dataset.is_busy():
            raise forms.ValidationError("Images are still being added to this dataset; wait until that finishes.")
        classes = self.dataset.usable_class_count()
        if classes < 2:
            raise forms.ValidationError(
                "This dataset has images of fewer than two classes. A classifier needs at least two "
                "classes to tell apart: add images of another class first."
            )
        preset = cleaned.get("preset")
        if preset and preset != "custom" and cleaned.get("model_spec") is None:
            cleaned["model_spec"] = preset_spec(preset)
        if cleaned.get("model_spec") is None:
            self.add_error("model_spec", "Choose a network.")
            return cleaned
        try:
            cleaned["augmentation"] = normalise_augmentation(
                {name: cleaned.get(self.AUGMENTATION_PREFIX + name) for name in AUGMENTATIONS
                 if cleaned.get(self.AUGMENTATION_PREFIX + name) is not None})
        except SpecError as error:
            raise forms.ValidationError(error.message) from None
        size, channels = cleaned.get("image_size"), cleaned.get("channels")
        if size and channels:
            try:
                # Worked out without building the network: the web process holds no Keras model.
                summary = summarise(cleaned["model_spec"], (size, size, channels), classes)
            except SpecError as error:
                self.add_error("model_spec", error.message)
                return cleaned
            spec = summary["spec"]
            cleaned["model_spec"] = spec
            if spec["base"]:
                missing = missing_weights_message(spec["base"]["name"], weights_on_site())
                if missing:
                    self.add_error("model_spec", missing)
            # A preset whose layers were changed is a network built by hand.
            if preset in PRESET_SPECS and spec != normalise_spec(preset_spec(preset)):
                cleaned["preset"] = "custom"
        return cleaned

    def save(self, commit=True):
        run = super().save(commit=False)
        run.model_spec = self.cleaned_data["model_spec"]
        run.preset = self.cleaned_data["preset"]
        run.augmentation = self.cleaned_data["augmentation"]
        if commit:
            run.save()
        return run


def builder_options(dataset, image_size=None, channels=None):
    """What the ModelBuilder component (static/js/builder.js) needs, JSON-ready, for a dataset; the input
    size and colour are the suggested ones unless given."""
    return {
        "presets": available_presets(weights_on_site()),
        "schema": LAYER_TYPES,
        "bases": {name: {"label": base.label, "about": base.about} for name, base in BASES.items()},
        "baseParams": BASE_PARAMS,
        "imageSize": image_size or TrainingRunForm.defaults_for(dataset)["image_size"],
        "channels": channels or dataset.channels(),
        "dataset": dataset.pk,
    }


def budget_for_plan(value) -> int:
    """A time budget from a request (text or number) as one of the budgets offered, else 0 (no limit)."""
    budget = whole_number(value) if isinstance(value, str) else value
    return budget if budget in dict(TIME_BUDGETS) else 0


# ---- "Try several settings" (mlcore/search.py)

class SearchRunForm(TrainingRunForm):
    """One run of a search: an ordinary run in every way but its time budget, which is its share of the
    search's total time and so need not be one of the budgets the training form offers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["time_budget_s"] = forms.IntegerField(min_value=search.MIN_RUN_S, label="Time budget (seconds)")

    def _get_validation_exclusions(self):
        # The model's choices are the training form's budgets; this share was checked by the field above.
        return super()._get_validation_exclusions() | {"time_budget_s"}


def _checkboxes(label, choices, coerce, missing):
    return forms.TypedMultipleChoiceField(
        label=label, choices=choices, coerce=coerce, widget=forms.CheckboxSelectMultiple,
        error_messages={"required": missing,
                        "invalid_choice": "“%(value)s” is not one of the values offered here: choose from the list."})


IMAGE_SIZES = [16, 28, 32, 48, 64, 96, 128, 160, 192, 224, 260]
STEP_SIZES = [0.0001, 0.0003, 0.001, 0.003, 0.01]
BATCH_SIZES = [8, 16, 32, 64, 128]


class SearchForm(forms.Form):
    """The values a search tries and how: the page offers a few values of each setting, the suggested
    one among them and ticked."""

    name = forms.CharField(max_length=120, required=False, label="Name",
                           help_text="To find the search again; left empty, it is named after the dataset.")
    mode = forms.ChoiceField(choices=search.MODES, initial="grid", widget=forms.RadioSelect, label="Which combinations")
    picks = forms.IntegerField(min_value=1, max_value=search.MAX_RUNS, initial=4, required=False,
                               label="How many random picks")
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=1, label="Random seed",
                              help_text="The same seed picks the same combinations.")
    total_budget_s = forms.TypedChoiceField(choices=search.TOTAL_BUDGETS, coerce=int, initial=1800,
                                            widget=forms.RadioSelect, label="Time for the whole search")

    def __init__(self, *args, dataset, suggested, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.dataset, self.suggested, self.user = dataset, suggested, user
        presets = [(p["key"], p["label"]) for p in available_presets(weights_on_site()) if p["available"]]
        sizes = sorted({*IMAGE_SIZES, suggested["image_size"]})
        steps = sorted({*STEP_SIZES, suggested["learning_rate"]})
        batches = sorted({*BATCH_SIZES, suggested["batch_size"]})
        self.fields["preset"] = _checkboxes("Network", presets, str, "Choose at least one network.")
        self.fields["preset"].error_messages["invalid_choice"] = "“%(value)s” is not a network this site offers."
        self.fields["image_size"] = _checkboxes("Input size (pixels)", [(str(n), f"{n} × {n}") for n in sizes], int,
                                                "Choose at least one input size.")
        self.fields["learning_rate"] = _checkboxes("Step size (learning rate)",
                                                   [(decimal(lr), decimal(lr)) for lr in steps], float,
                                                   "Choose at least one step size.")
        self.fields["batch_size"] = _checkboxes("Batch size", [(str(n), str(n)) for n in batches], int,
                                                "Choose at least one batch size.")
        on = search.augmentation_for(True, suggested.get("augmentation"))
        self.fields["augmentation"] = _checkboxes(
            "Random changes (augmentation)",
            [("off", "Off"), ("on", f"On: {augmentation_in_words(on)}")], lambda value: value == "on",
            "Choose random changes on, off, or both.")
        # The suggested value of each, ticked, with the next smaller step size and random changes both ways:
        # four runs to start from (those the person's limit of runs at once leaves no room for wait their turn).
        lower = max((lr for lr in steps if lr < suggested["learning_rate"]), default=None)
        self.initial.setdefault("preset", [suggested["preset"]])
        self.initial.setdefault("image_size", [str(suggested["image_size"])])
        self.initial.setdefault("learning_rate",
                                [decimal(lr) for lr in (suggested["learning_rate"], lower) if lr is not None])
        self.initial.setdefault("batch_size", [str(suggested["batch_size"])])
        self.initial.setdefault("augmentation", ["off", "on"])

    def setting_fields(self):
        return [self[name] for name in search.SEARCHED]

    def values(self):
        """{setting: [values chosen]}, from the checked values (a setting with a mistake has none)."""
        return {name: self.cleaned_data.get(name) or [] for name in search.SEARCHED}

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        if cleaned["mode"] == "random" and not cleaned.get("picks"):
            self.add_error("picks", "Say how many combinations to pick at random.")
            return cleaned
        try:
            runs = search.choose_runs(self.values(), cleaned["mode"], cleaned.get("picks") or 0, cleaned["seed"])
        except search.SearchError as error:
            raise forms.ValidationError(error.message) from None
        split = search.split_budget(cleaned["total_budget_s"], len(runs))
        if not split.enough:
            raise forms.ValidationError(split.in_words())
        # Said before it is sent, so the preview warns of it (settings.QUOTA_QUEUED_RUNS): at least one run
        # must start now; those the limit leaves no room for wait their turn (training_app/starting.py).
        if refusal := queued_runs_refusal(self.user):
            raise forms.ValidationError(refusal)
        cleaned["runs"], cleaned["split"] = runs, split
        return cleaned

    def in_words(self) -> str:
        """How many runs a valid form makes, how long each gets and, when the person's limit of runs at
        once leaves no room for all, how many start now and how many wait their turn."""
        runs, split = self.cleaned_data["runs"], self.cleaned_data["split"]
        turns = search.turns_in_words(len(runs), queued_runs_left(self.user), settings.QUOTA_QUEUED_RUNS)
        return f"{split.in_words()} {turns}".strip()

