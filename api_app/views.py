"""The API for programs (Django REST framework): the same things as the pages, with the same ownership
rules (another person's dataset, run, model or classification is a 404), answered as JSON. A program
authenticates with a token made on the "API tokens" page (api_app/auth.py); every error is JSON with a
plain-words `message`. Each answer's fields are its serializer's (api_app/serializers.py), from which the
schema (OpenAPI 3, /api/v1/schema/, public) is made; its browsable docs are at /api/v1/docs/.
"""
import base64
import binascii
import json

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.http import FileResponse, JsonResponse, QueryDict
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets_app.access import get_dataset_for_user
from datasets_app.forms import ZipUploadForm
from datasets_app.models import Dataset
from datasets_app.sources import archive_limits, fit_upload_name
from datasets_app.starting import start_zip_upload
from dlsite import quotas, storage
from mlcore.formats import FORMATS
from predict_app.many import Refused, check_zip
from predict_app.many_views import get_classification_for_user
from predict_app.assist import unsure_keeper
from predict_app.models import Classification
from predict_app.services import PREDICTOR_COLUMNS, classify_uploads, predictor_for
from predict_app.tasks import classify_many
from training_app.access import get_model_for_user, get_run_for_user
from training_app.forms import TrainingRunForm
from training_app.models import ModelExport, TrainingRun
from training_app.presenters import run_status, test_accuracy_in_words
from training_app.starting import start_export, start_run

from . import serializers as s
from .models import ApiToken
from .pagination import pages
from .parsers import JSONParser


class ModelList(generics.ListAPIView):
    serializer_class = s.ModelSerializer
    pagination_class = pages("models")

    @extend_schema(operation_id="models_list", summary="Your trained models")
    def get(self, request):
        return self.list(request)

    def get_queryset(self):
        return TrainingRun.objects.visible_to(self.request.user).with_model().select_related("dataset")


class ModelDetail(APIView):
    @extend_schema(operation_id="model_read", summary="One trained model: its classes and the pictures it takes",
                   responses=s.ModelSerializer)
    def get(self, request, run_pk):
        return Response(s.ModelSerializer(get_model_for_user(request, run_pk), context={"request": request}).data)


class ModelDownload(APIView):
    @extend_schema(operation_id="model_download", summary="The model as a .keras file",
                   responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request, run_pk):
        run = get_model_for_user(request, run_pk)
        try:
            handle = storage.open_kept(run.model_file)
        except FileNotFoundError:
            raise NotFound("The model file of this run is missing from the server.") from None
        return FileResponse(handle, as_attachment=True, filename=f"run-{run.id}.keras")


def _export(run, kind, request) -> dict:
    """A format of the model (mlcore/formats.py) and where its export stands."""
    export = run.exports.filter(kind=kind).first()
    ready = export is not None and export.status == ModelExport.Status.READY
    return {"format": kind, "label": FORMATS[kind].label, "status": export.status if export else "not made",
            "error": export.error if export else "", "bytes": export.size_bytes if ready else None,
            "checked_pictures": export.checked_pictures if ready else 0,
            "max_difference": export.max_difference if ready else None,
            "accuracy": export.accuracy if ready else None, "original_accuracy": export.original_accuracy if ready else None,
            "download": s.link(request, "api:export_download", run.id, kind) if ready else None}


def _format_of(kind: str) -> str:
    if kind not in FORMATS:
        raise NotFound(f"There is no format “{kind[:40]}”; the formats are: {', '.join(FORMATS)}.")
    return kind


class ExportList(APIView):
    @extend_schema(operation_id="exports", summary="The model's formats and where each export stands",
                   responses=s.ExportListSerializer)
    def get(self, request, run_pk):
        run = get_model_for_user(request, run_pk)
        return Response(s.ExportListSerializer({"exports": [_export(run, kind, request) for kind in FORMATS]}).data)


