"""Issue 20, "honest hints, one voice": pages that say no more than the run shows. A run never tested
says so and is not the Classify page's first choice; one "not sure" rule worded one way; counts that
agree; no empty charts before the first epoch; small numbers and precision/recall/F1 in plain words.
(The overfitting hint and the best-epoch wording are tested in tests/test_live_page.py.)"""
import re

from django.urls import reverse
from django.utils.html import escape

from tests.conftest import new_run
from training_app.models import TrainingRun


def finished(dataset, test_accuracy=None, **fields):
    run = new_run(dataset, status="succeeded", model_file="models/x/model.keras", class_names=["a", "b", "c"],
                  test_accuracy=test_accuracy, **fields)
    return run


def selected_run(page):
    """The run id the model list has selected, on the first select named "run"."""
    select = re.search(r'<select name="run"[^>]*>(.*?)</select>', page, re.DOTALL).group(1)
    return int(re.search(r'<option value="(\d+)"[^>]*selected', select).group(1))


# ------------------------------------------------------------------------------------------------
# A run with no test pictures

def test_a_finished_run_without_test_pictures_says_it_was_never_tested(alice, shapes):
    run = finished(shapes)
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert 'class="badge succeeded untested" id="run-status">Finished, not tested<' in page
    assert 'id="not-tested"' in page and "nobody knows" in page
    status = alice.get(reverse("training:status", args=[run.pk])).json()
    assert (status["status_label"], status["badge_classes"], status["untested"]) == (
        "Finished, not tested", "succeeded untested", True)
    runs = alice.get(reverse("training:dataset_runs", args=[shapes.pk])).content.decode()
    assert '<span class="badge succeeded untested">Finished, not tested</span>' in runs


def test_a_tested_run_stays_a_plain_green_finished(alice, shapes):
    run = finished(shapes, test_accuracy=0.935, test_count=200,
                   confusion=[[62, 3, 2], [2, 60, 4], [1, 1, 65]])
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert 'class="badge succeeded" id="run-status">Finished<' in page
    assert 'id="not-tested"' not in page


def test_classify_page_offers_the_best_tested_model_first_not_the_newest(alice, shapes):
    good = finished(shapes, test_accuracy=0.935)
    finished(shapes, test_accuracy=0.80)
    untested = finished(shapes)  # the newest
    page = alice.get(reverse("predict:index")).content.decode()
    assert selected_run(page) == good.pk
    assert f"Run {untested.pk}: {shapes.name}, " in page and "never tested" in page
    # A link naming a run still chooses it; a wrong number falls back to the best tested one.
    assert selected_run(alice.get(reverse("predict:index") + f"?run={untested.pk}").content.decode()) == untested.pk
    assert selected_run(alice.get(reverse("predict:index") + "?run=99999").content.decode()) == good.pk


def test_classify_page_offers_the_newest_model_when_none_was_tested(alice, shapes):
    finished(shapes)
    newest = finished(shapes)
    assert TrainingRun.objects.default_model() == newest
    assert selected_run(alice.get(reverse("predict:index")).content.decode()) == newest.pk


# ------------------------------------------------------------------------------------------------
# One "not sure" rule, worded one way

def test_the_not_sure_rule_is_written_once_true_to_judge():
    from mlcore.familiarity import SPREAD_BELOW, SPREAD_RATIO, doubt_rule_in_words

    rule = doubt_rule_in_words()
    assert (SPREAD_BELOW, SPREAD_RATIO) == (0.5, 2.0)  # the words below say "half" and "twice"
    assert "less than half of the probability on its first choice, or less than twice the second's" in rule
    assert "looks unlike the pictures it learned from" in rule
    assert "most like it are mostly of another class" in rule
    assert "% sure" not in rule
    with_line = doubt_rule_in_words(0.6)
    assert with_line.startswith(rule[:-1].rsplit("; or when ", 1)[0])
    assert with_line.endswith("; or when it is less than 60 % sure (the line you can set here).")


def test_both_classify_pages_word_the_rule_the_same_way(alice, shapes):
    from mlcore.familiarity import doubt_rule_in_words
    from predict_app.models import Classification

    run = finished(shapes, test_accuracy=0.9)
    job = Classification.objects.create(owner=run.owner, run=run, name="holiday.zip", unsure_below=0.7,
                                        status=Classification.Status.DONE)
    many = alice.get(reverse("predict:classification", args=[job.pk])).content.decode()
    assert escape(doubt_rule_in_words(0.7)) in many
    assert "less than 70 % sure" in many
    # The page of a few pictures shows the rule with its results: the model's own rule, no line of the owner's.
    response = alice.get(reverse("predict:index"))
    assert response.context["doubt_rule"] == doubt_rule_in_words()


