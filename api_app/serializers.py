"""What each answer of the API holds, field by field: the schema (/api/v1/schema/) is made from these, so a
program generated from it knows every field. Links are reversed from the URL names, never written out."""
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from training_app.models import EpochMetric, TrainingRun

from .models import ApiToken


def link(request, name, *args) -> str:
    return request.build_absolute_uri(reverse(name, args=args))


def _with_class_field(serializer_class, **kwargs):
    """Add the field "class" (a Python keyword, so it cannot be written in a class body)."""
    serializer_class._declared_fields["class"] = serializers.CharField(**kwargs)
    return serializer_class


class MessageSerializer(serializers.Serializer):
    message = serializers.CharField(help_text="What was wrong, in plain words.")
    fields = serializers.DictField(child=serializers.JSONField(), required=False,
                                   help_text="For a refused request: each field's own messages.")


class NamedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class ModelSerializer(serializers.Serializer):
    """A trained model (a run that has one)."""

    id = serializers.IntegerField()
    dataset = NamedSerializer()
    network = serializers.CharField(source="get_preset_display")
    classes = serializers.ListField(child=serializers.CharField(), source="class_names")
    image_size = serializers.IntegerField()
    channels = serializers.IntegerField()
    resize = serializers.CharField(source="resize_mode")
    test_accuracy = serializers.FloatField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    download = serializers.SerializerMethodField()

    def get_download(self, run) -> str:
        return link(self.context["request"], "api:model_download", run.id)


class ExportSerializer(serializers.Serializer):
    """One format of a model (mlcore/formats.py) and where its export stands."""

    format = serializers.CharField()
    label = serializers.CharField()
    status = serializers.CharField(help_text="“not made”, “queued”, “running”, “ready” or “failed”.")
    error = serializers.CharField(allow_blank=True)
    bytes = serializers.IntegerField(allow_null=True)
    checked_pictures = serializers.IntegerField()
    max_difference = serializers.FloatField(allow_null=True)
    accuracy = serializers.FloatField(allow_null=True)
    original_accuracy = serializers.FloatField(allow_null=True)
    download = serializers.URLField(allow_null=True)


class ExportListSerializer(serializers.Serializer):
    exports = ExportSerializer(many=True)


# Why a picture's answer is not sure, for programs (mlcore/familiarity.py; "threshold": less sure than the
# classification's own threshold, which one picture sent to be classified has not).
DOUBT_CODES = ["far", "spread", "unlike", "threshold"]


class PictureResultSerializer(serializers.Serializer):
    """One picture sent to be classified: its class and probabilities, or its own `error`."""

    name = serializers.CharField()
    confidence = serializers.FloatField(required=False)
    not_sure = serializers.BooleanField(required=False)
    why_not_sure = serializers.CharField(required=False, allow_blank=True)
    # For programs: "far" (unlike the pictures the model learned from), "spread" (between classes) or "unlike"
    # (the training pictures nearest to it are of another class); null when sure
    doubt = serializers.ChoiceField(choices=DOUBT_CODES, required=False, allow_null=True)
    probabilities = serializers.DictField(child=serializers.FloatField(), required=False)
    heat_map = serializers.CharField(required=False, help_text=(
        "Only when asked (explain=true): a PNG in base64 of the picture at the model's input size, coloured by "
        "what the answer was based on: red most, then yellow and green, blue hardly at all."))
    error = serializers.CharField(required=False)

    def to_representation(self, instance):
        answer = super().to_representation(instance)
        if "error" in instance:  # a nullable field is given as null when missing: a file that failed has none
            answer.pop("doubt", None)
        return answer


_with_class_field(PictureResultSerializer, required=False)


class ClassifyAnswerSerializer(serializers.Serializer):
    model = serializers.IntegerField()
    results = PictureResultSerializer(many=True)


class PicturesBase64Item(serializers.Serializer):
    name = serializers.CharField(required=False)
    data = serializers.CharField(help_text="The picture's bytes in base64.")