class ExportMake(APIView):
    @extend_schema(operation_id="export_make", summary="Make (or make again) the model in one format",
                   description="A worker makes it, loads it again with its own runtime and compares its answers "
                               "with the original's; read its state until `status` is `ready` (or `failed`).",
                   request=None, responses={202: s.ExportSerializer})
    def post(self, request, run_pk, kind):
        run = get_model_for_user(request, run_pk)
        start_export(run, _format_of(kind))
        return Response(s.ExportSerializer(_export(run, kind, request)).data, status=status.HTTP_202_ACCEPTED)


class ExportDownload(APIView):
    @extend_schema(operation_id="export_download", summary="The export as a zip (the model, about.json, a README)",
                   responses={(200, "application/zip"): OpenApiTypes.BINARY})
    def get(self, request, run_pk, kind):
        run = get_model_for_user(request, run_pk)
        export = run.exports.filter(kind=_format_of(kind), status=ModelExport.Status.READY).first()
        if export is None:
            raise NotFound("This format has not been made yet: POST to its address first.")
        handle = export.open()
        if handle is None:
            raise NotFound("Its file is no longer on the server: make it again.")
        return FileResponse(handle, as_attachment=True, filename=f"run-{run.id}-{kind}.zip")


def _pictures_from(request) -> list:
    """The pictures of a classify request: files in the multipart field `images`, or JSON
    {"images": [{"name": "a.jpg", "data": "<base64>"}, ...]}."""
    if request.content_type.startswith("multipart/"):
        files = request.FILES.getlist("images")
    else:
        items = request.data.get("images") if isinstance(request.data, dict) else None
        if not isinstance(items, list):
            raise ValidationError({"images": ["Send a list of {\"name\", \"data\"} with each picture in base64."]})
        files = []
        for number, item in enumerate(items, start=1):
            if not isinstance(item, dict) or not isinstance(item.get("data"), str):
                raise ValidationError({"images": [f"Picture {number} needs its bytes in base64 under “data”."]})
            try:
                data = base64.b64decode(item["data"], validate=True)
            except (binascii.Error, ValueError):
                raise ValidationError({"images": [f"Picture {number}: “data” is not base64."]}) from None
            files.append(SimpleUploadedFile(str(item.get("name") or f"picture-{number}")[:200], data))
    if not files:
        raise ValidationError({"images": ["Send at least one picture."]})
    if len(files) > settings.MAX_PREDICT_FILES:
        raise ValidationError({"images": [f"Send at most {settings.MAX_PREDICT_FILES} pictures at a time; "
                                          "for more, start a classification of a zip."]})
    return files


def _result(result: dict) -> dict:
    if "error" in result:
        return {"name": result["name"], "error": result["error"]}
    answer = {"name": result["name"], "class": result["label"], "confidence": round(result["probability"], 6),
              "not_sure": bool(result["doubt"]), "why_not_sure": result["doubt_words"], "doubt": result["doubt"] or None,
              "probabilities": {row["name"]: round(row["p"], 6) for row in result["probabilities"]}}
    if "heat_map" in result:
        answer["heat_map"] = base64.b64encode(result["heat_map"]).decode()
    return answer


EXPLAIN = OpenApiParameter(
    "explain", OpenApiTypes.BOOL, OpenApiParameter.QUERY, required=False,
    description="With `explain=true` (or 1), each picture also gets `heat_map`: a PNG, in base64, of the picture "
                "at the model's input size with a heat map over it of what the answer was based on (red: most; "
                "blue: hardly at all). Slower: worked out only when asked.")


def _wants_explanation(request) -> bool:
    return request.query_params.get("explain", "").strip().lower() in ("1", "true", "yes", "on")


