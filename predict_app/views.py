from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from mlcore.familiarity import doubt_rule_in_words
from mlcore.explain import COLOURS_IN_WORDS
from datasets_app.models import Image
from mlcore.words import whole_number
from training_app.access import get_run_for_user
from training_app.models import TrainingRun

from .assist import unsure_keeper
from .forms import ManyZipForm, PredictForm
from .models import Classification
from .services import classify_uploads, png_data_url, predictor_for
from .why import why_response, words_404


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


@login_required
def why_wrong(request, run_pk, image_pk):
    """A test picture a run's model got wrong (the run page's strip), as a PNG with a heat map of what its
    wrong answer was based on (why.py): for the owner only, a 404 in words when something is gone."""
    run = get_run_for_user(request, run_pk)
    predicted = next((row[1] for row in run.wrong or () if row[0] == image_pk), None)
    if predicted is None:
        return words_404("This picture is not among the test pictures this run got wrong.")
    name = Image.objects.filter(dataset=run.dataset, pk=image_pk).values_list("file", flat=True).first()
    if name is None:
        return words_404("This picture has been deleted.")
    return why_response(run, name, predicted)
