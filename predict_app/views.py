from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from .forms import PredictForm
from .services import classify_uploads, predictor_for


@login_required
def predict(request):
    results = []
    if request.method == "POST":
        form = PredictForm(request.POST, request.FILES, user=request.user)
        if form.is_valid():
            predictor = predictor_for(form.cleaned_data["run"])
            results = classify_uploads(predictor, form.cleaned_data["images"])
    else:
        form = PredictForm(user=request.user, initial={"run": request.GET.get("run")})
    return render(request, "predict_app/predict.html", {"form": form, "results": results})
