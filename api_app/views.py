"""The API for programs (Django REST framework): the same things as the pages, with the same ownership
rules (another person's dataset, run, model or classification is a 404), answered as JSON. A program
authenticates with a token made on the "API tokens" page (api_app/auth.py); every error is JSON with a
plain-words `message`. The schema (OpenAPI 3) is at /api/v1/schema/, its browsable docs at /api/v1/docs/.
"""
import base64
import binascii
import json

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.http import FileResponse, QueryDict
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets_app.forms import ZipUploadForm
from datasets_app.models import Dataset
from datasets_app.starting import start_zip_upload
from datasets_app.sources import archive_limits, fit_upload_name
from dlsite import quotas
from mlcore.formats import FORMATS
from mlcore.words import whole_number
from predict_app.many import Refused, check_zip
from predict_app.models import Classification
from predict_app.services import classify_uploads, predictor_for
from predict_app.tasks import classify_many
from training_app.forms import TrainingRunForm
from training_app.models import ModelExport, TrainingRun
from training_app.presenters import run_status
from training_app.starting import start_export, start_run

MESSAGE = inline_serializer("Message", {"message": serializers.CharField()})


def _model_of(request, run_pk) -> TrainingRun:
    return get_object_or_404(TrainingRun.objects.visible_to(request.user).with_model().select_related("dataset"),
                             pk=run_pk)


def _model_json(run: TrainingRun, request) -> dict:
    return {
        "id": run.id, "dataset": {"id": run.dataset_id, "name": run.dataset.name},
        "network": run.get_preset_display(), "classes": run.class_names,
        "image_size": run.image_size, "channels": run.channels, "resize": run.resize_mode,
        "test_accuracy": run.test_accuracy, "finished_at": run.finished_at,
        "download": request.build_absolute_uri(f"/api/v1/models/{run.id}/download/"),
    }


class ModelList(APIView):
    @extend_schema(operation_id="models_list", summary="Your trained models", responses=inline_serializer("Models", {"models": serializers.ListField()}))
    def get(self, request):
        runs = TrainingRun.objects.visible_to(request.user).with_model().select_related("dataset")
        return Response({"models": [_model_json(run, request) for run in runs]})


class ModelDetail(APIView):
    @extend_schema(operation_id="model_read", summary="One trained model: its classes and the pictures it takes",
                   responses={200: OpenApiTypes.OBJECT, 404: MESSAGE})
    def get(self, request, run_pk):
        return Response(_model_json(_model_of(request, run_pk), request))


class ModelDownload(APIView):
    @extend_schema(operation_id="model_download", summary="The model as a .keras file", responses={(200, "application/octet-stream"): bytes})
    def get(self, request, run_pk):
        run = _model_of(request, run_pk)
        try:
            handle = open(run.model_path, "rb")
        except FileNotFoundError:
            raise NotFound("The model file of this run is missing from the server.") from None
        return FileResponse(handle, as_attachment=True, filename=f"run-{run.id}.keras")


def _export_json(run, kind, request) -> dict:
    """A format of the model (mlcore/formats.py) and where its export stands."""
    export = run.exports.filter(kind=kind).first()
    ready = export is not None and export.status == ModelExport.Status.READY
    return {"format": kind, "label": FORMATS[kind].label, "status": export.status if export else "not made",
            "error": export.error if export else "", "bytes": export.size_bytes if ready else None,
            "checked_pictures": export.checked_pictures if ready else 0,
            "max_difference": export.max_difference if ready else None,
            "accuracy": export.accuracy if ready else None, "original_accuracy": export.original_accuracy if ready else None,
            "download": request.build_absolute_uri(f"/api/v1/models/{run.id}/exports/{kind}/download/") if ready else None}


def _format_of(kind: str) -> str:
    if kind not in FORMATS:
        raise NotFound(f"There is no format “{kind[:40]}”; the formats are: {', '.join(FORMATS)}.")
    return kind


class ExportList(APIView):
    @extend_schema(operation_id="exports", summary="The model's formats and where each export stands",
                   responses={200: inline_serializer("Exports", {"exports": serializers.ListField()})})
    def get(self, request, run_pk):
        run = _model_of(request, run_pk)
        return Response({"exports": [_export_json(run, kind, request) for kind in FORMATS]})