class PicturesBase64(serializers.Serializer):
    images = PicturesBase64Item(many=True)


class PicturesMultipart(serializers.Serializer):
    images = serializers.ListField(child=serializers.FileField())


class ZipSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A zip of pictures.")


class ClassificationSerializer(serializers.Serializer):
    """Many pictures classified by a worker."""

    id = serializers.IntegerField()
    model = serializers.IntegerField(source="run_id")
    name = serializers.CharField()
    status = serializers.CharField()
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    results = serializers.SerializerMethodField()
    page = serializers.SerializerMethodField()

    def get_results(self, job) -> str:
        return link(self.context["request"], "api:classification_results", job.id)

    def get_page(self, job) -> str:
        return link(self.context["request"], "predict:classification", job.id)


class ClassifiedPictureSerializer(serializers.Serializer):
    """What the model said of one picture of a classification (null where it is not classified yet)."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    confidence = serializers.FloatField(allow_null=True)
    not_sure = serializers.SerializerMethodField()
    why_not_sure = serializers.CharField(source="doubt_in_words", allow_blank=True)
    # For programs: "far" (unlike the pictures the model learned from), "spread" (between classes), "unlike"
    # (the training pictures nearest to it are of another class) or "threshold" (less sure than the
    # classification's threshold); null when sure or not classified
    doubt = serializers.SerializerMethodField()
    probabilities = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()

    def to_representation(self, row):
        answer = super().to_representation(row)
        answer["class"] = row.label or None
        return answer

    def get_not_sure(self, row) -> bool | None:
        return row.is_unsure() if row.label else None

    @extend_schema_field(serializers.ChoiceField(choices=DOUBT_CODES, allow_null=True))
    def get_doubt(self, row) -> str | None:
        if not row.label or not row.is_unsure():
            return None
        return row.doubt or "threshold"

    @extend_schema_field(serializers.DictField(child=serializers.FloatField(), allow_null=True))
    def get_probabilities(self, row):
        return dict(zip(self.context["class_names"], row.probabilities)) if row.probabilities else None

    def get_error(self, row) -> str | None:
        return row.error or None


_with_class_field(ClassifiedPictureSerializer, allow_null=True)


class UploadSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(source="original_name")
    status = serializers.CharField()
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    accepted = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True)


@extend_schema_field({"type": "array", "description": "[class name, number of images] for each class",
                      "items": {"type": "array", "minItems": 2, "maxItems": 2,
                                "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}})
class ClassCountsField(serializers.Field):
    def to_representation(self, counts):
        return [[name, number] for name, number in counts]


class DatasetSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    created_at = serializers.DateTimeField()
    images = serializers.SerializerMethodField()
    classes = ClassCountsField(source="class_counts")
    busy = serializers.BooleanField(source="is_busy")
    last_upload = serializers.SerializerMethodField()
    page = serializers.SerializerMethodField()

    def get_images(self, dataset) -> int:
        return dataset.images.count()

    @extend_schema_field(UploadSerializer(allow_null=True))
    def get_last_upload(self, dataset):
        upload = dataset.uploads.first()
        return None if upload is None else UploadSerializer(upload).data

    def get_page(self, dataset) -> str:
        return link(self.context["request"], "datasets:detail", dataset.id)


class NewDatasetSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A zip with one folder per class.")
    name = serializers.CharField(required=False)
    val_percent = serializers.IntegerField(required=False)
    test_percent = serializers.IntegerField(required=False)


class RunSettingsSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingRun
        fields = TrainingRun.SETTINGS


class NewRunSerializer(RunSettingsSerializer):
    """Any setting of the training form; each one left out is the one the page would suggest."""

    class Meta(RunSettingsSerializer.Meta):
        extra_kwargs = {name: {"required": False} for name in TrainingRun.SETTINGS}


class EpochSerializer(serializers.ModelSerializer):
    class Meta:
        model = EpochMetric
        fields = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"]


class VerdictSerializer(serializers.Serializer):
    """Whether the model learned anything: present when its accuracy is near chance."""

    based_on = serializers.CharField(help_text="“test” or “validation”")
    final = serializers.BooleanField()
    guessing = serializers.BooleanField()
    accuracy = serializers.FloatField()
    chance = serializers.FloatField()
    count = serializers.IntegerField()
    title = serializers.CharField()
    text = serializers.CharField()
    badge = serializers.CharField()
    tips = serializers.ListField(child=serializers.CharField())


class ClassScoresSerializer(serializers.Serializer):
    name = serializers.CharField()
    precision = serializers.FloatField()
    recall = serializers.FloatField()
    f1 = serializers.FloatField()
    support = serializers.IntegerField()


class AccuracyIntervalSerializer(serializers.Serializer):
    """Where the true test accuracy most likely lies (a 95 % Wilson interval), and the run page's words."""

    low = serializers.FloatField()
    high = serializers.FloatField()
    few = serializers.BooleanField(help_text="Too few test pictures to trust the figure.")
    text = serializers.CharField()