class Classify(APIView):
    parser_classes = [MultiPartParser, JSONParser]

    @extend_schema(
        operation_id="classify", summary="Classify one or a few pictures",
        description="Multipart with the files in `images`, or JSON `{\"images\": [{\"name\": \"a.jpg\", "
                    "\"data\": \"<base64>\"}]}`. Each picture gets its class, how sure the model is (0 to 1), "
                    "whether it is not sure and why, and every class's probability; or its own `error`.",
        request={"multipart/form-data": s.PicturesMultipart, "application/json": s.PicturesBase64},
        parameters=[EXPLAIN], responses=s.ClassifyAnswerSerializer,
    )
    def post(self, request, run_pk):
        # Only the columns predicting needs: the whole run row took a third of a one-picture request.
        run = get_model_for_user(request, run_pk, columns=PREDICTOR_COLUMNS)
        files = _pictures_from(request)
        try:
            predictor = predictor_for(run)
        except FileNotFoundError:
            raise NotFound("The model file of this run is missing from the server.") from None
        results = classify_uploads(predictor, files, previews=False, explain=_wants_explanation(request),
                                   keep_unsure=unsure_keeper(run, "api"))
        return Response(s.ClassifyAnswerSerializer({"model": run.id, "results": [_result(r) for r in results]}).data)


class ClassificationStart(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(operation_id="classification_start",
                   summary="Classify many pictures: a zip, read and classified by a worker",
                   request={"multipart/form-data": s.ZipSerializer}, responses={201: s.ClassificationSerializer})
    def post(self, request, run_pk):
        run = get_model_for_user(request, run_pk)
        upload = request.FILES.get("file")
        if upload is None:
            raise ValidationError({"file": ["Send the zip of pictures in the field “file”."]})
        if upload.size > settings.MAX_UPLOAD_BYTES:
            raise ValidationError({"file": [f"This file holds {upload.size:,} bytes; the limit is "
                                            f"{settings.MAX_UPLOAD_BYTES:,}."]})
        try:
            check_zip(upload, archive_limits())
        except Refused as refused:
            raise ValidationError({"file": [str(refused)]}) from None
        if refusal := quotas.upload_refusal(request.user, upload.size):
            raise ValidationError({"file": [refusal]})
        upload.seek(0)
        with transaction.atomic():
            job = Classification(owner=request.user, run=run, name=fit_upload_name(upload.name))
            job.zip_file.save("pictures.zip", upload, save=False)
            job.save()
            classify_many.delay_on_commit(job.id)
        return Response(s.ClassificationSerializer(job, context={"request": request}).data,
                        status=status.HTTP_201_CREATED)


class ClassificationDetail(APIView):
    @extend_schema(operation_id="classification_read",
                   summary="A classification's state: waiting, classifying (done of total), done or failed",
                   responses=s.ClassificationSerializer)
    def get(self, request, classification_pk):
        job = get_classification_for_user(request, classification_pk)
        return Response(s.ClassificationSerializer(job, context={"request": request}).data)


class ClassificationResults(generics.ListAPIView):
    serializer_class = s.ClassifiedPictureSerializer
    pagination_class = pages("pictures", ordering="id", page_size=500, status={
        "type": "string", "description": "the classification's status: results of a running one are still coming"})

    @extend_schema(operation_id="classification_results",
                   summary="What the model said of each picture, a page at a time")
    def get(self, request, classification_pk):
        self.job = get_classification_for_user(request, classification_pk)
        self.paginator.extra["status"] = self.job.status
        return self.list(request)

    def get_queryset(self):
        return self.job.images.all()

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "class_names": self.job.run.class_names}


