from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from mlcore.familiarity import doubt_rule_in_words
from mlcore.explain import COLOURS_IN_WORDS
from mlcore.words import whole_number
from training_app.models import TrainingRun

from .assist import unsure_keeper
from .forms import ManyZipForm, PredictForm
from .models import Classification
from .services import classify_uploads, png_data_url, predictor_for


@login_required
def predict(request):
    """A few pictures classified at once, for a quick check; and the way in to classify many."""
    form, results, trees = None, [], False
    if request.method == "POST":
        form = PredictForm(request.POST, request.FILES, user=request.user)
        if form.is_valid():
            run = form.cleaned_data["run"]
            predictor = predictor_for(run)
            results = classify_uploads(predictor, form.cleaned_data["images"], explain=form.cleaned_data["explain"],
                                       keep_unsure=unsure_keeper(run, "page"))
            for result in results:
                if "heat_map" in result:
                    result["heat_map"] = png_data_url(result["heat_map"])
            trees = predictor.trees is not None
    return predict_page(request, form, results, answered_by_trees=trees)


def predict_page(request, form=None, results=(), many_form=None, answered_by_trees=False):
    """The page, with `many_form` when a zip to classify was refused: its messages show in it."""
    # "Classify with this model" links name the run; without one (or with a wrong number) the best
    # tested model comes first, not merely the newest (training_app/models.py, default_model).
    models = TrainingRun.objects.visible_to(request.user).with_model()
    chosen_run = whole_number(request.GET.get("run"))
    if chosen_run is None or not models.filter(pk=chosen_run).exists():
        default = models.default_model()
        chosen_run = default.pk if default else None
    if form is None:
        form = PredictForm(user=request.user, initial={"run": chosen_run})
    has_models = form.fields["run"].queryset.exists()
    if has_models and many_form is None:
        many_form = ManyZipForm(user=request.user, initial={"run": chosen_run})
    return render(request, "predict_app/predict.html", {
        "form": form, "results": results, "doubt_rule": doubt_rule_in_words(), "colours_in_words": COLOURS_IN_WORDS,
        "answered_by_trees": answered_by_trees,
        "many_form": many_form if has_models else None,
        "classifications": Classification.objects.visible_to(request.user).select_related("run")[:50],
        "limits": {"max_files": settings.DATA_UPLOAD_MAX_NUMBER_FILES,
                   "max_file_bytes": settings.MAX_PREDICT_FILE_BYTES},
    })
