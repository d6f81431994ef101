"""The "API tokens" page: make a token for a program (shown once), see when each was last used, revoke one."""
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from datasets_app.models import Dataset
from training_app.models import TrainingRun

from .models import ApiToken


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, label="What is it for?",
                           help_text="A name to tell your tokens apart: “lab scanner”, “shop till”.")


@login_required
def tokens(request):
    form = TokenForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        token, new_key = ApiToken.objects.create_for(request.user, form.cleaned_data["name"])
        form = TokenForm()
    return render(request, "api_app/tokens.html", {
        "form": form, "new_key": new_key, "tokens": ApiToken.objects.filter(owner=request.user),
        "examples": examples(request),
    })


def examples(request) -> list[tuple[str, str]]:
    """(what it does, the curl command) for the common tasks, with the numbers of the person's own
    latest model and dataset where there are some (7 and 3 stand in for them where not)."""
    run = TrainingRun.objects.visible_to(request.user).with_model().only("id").first()
    dataset = Dataset.objects.visible_to(request.user).only("id").first()
    run_id, dataset_id = run.id if run else 7, dataset.id if dataset else 3

    def url(name, *args):
        return request.build_absolute_uri(reverse(name, args=args))

    auth = 'curl -H "Authorization: Bearer $TOKEN"'
    return [
        ("List your models", f"{auth} \\\n     {url('api:models')}"),
        ("Classify one picture (or several: one -F each)",
         f"{auth} \\\n     -F images=@photo.jpg \\\n     {url('api:classify', run_id)}"),
        ("Classify a zip of many pictures, then read the results when it is done",
         (f"{auth} \\\n     -F file=@pictures.zip \\\n     {url('api:classification_start', run_id)}\n"
          "JOB=12   # the \"id\" it answered; read its state until \"status\" is \"done\"\n"
          f"{auth} \\\n     {url('api:classification_results', 0).replace('/0/results/', '/$JOB/results/')}")),
        ("Start a training run on a dataset (settings left out are the suggested ones)",
         (f"{auth} \\\n     -H \"Content-Type: application/json\" -d '{{\"epochs\": 10}}' \\\n"
          f"     {url('api:run_start', dataset_id)}")),
        ("Make the model in a format (here ONNX), then download it once it is ready",
         (f"{auth} -X POST \\\n     {url('api:export_make', run_id, 'onnx')}\n"
          f"{auth} -o model-onnx.zip \\\n     {url('api:export_download', run_id, 'onnx')}")),
    ]


@login_required
@require_POST
def revoke(request, token_pk):
    token = get_object_or_404(ApiToken, pk=token_pk, owner=request.user)
    token.revoke()
    messages.info(request, f"The token “{token.name}” was revoked: programs using it are refused from now on.")
    return redirect("api:tokens")