class ExportMake(APIView):
    @extend_schema(operation_id="export_make", summary="Make (or make again) the model in one format",
                   description="A worker makes it, loads it again with its own runtime and compares its answers "
                               "with the original's; read its state until `status` is `ready` (or `failed`).",
                   request=None, responses={202: inline_serializer("Export", {"status": serializers.CharField()}),
                                            404: MESSAGE})
    def post(self, request, run_pk, kind):
        run = _model_of(request, run_pk)
        start_export(run, _format_of(kind))
        return Response(_export_json(run, kind, request), status=202)


class ExportDownload(APIView):
    @extend_schema(operation_id="export_download", summary="The export as a zip (the model, about.json, a README)",
                   responses={(200, "application/zip"): bytes, 404: MESSAGE})
    def get(self, request, run_pk, kind):
        run = _model_of(request, run_pk)
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


def _result_json(result: dict) -> dict:
    if "error" in result:
        return {"name": result["name"], "error": result["error"]}
    return {"name": result["name"], "class": result["label"], "confidence": round(result["probability"], 6),
            "not_sure": bool(result["doubt"]), "why_not_sure": result["doubt_words"],
            "probabilities": {row["name"]: round(row["p"], 6) for row in result["probabilities"]}}


class Classify(APIView):
    parser_classes = [MultiPartParser, JSONParser]

    @extend_schema(
        operation_id="classify", summary="Classify one or a few pictures",
        description="Multipart with the files in `images`, or JSON `{\"images\": [{\"name\": \"a.jpg\", "
                    "\"data\": \"<base64>\"}]}`. Each picture gets its class, how sure the model is (0 to 1), "
                    "whether it is not sure and why, and every class's probability; or its own `error`.",
        request={"multipart/form-data": inline_serializer("Pictures", {"images": serializers.ListField(
            child=serializers.FileField())}), "application/json": inline_serializer("PicturesBase64", {
                "images": serializers.ListField(child=serializers.DictField())})},
        responses={200: inline_serializer("Results", {"results": serializers.ListField()}), 400: MESSAGE},
    )
    def post(self, request, run_pk):
        # Only the columns predicting needs: the whole run row took a third of a one-picture request.
        run = get_object_or_404(TrainingRun.objects.visible_to(request.user).with_model().only("id", "model_file"),
                                pk=run_pk)
        files = _pictures_from(request)
        try:
            predictor = predictor_for(run)
        except FileNotFoundError:
            raise NotFound("The model file of this run is missing from the server.") from None
        results = classify_uploads(predictor, files, previews=False)
        return Response({"model": run.id, "results": [_result_json(r) for r in results]})


def _classification_json(job: Classification, request) -> dict:
    return {"id": job.id, "model": job.run_id, "name": job.name, "status": job.status, "done": job.done,
            "total": job.total, "error": job.error, "created_at": job.created_at, "finished_at": job.finished_at,
            "results": request.build_absolute_uri(f"/api/v1/classifications/{job.id}/results/"),
            "page": request.build_absolute_uri(f"/predict/many/{job.id}/")}


