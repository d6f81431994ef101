"""Every spreadsheet the site offers is safe to open: no cell a spreadsheet program would run as a
formula (one starting with = + - @, or with a tab or carriage return that can hide such a start)."""
import csv
import io

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from datasets_app.models import Dataset, Image, ImageClass, Upload, UploadOutcome
from predict_app.models import Classification, ClassifiedImage
from training_app.models import TrainingRun

HOSTILE = ["=1+2", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\t=1+2", "\r=1+2"]


def csv_url_names(patterns=None, namespace=""):
    """The name of every URL whose route is a CSV file or names one."""
    found = set()
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            found |= csv_url_names(pattern.url_patterns, inner)
        elif isinstance(pattern, URLPattern) and "csv" in f"{pattern.pattern} {pattern.name}".lower():
            found.add(namespace + pattern.name)
    return found


def upload_report(user):
    """An upload's report whose every text cell starts like a formula."""
    dataset = Dataset.objects.create(owner=user, name="Formulas")
    upload = Upload.objects.create(dataset=dataset, original_name="f.zip", status=Upload.Status.DONE)
    for number, text in enumerate(HOSTILE):
        image_class = ImageClass.objects.create(dataset=dataset, name=text)
        Image.objects.create(dataset=dataset, upload=upload, image_class=image_class, file=f"datasets/x/{number}.png",
                             original_name=text, width=1, height=1, channels=1, sha256=text)
        UploadOutcome.objects.create(upload=upload, file_name=text, kind=UploadOutcome.Kind.REJECTED, detail=text)
        UploadOutcome.objects.create(upload=upload, file_name=text, kind=UploadOutcome.Kind.CONFLICT, detail=text)
    return reverse("datasets:report_csv", args=[dataset.pk, upload.pk])


def classification_results(user):
    """A classification's results whose classes, names, answers and problems start like formulas."""
    dataset = Dataset.objects.create(owner=user, name="Formulas")
    run = TrainingRun.objects.create(owner=user, dataset=dataset, class_names=HOSTILE, preset="small_cnn", image_size=16,
                                     channels=1, epochs=1, batch_size=8, learning_rate=0.01)
    job = Classification.objects.create(owner=user, run=run, name="f.zip", status=Classification.Status.DONE)
    for text in HOSTILE:
        ClassifiedImage.objects.create(classification=job, name=text, label=text, confidence=0.5,
                                       probabilities=[0.5] + [0.1] * 5, file="classifications/x.png")
        ClassifiedImage.objects.create(classification=job, name=text, error=text, file="classifications/y.png")
    return reverse("predict:classification_csv", args=[job.pk])


SPREADSHEETS = {"datasets:report_csv": upload_report, "predict:classification_csv": classification_results}


def test_every_spreadsheet_the_site_offers_is_checked_here():
    assert csv_url_names() == set(SPREADSHEETS)


@pytest.mark.parametrize("name", sorted(SPREADSHEETS))
def test_no_cell_of_a_spreadsheet_starts_a_formula(alice, user, name):
    response = alice.get(SPREADSHEETS[name](user))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode() if response.streaming else response.content.decode()
    cells = [cell for row in csv.reader(io.StringIO(body, newline="")) for cell in row]
    for text in HOSTILE:
        assert "'" + text in cells  # each hostile text is there, shown as text
    assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@", "\t", "\r"))]
