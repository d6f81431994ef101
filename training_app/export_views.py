"""The "Show the code" page: a run written out as the plain Keras program that does the same training.

The program is written by mlcore.export from the run's settings; these views only fetch the run
through the one ownership check and show or send the text.
"""
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import path

from mlcore.export import keras_script

from .access import get_run_for_user


def class_names(run):
    """The classes in the order of the model's outputs: the run's own once it has trained, else its version's."""
    return run.class_names or (run.version.class_names if run.version else [])


def run_script(run):
    """(file name, program text) of a run; the text is None when its settings cannot be written out
    (a run saved before a setting existed, say)."""
    filename = f"run-{run.id}-train.py"
    try:
        script = keras_script(run.settings(), class_names(run), run_id=run.id, dataset_name=run.dataset.name,
                              version_number=run.version.number if run.version else None)
    except ValueError:  # includes builder.SpecError
        script = None
    return filename, script


@login_required
def code_page(request, pk):
    run = get_run_for_user(request, pk)
    filename, script = run_script(run)
    return render(request, "training_app/code.html", {
        "run": run, "filename": filename, "script": script, "class_names": class_names(run)})


@login_required
def code_download(request, pk):
    run = get_run_for_user(request, pk)
    filename, script = run_script(run)
    if script is None:
        raise Http404("The code of this run cannot be written out.")
    response = HttpResponse(script, content_type="text/x-python; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


urlpatterns = [
    path("<int:pk>/code/", code_page, name="code"),
    path("<int:pk>/code.py", code_download, name="code_download"),
]
