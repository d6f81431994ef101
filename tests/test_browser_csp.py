"""The Content-Security-Policy in a real headless Chromium: every main page of the site, with its
scripts and charts at work, breaks none of the policy's rules (no inline script or style, nothing
from elsewhere). Chromium reports each violation as a `securitypolicyviolation` event and a console
error; either fails the test, naming the page."""
import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from predict_app.models import Classification, ClassifiedImage
from tests.browser import browser_page, expect, sign_up  # noqa: F401 (browser_page is a fixture)
from tests.conftest import new_run, shapes_for
from tests.images import image_bytes
from training_app.models import EpochMetric, TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Kept by every page from its first script on: what the page broke, for the test to read.
RECORD_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => window.reportViolation(
  `${event.effectiveDirective} blocked ${event.blockedURI || "inline"} at ${event.sourceFile}:${event.lineNumber}`));
"""


def finished_run(dataset):
    run = new_run(dataset, status="succeeded")
    names = list(dataset.classes.order_by("name").values_list("name", flat=True))
    image = dataset.images.filter(split="test").first() or dataset.images.first()
    TrainingRun.objects.filter(id=run.id).update(
        finished_at=timezone.now(), test_accuracy=0.8, class_names=names, epoch=2, train_count=24,
        confusion=[[3 if i == j else 1 for j in range(len(names))] for i in range(len(names))],
        per_class=[{"name": name, "precision": 0.8, "recall": 0.75, "f1": 0.77, "support": 4} for name in names],
        wrong=[[image.id, 1, 0.6]])
    for epoch in (1, 2):
        EpochMetric.objects.create(run=run, epoch=epoch, loss=1 / epoch, accuracy=0.5 * epoch, val_loss=1 / epoch,
                                   val_accuracy=0.4 * epoch, learning_rate=0.01 / 10 ** (epoch - 1), seconds=1.5)
    return TrainingRun.objects.get(id=run.id)


def a_classification(run):
    job = Classification.objects.create(owner=run.owner, run=run, name="holiday", status="done", total=1, done=1,
                                        expected_batches=1, received_batches=[0])
    picture = ClassifiedImage(classification=job, name="a/1.png", label=run.class_names[0], confidence=0.9,
                              probabilities=[0.9] + [0.1 / (len(run.class_names) - 1)] * (len(run.class_names) - 1))
    picture.file.save("1.png", ContentFile(image_bytes("spot", 8)))
    return job


def test_no_page_breaks_the_content_security_policy(live_server, browser_page):  # noqa: F811
    page, js_errors = browser_page
    violations = []
    page.expose_binding("reportViolation", lambda source, text: violations.append(f"{source['frame'].url}: {text}"))
    page.add_init_script(RECORD_VIOLATIONS)

    response = page.goto(f"{live_server.url}/accounts/login/")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    sign_up(page, live_server.url)
    get_user_model().objects.filter(username="browser-user").update(is_staff=True)  # for the staff pages
    dataset = shapes_for("browser-user")
    run = finished_run(dataset)
    job = a_classification(run)
    upload = dataset.uploads.first()

    pages = [reverse("datasets:list"), reverse("datasets:detail", args=[dataset.pk]),
             reverse("datasets:gallery", args=[dataset.pk]), reverse("datasets:inbox", args=[dataset.pk]),
             reverse("datasets:classes", args=[dataset.pk]), reverse("datasets:conflicts", args=[dataset.pk]),
             reverse("datasets:history", args=[dataset.pk]), reverse("datasets:add", args=[dataset.pk]),
             reverse("datasets:report", args=[dataset.pk, upload.pk]),
             reverse("training:new", args=[dataset.pk]), reverse("training:builder", args=[dataset.pk]),
             reverse("training:list"), reverse("training:dataset_runs", args=[dataset.pk]),
             reverse("training:detail", args=[run.pk]), reverse("training:code", args=[run.pk]),
             reverse("training:queue"), reverse("predict:index"), reverse("predict:classification", args=[job.pk]),
             reverse("pretrained:page"), reverse("housekeeping:disk"), "/no-such-page/"]
    for path in pages:
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        if path == reverse("training:detail", args=[run.pk]):
            # The charts still draw: curves, the step size, the confusion matrix (an image Plotly makes).
            expect(page.locator("#loss-chart .scatterlayer .trace")).to_have_count(2)
            expect(page.locator("#lr-chart .scatterlayer .trace .point")).to_have_count(2)
            expect(page.locator("#confusion-chart .heatmaplayer .hm image")).to_have_count(1)
        if path == reverse("datasets:detail", args=[dataset.pk]):
            expect(page.locator("#class-chart .barlayer .trace")).to_have_count(3)
        assert violations == [], path
    # The 404 page's own status is the one error Chromium's console may report.
    assert [error for error in js_errors if "/no-such-page/" not in error] == []
