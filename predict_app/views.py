import base64
import io

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from mlcore.images import ImageRejected, decode_image

from .forms import PredictForm
from .services import predictor_for

PREVIEW_SIDE = 256


@login_required
def predict(request):
    results = []
    if request.method == "POST":
        form = PredictForm(request.POST, request.FILES, user=request.user)
        if form.is_valid():
            predictor = predictor_for(form.cleaned_data["run"])
            results = [_classify(predictor, upload) for upload in form.cleaned_data["images"]]
    else:
        form = PredictForm(user=request.user, initial={"run": request.GET.get("run")})
    return render(request, "predict_app/predict.html", {"form": form, "results": results})


def _classify(predictor, upload):
    try:
        image = decode_image(upload.read(), settings.MAX_IMAGE_PIXELS).image
    except ImageRejected as exc:
        return {"name": upload.name, "error": f"This file could not be used: {exc}."}
    probabilities = predictor.predict_image(image)
    names = predictor.info.class_names
    ranked = sorted(zip(names, probabilities.tolist()), key=lambda item: -item[1])
    return {"name": upload.name, "preview": _preview(image), "label": ranked[0][0], "probability": ranked[0][1],
            "probabilities": [{"name": n, "p": p, "percent": round(100 * p, 1)} for n, p in ranked]}


def _preview(image):
    """A small PNG of the image as a data URL, so nothing uploaded here is stored."""
    image = image.copy()
    image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