class DatasetList(generics.ListAPIView):
    serializer_class = s.DatasetSerializer
    pagination_class = pages("datasets")
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(operation_id="datasets_list", summary="Your datasets")
    def get(self, request):
        return self.list(request)

    def get_queryset(self):
        return Dataset.objects.visible_to(self.request.user)

    @extend_schema(operation_id="dataset_create", summary="A new dataset from a zip (one folder per class)",
                   request={"multipart/form-data": s.NewDatasetSerializer}, responses={201: s.DatasetSerializer})
    def post(self, request):
        form = ZipUploadForm(request.data, request.FILES)
        if not form.is_valid():
            raise ValidationError({field: list(errors) for field, errors in form.errors.items()})
        upload = form.cleaned_data["file"]
        if refusal := quotas.upload_refusal(request.user, upload.size):
            raise ValidationError({"file": [refusal]})
        with transaction.atomic():
            dataset = Dataset.objects.create(owner=request.user, name=form.dataset_name(), **form.split_fractions())
            start_zip_upload(dataset, upload.name, upload, request.user)
        return Response(s.DatasetSerializer(dataset, context={"request": request}).data, status=status.HTTP_201_CREATED)


class DatasetDetail(APIView):
    @extend_schema(operation_id="dataset_read",
                   summary="A dataset's state: its classes, and how its last upload is being read",
                   responses=s.DatasetSerializer)
    def get(self, request, dataset_pk):
        return Response(s.DatasetSerializer(get_dataset_for_user(request, dataset_pk), context={"request": request}).data)


class RunStart(APIView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(operation_id="run_start", summary="Train a model on a dataset",
                   description="Any setting of the training form (mlcore/options.py lists them: epochs, "
                               "learning_rate, optimizer, preset, model_spec, augment_flip, ...); the ones left "
                               "out are the settings the page would suggest for this dataset.",
                   request={"application/json": s.NewRunSerializer}, responses={201: s.RunSerializer})
    def post(self, request, dataset_pk):
        dataset = get_dataset_for_user(request, dataset_pk)
        posted = QueryDict(mutable=True)
        for key, value in (request.data.items() if hasattr(request.data, "items") else []):
            posted[key] = _as_form_text(value)
        suggested = TrainingRunForm.defaults_for(dataset)
        form = TrainingRunForm.filled_in(posted, dataset, suggested)
        run = start_run(form, dataset, request.user, suggested) if form.is_valid() else None
        if run is None:
            raise ValidationError({"settings" if field == "__all__" else field: list(errors)
                                   for field, errors in form.errors.items()})
        return Response(_run(run, request), status=status.HTTP_201_CREATED)


def _as_form_text(value) -> str:
    """A JSON value as the training form reads it, as a page sends it: a network (model_spec) as JSON
    text, true and false as a checkbox's words, numbers as digits."""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _run(run: TrainingRun, request) -> dict:
    return s.RunSerializer({
        **run_status(run), "dataset": run.dataset_id, "settings": run, "test_accuracy": run.test_accuracy,
        "test_accuracy_interval": test_accuracy_in_words(run),
        "classes": run.class_names or [], "confusion": run.confusion, "per_class": run.per_class,
        "page": s.link(request, "training:detail", run.id)}).data


class RunDetail(APIView):
    @extend_schema(operation_id="run_read", summary="A run's state, its settings, its metrics epoch by epoch "
                                                    "and its confusion matrix once tested",
                   responses=s.RunSerializer)
    def get(self, request, run_pk):
        return Response(_run(get_run_for_user(request, run_pk), request))


class TokenList(generics.ListAPIView):
    serializer_class = s.TokenSerializer
    pagination_class = pages("tokens")

    @extend_schema(operation_id="tokens_list", summary="Your API tokens: when each was made and last used")
    def get(self, request):
        return self.list(request)

    def get_queryset(self):
        return ApiToken.objects.filter(owner=self.request.user)


@csrf_exempt  # a program's POST to a wrong address is told so, not refused for a missing CSRF token
def not_found(request, *args, **kwargs):
    """Any other address under /api/: a JSON 404 like the API's own (a number that is not a whole
    number, or negative, in a path matches no route)."""
    return JsonResponse({"message": "There is nothing at this address; the API's addresses are listed at "
                                    f"{request.build_absolute_uri(reverse('api:docs'))}"}, status=404)