class RunSerializer(serializers.Serializer):
    """A training run: its state (as its live page shows it), its settings, its metrics epoch by epoch
    and, once tested, its confusion matrix (rows: the true class, columns: the answer)."""

    id = serializers.IntegerField()
    dataset = serializers.IntegerField()
    status = serializers.CharField()
    status_label = serializers.CharField()
    learned_nothing = serializers.BooleanField()
    verdict = VerdictSerializer(allow_null=True)
    chance_hint = serializers.CharField(allow_null=True)
    is_final = serializers.BooleanField()
    phase = serializers.CharField(allow_blank=True)
    phase_done = serializers.IntegerField()
    phase_total = serializers.IntegerField()
    phase_text = serializers.CharField(allow_blank=True, help_text="The phase in words, with its count of pictures.")
    phase_percent = serializers.FloatField(allow_null=True, help_text="How far the phase is; null when not counted.")
    phase_seconds_left = serializers.IntegerField(allow_null=True, help_text="Of the phase; null until measured.")
    phase_time_left_text = serializers.CharField(allow_blank=True)
    epoch = serializers.IntegerField()
    epochs = serializers.IntegerField()
    batch = serializers.IntegerField()
    batches_per_epoch = serializers.IntegerField()
    percent = serializers.FloatField()
    seconds_left = serializers.IntegerField(allow_null=True)
    cancel_requested = serializers.BooleanField()
    error = serializers.CharField(allow_blank=True)
    metrics = EpochSerializer(many=True)
    samples_per_s = serializers.FloatField(allow_null=True)
    samples_per_s_estimated = serializers.BooleanField()
    seconds_per_epoch = serializers.FloatField(allow_null=True)
    overfitting_hint = serializers.CharField(allow_null=True)
    worker_host = serializers.CharField(allow_blank=True)
    devices = serializers.CharField(allow_blank=True)
    where = serializers.CharField()
    best_epoch_note = serializers.CharField(allow_blank=True)
    settings = RunSettingsSerializer()
    test_accuracy = serializers.FloatField(allow_null=True)
    test_accuracy_interval = AccuracyIntervalSerializer(allow_null=True)
    classes = serializers.ListField(child=serializers.CharField())
    confusion = serializers.ListField(child=serializers.ListField(child=serializers.IntegerField()), allow_null=True)
    per_class = ClassScoresSerializer(many=True, allow_null=True)
    page = serializers.URLField()


class TokenSerializer(serializers.ModelSerializer):
    """A token of the person asking; its key itself is never shown again."""

    starts_with = serializers.CharField(source="shown")

    class Meta:
        model = ApiToken
        fields = ["id", "name", "starts_with", "created_at", "last_used_at", "revoked_at"]