class ClassificationStart(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(operation_id="classification_start", summary="Classify many pictures: a zip, read and classified by a worker",
                   request={"multipart/form-data": inline_serializer("Zip", {"file": serializers.FileField()})},
                   responses={201: inline_serializer("Classification", {"id": serializers.IntegerField()}),
                              400: MESSAGE})
    def post(self, request, run_pk):
        run = _model_of(request, run_pk)
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
        return Response(_classification_json(job, request), status=status.HTTP_201_CREATED)


def _classification_of(request, classification_pk) -> Classification:
    return get_object_or_404(Classification.objects.visible_to(request.user), pk=classification_pk)


class ClassificationDetail(APIView):
    @extend_schema(operation_id="classification_read", summary="A classification's state: waiting, classifying (done of total), done or failed",
                   responses={200: OpenApiTypes.OBJECT, 404: MESSAGE})
    def get(self, request, classification_pk):
        return Response(_classification_json(_classification_of(request, classification_pk), request))


class ClassificationResults(APIView):
    @extend_schema(operation_id="classification_results", summary="What the model said of each picture, a page at a time",
                   parameters=[OpenApiParameter("after", int, description="the last id of the page before"),
                               OpenApiParameter("limit", int, description="pictures per page, at most 1000")],
                   responses={200: OpenApiTypes.OBJECT, 404: MESSAGE})
    def get(self, request, classification_pk):
        job = _classification_of(request, classification_pk)
        after, limit = _whole(request, "after", 0), min(_whole(request, "limit", 500), 1000) or 500
        rows = list(job.images.filter(id__gt=after).order_by("id")[:limit])
        names = job.run.class_names
        pictures = [{"id": row.id, "name": row.name, "class": row.label or None, "confidence": row.confidence,
                     "not_sure": row.is_unsure() if row.label else None, "why_not_sure": row.doubt_in_words,
                     "probabilities": dict(zip(names, row.probabilities)) if row.probabilities else None,
                     "error": row.error or None} for row in rows]
        more = len(rows) == limit
        return Response({"status": job.status, "pictures": pictures,
                         "next": request.build_absolute_uri(f"?after={rows[-1].id}&limit={limit}") if more else None})


def _whole(request, name, default):
    value = request.query_params.get(name)
    if value is None:
        return default
    number = whole_number(value, clamp=True)
    if number is None:
        raise ValidationError({name: ["Must be a whole number."]})
    return number


def _dataset_json(dataset: Dataset, request) -> dict:
    upload = dataset.uploads.first()
    return {"id": dataset.id, "name": dataset.name, "created_at": dataset.created_at,
            "images": dataset.images.count(), "classes": dataset.class_counts(),
            "busy": dataset.is_busy(),
            "last_upload": None if upload is None else {
                "id": upload.id, "name": upload.original_name, "status": upload.status, "done": upload.done,
                "total": upload.total, "accepted": upload.accepted, "error": upload.error},
            "page": request.build_absolute_uri(f"/datasets/{dataset.id}/")}


class DatasetList(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(operation_id="datasets_list", summary="Your datasets", responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response({"datasets": [_dataset_json(d, request) for d in Dataset.objects.visible_to(request.user)]})

    @extend_schema(operation_id="dataset_create", summary="A new dataset from a zip (one folder per class)",
                   request={"multipart/form-data": inline_serializer("NewDataset", {
                       "file": serializers.FileField(), "name": serializers.CharField(required=False),
                       "val_percent": serializers.IntegerField(required=False),
                       "test_percent": serializers.IntegerField(required=False)})},
                   responses={201: inline_serializer("Dataset", {"id": serializers.IntegerField()}), 400: MESSAGE})
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
        return Response(_dataset_json(dataset, request), status=status.HTTP_201_CREATED)


class DatasetDetail(APIView):
    @extend_schema(operation_id="dataset_read", summary="A dataset's state: its classes, and how its last upload is being read",
                   responses={200: OpenApiTypes.OBJECT, 404: MESSAGE})
    def get(self, request, dataset_pk):
        return Response(_dataset_json(get_object_or_404(Dataset.objects.visible_to(request.user), pk=dataset_pk),
                                      request))


class RunStart(APIView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(operation_id="run_start", summary="Train a model on a dataset",
                   description="Any setting of the training form (mlcore/options.py lists them: epochs, "
                               "learning_rate, optimizer, preset, model_spec, augment_flip, ...); the ones left "
                               "out are the settings the page would suggest for this dataset.",
                   request=inline_serializer("RunSettings", {"epochs": serializers.IntegerField(required=False)}),
                   responses={201: inline_serializer("Run", {"id": serializers.IntegerField()}), 400: MESSAGE})
    def post(self, request, dataset_pk):
        dataset = get_object_or_404(Dataset.objects.visible_to(request.user), pk=dataset_pk)
        posted = QueryDict(mutable=True)
        for key, value in (request.data.items() if hasattr(request.data, "items") else []):
            posted[key] = _as_form_text(value)
        suggested = TrainingRunForm.defaults_for(dataset)
        form = TrainingRunForm.filled_in(posted, dataset, suggested)
        run = start_run(form, dataset, request.user, suggested) if form.is_valid() else None
        if run is None:
            raise ValidationError({"settings" if field == "__all__" else field: list(errors)
                                   for field, errors in form.errors.items()})
        return Response(_run_json(run, request), status=status.HTTP_201_CREATED)


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


def _run_json(run: TrainingRun, request) -> dict:
    return {**run_status(run), "dataset": run.dataset_id, "settings": run.settings(),
            "test_accuracy": run.test_accuracy, "page": request.build_absolute_uri(f"/runs/{run.id}/")}


class RunDetail(APIView):
    @extend_schema(operation_id="run_read", summary="A run's state and its metrics, epoch by epoch",
                   responses={200: OpenApiTypes.OBJECT, 404: MESSAGE})
    def get(self, request, run_pk):
        return Response(_run_json(get_object_or_404(TrainingRun.objects.visible_to(request.user), pk=run_pk),
                                  request))
