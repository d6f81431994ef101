"""What leaves the site from a run: the "Show the code" page (the run written out as the plain Keras
program that does the same training, by mlcore.export) and the model in other formats (made and
checked by a worker: mlcore/formats.py, training_app/exporting.py). These views only fetch the run
through the one ownership check, queue, and show or send.
"""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from mlcore.export import keras_script
from mlcore.formats import FORMATS

from .access import get_run_for_user
from .models import ModelExport
from .presenters import export_rows
from .starting import start_export


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


def _run_with_model(request, pk, kind):
    run = get_run_for_user(request, pk)
    if kind not in FORMATS:
        raise Http404("There is no such format.")
    if not run.has_model:
        raise Http404("This run has no model.")
    return run


@login_required
@require_POST
def export_make(request, pk, kind):
    run = _run_with_model(request, pk, kind)
    start_export(run, kind)
    if request.accepts("text/html"):
        messages.info(request, f"{FORMATS[kind].label}: it is being made and checked; it will be offered below "
                               "when it is ready.")
        return redirect(reverse("training:detail", args=[run.pk]) + "#exports")
    return JsonResponse({"exports": export_rows(run)})


@login_required
def export_state(request, pk):
    return JsonResponse({"exports": export_rows(get_run_for_user(request, pk))})


@login_required
def export_download(request, pk, kind):
    run = _run_with_model(request, pk, kind)
    export = run.exports.filter(kind=kind, status=ModelExport.Status.READY).first()
    if export is None:
        raise Http404("This format has not been made yet.")
    archive = export.open()
    if archive is None:
        messages.error(request, f"{FORMATS[kind].label}: its file is no longer on the server; make it again.")
        return redirect(reverse("training:detail", args=[run.pk]) + "#exports")
    return FileResponse(archive, as_attachment=True, filename=f"run-{run.id}-{kind}.zip")


urlpatterns = [
    path("<int:pk>/code/", code_page, name="code"),
    path("<int:pk>/code.py", code_download, name="code_download"),
    path("<int:pk>/exports/", export_state, name="export_state"),
    path("<int:pk>/exports/<str:kind>/make/", export_make, name="export_make"),
    path("<int:pk>/exports/<str:kind>/download/", export_download, name="export_download"),
]