# ------------------------------------------------------------------------------------------------
# Counts that agree

def test_label_conflicts_count_pictures_the_same_way_on_every_page(alice, user):
    from tests.test_labelling import ingest, pets_files

    pets = ingest(user, pets_files(conflicts=1))  # one picture, filed under both cats and dogs
    assert pets.images.filter(label_conflict=True).count() == 2  # its two copies
    detail = alice.get(reverse("datasets:detail", args=[pets.pk])).content.decode()
    assert ">Label conflicts (1)</a>" in detail
    assert "1 picture is filed under more than one class." in detail
    assert "2 files in a label conflict" in detail  # the upload's own report counts its files
    conflicts = alice.get(reverse("datasets:conflicts", args=[pets.pk])).content.decode()
    assert "1 picture to settle." in conflicts


def test_the_runs_list_shows_the_epochs_a_run_actually_ran(alice, shapes):
    stopped = new_run(shapes, epochs=40)
    TrainingRun.objects.filter(id=stopped.id).update(status="succeeded", epoch=19, best_epoch=16, stopped_early=True)
    page = alice.get(reverse("training:list")).content.decode()
    assert '<th class="num">Epochs run</th>' in page
    assert '<td class="num" data-sort-value="19">19 of 40</td>' in page


# ------------------------------------------------------------------------------------------------
# No empty charts before the first epoch

def test_before_the_first_epoch_the_run_page_says_it_waits_instead_of_drawing_empty_charts(alice, shapes):
    from training_app.models import EpochMetric

    run = new_run(shapes, epochs=5)
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert '<div id="curves" hidden>' in page
    assert '<p class="card muted" id="curves-waiting">' in page and "Waiting for the first epoch to end" in page

    EpochMetric.objects.create(run=run, epoch=1, loss=0.9, accuracy=0.5, val_loss=0.8, val_accuracy=0.6,
                               learning_rate=0.001, seconds=2.0)
    TrainingRun.objects.filter(id=run.id).update(status="running", epoch=1)
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert '<div id="curves">' in page
    assert '<p class="card muted" id="curves-waiting" hidden>' in page


def test_a_run_that_ended_before_its_first_epoch_says_there_are_no_curves(alice, shapes):
    run = new_run(shapes, status="failed", error="The worker ran out of memory.")
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert '<div id="curves" hidden>' in page and "No epoch\n  finished, so there are no curves to draw." in page


# ------------------------------------------------------------------------------------------------
# Plain words: small numbers in decimals, precision/recall/F1 explained

def test_small_step_sizes_are_written_in_plain_decimals():
    from mlcore.words import decimal

    assert [decimal(x) for x in (3e-06, 1e-05, 0.0003, 0.001, 0.1, 1.0, 2.5e-07)] == [
        "0.000003", "0.00001", "0.0003", "0.001", "0.1", "1", "0.00000025"]


def test_pages_write_a_small_step_size_in_decimals_not_e_notation(alice, shapes):
    spec = {"layers": [{"type": "GlobalAveragePooling2D"}], "base": {"name": "mobilenetv2", "fine_tune_layers": 20}}
    run = new_run(shapes, preset="mobilenetv2", model_spec=spec, image_size=32, channels=3, learning_rate=3e-06,
                  fine_tune_epochs=4, fine_tune_learning_rate=0.00001)
    detail = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert "step size (learning rate) 0.000003" in detail and "step size 0.00001" in detail
    assert "3e-06" not in detail and "1e-05" not in detail
    runs = alice.get(reverse("training:dataset_runs", args=[shapes.pk])).content.decode()
    assert ">0.000003</td>" in runs
    again = alice.get(reverse("training:new", args=[shapes.pk]) + f"?from={run.pk}").content.decode()
    assert 'value="0.000003"' in again and "3e-06" not in again


def test_the_per_class_table_explains_precision_recall_and_f1(alice, shapes):
    run = finished(shapes, test_accuracy=0.9, test_count=10, confusion=[[3, 0, 0], [0, 3, 1], [0, 0, 3]],
                   per_class=[{"name": n, "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3} for n in "abc"])
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert "F1: the two in one number, high only when both" in page
    assert "Precision: when it says this class, how often it is" in page


def test_an_untested_runs_exports_do_not_claim_test_pictures(alice, shapes):
    from training_app.models import ModelExport

    run = finished(shapes, train_count=3, val_count=0, test_count=0)
    ModelExport.objects.create(run=run, kind="tflite", status=ModelExport.Status.READY, file="x.zip", size_bytes=10,
                               checked_pictures=3, accuracy=1.0, original_accuracy=1.0)
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert "right on 100.0 % of 3 training pictures" in page
    assert "test picture" not in page.split('id="exports"')[1].split("<tbody>")[1].split("</table>")[0]
