"""Did the model learn anything? The chance level, the "near chance" verdict, the mix-ups and
"right N times out of 10" (mlcore/insights.py, no Django), then the pages that show them: the run
page, its live JSON, and the tables that list runs."""
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from mlcore.insights import (chance_level, clearly_above_chance, guessing_in_words, most_confused, near_chance,
                             times_out_of_ten, verdict_from_test, verdict_from_validation)
from tests.conftest import new_run
from training_app.models import EpochMetric, TrainingRun

FLOWERS = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]


def confusion_with(accuracy_per_class, per_class=20, mistakes_to=None):
    """A confusion matrix of len(accuracy_per_class) classes, `per_class` test images each; the
    images it gets wrong go to the class `mistakes_to` names for each row (the next one by default)."""
    n = len(accuracy_per_class)
    matrix = [[0] * n for _ in range(n)]
    for true, accuracy in enumerate(accuracy_per_class):
        right = round(accuracy * per_class)
        matrix[true][true] = right
        matrix[true][mistakes_to[true] if mistakes_to else (true + 1) % n] += per_class - right
    return matrix


# ------------------------------------------------------------------------------------------------
# The chance level

def test_chance_level_of_balanced_classes_is_one_over_the_number_of_classes():
    assert chance_level([20, 20, 20, 20, 20]) == pytest.approx(0.2)
    assert chance_level([1, 1]) == pytest.approx(0.5)


def test_chance_level_of_imbalanced_classes_is_always_saying_the_largest_class():
    assert chance_level([70, 10, 10, 10]) == pytest.approx(0.7)
    # 1/3 beats the largest class's 30%: random answers do better than always the same one.
    assert chance_level([30, 30, 40, 0]) == pytest.approx(0.4)
    assert chance_level([3, 3, 4]) == pytest.approx(0.4)
    assert chance_level([30, 35, 35]) == pytest.approx(0.35)  # ≥ 1/3 ≈ 0.333


def test_chance_level_without_classes_or_images():
    assert chance_level([]) is None
    assert chance_level(None) is None
    assert chance_level([0, 0, 0, 0]) == pytest.approx(0.25)


# ------------------------------------------------------------------------------------------------
# The "near chance" rule and its verdict

def test_todays_case_25_percent_on_5_classes_is_flagged():
    verdict = verdict_from_test(0.25, [20] * 5)
    assert verdict is not None
    assert verdict["final"] and verdict["guessing"]
    assert verdict["badge"] == "learned nothing useful"
    assert "no better than guessing" in verdict["title"]
    assert "about 3 times out of 10 (25 of the 100 images it never saw, 25%)" in verdict["text"]
    assert "about 2 times out of 10 (20%)" in verdict["text"]
    assert "do not trust its answers" in verdict["text"]
    tips = " ".join(verdict["tips"])
    for advice in ("labels", "gallery", "more images", "pretrained network", "more epochs", "step size"):
        assert advice in tips, advice


@pytest.mark.parametrize("test_images", [5, 25, 100, 1_000, 100_000])
def test_25_percent_on_5_classes_is_flagged_however_many_test_images(test_images):
    assert near_chance(0.25, 0.2, test_images)


@pytest.mark.parametrize("test_images", [2, 5, 10, 30, 100, 10_000])
def test_a_90_percent_model_on_5_classes_is_never_flagged(test_images):
    assert verdict_from_test(0.9, [test_images] * 5) is None
    assert not near_chance(0.9, 0.2, test_images)


def test_imbalanced_set_where_the_largest_class_gives_70_percent_flags_a_72_percent_model():
    verdict = verdict_from_test(0.72, [70, 10, 10, 10])
    assert verdict is not None and verdict["chance"] == pytest.approx(0.7)
    assert "always answering with its most common class" in verdict["text"]
    # Clearly above it, the model is not flagged.
    assert verdict_from_test(0.95, [70, 10, 10, 10]) is None


def test_a_small_test_set_needs_a_bigger_lead_over_chance():
    # 3 test images of 3 classes: 2 right could be luck (a guesser does it 7 times in 27)...
    luck = verdict_from_test(2 / 3, [1, 1, 1])
    assert luck is not None and not luck["guessing"]
    assert luck["badge"] == "may be just guessing"
    assert "With only 3 images to check it on" in luck["text"]
    # ...the same 67% on 300 test images is not.
    assert verdict_from_test(2 / 3, [100, 100, 100]) is None
    assert clearly_above_chance(0.2, 25) > clearly_above_chance(0.2, 2_500)


def test_the_rule_never_flags_a_model_halfway_from_chance_to_perfect():
    for counts in ([1, 1], [2, 2], [1, 1, 1], [5] * 5, [70, 10, 10, 10], [9, 1], [1000, 1000]):
        chance = chance_level(counts)
        halfway = chance + 0.5 * (1 - chance)
        assert not near_chance(halfway + 0.001, chance, sum(counts)), counts
    assert verdict_from_test(1.0, [2, 2]) is None  # 4 of 4 with two classes


def test_a_model_worse_than_guessing_is_flagged():
    assert verdict_from_test(0.05, [20] * 5)["badge"] == "learned nothing useful"


def test_tips_fit_the_run():
    big_steps = verdict_from_test(0.2, [20] * 5, learning_rate=0.1, pretrained=True, images_per_class=12)
    tips = " ".join(big_steps["tips"])
    assert "smaller step size (learning rate), such as 0.001 instead of 0.1" in tips
    assert "pretrained network" not in tips  # it already started from one
    assert "this run had about 12 a class" in tips
    small_steps = " ".join(verdict_from_test(0.2, [20] * 5, learning_rate=0.00001)["tips"])
    assert "larger step size (learning rate), such as 0.001 instead of 0.00001" in small_steps


def test_no_verdict_without_a_test_result():
    assert verdict_from_test(None, [20] * 5) is None
    assert verdict_from_test(0.25, []) is None


def test_validation_hint_after_several_epochs_near_chance():
    assert verdict_from_validation([0.2, 0.21], 5, 100) is None  # too early to say
    hint = verdict_from_validation([0.19, 0.2, 0.22, 0.21], 5, 100)
    assert hint is not None and not hint["final"] and hint["badge"] == ""
    assert hint["title"] == "It may not be learning"
    assert "For the last 3 epochs" in hint["text"] and "21 of the 100 validation images" in hint["text"]
    assert hint["tips"][0].startswith("You can stop this run now")
    # One good epoch among the last three: it is learning.
    assert verdict_from_validation([0.2, 0.21, 0.6, 0.22], 5, 100) is None
    # A model that started at chance and got better: no hint.
    assert verdict_from_validation([0.2, 0.2, 0.2, 0.5, 0.7, 0.8], 5, 100) is None
    # Unknown epochs are skipped; no classes, no verdict.
    assert verdict_from_validation([None, None, None], 5, 100) is None
    assert verdict_from_validation([0.2, 0.2, 0.2], 0, 100) is None


def test_validation_verdict_of_a_finished_run_uses_its_best_epoch():
    assert verdict_from_validation([0.2, 0.26, 0.22], 5, 100, finished=True)["final"]
    assert verdict_from_validation([0.2, 0.9, 0.22], 5, 100, finished=True) is None


# ------------------------------------------------------------------------------------------------
# Mix-ups and "N times out of 10"

def test_most_confused_lists_the_biggest_mix_ups_first():
    confusion = [[30, 12, 0], [2, 25, 3], [0, 1, 40]]
    pairs = most_confused(confusion, ["tulips", "roses", "daisy"])
    assert [pair["text"] for pair in pairs] == [
        "tulips taken for roses: 12 times", "roses taken for daisy: 3 times", "roses taken for tulips: 2 times"]
    assert pairs[0] == {"true": "tulips", "predicted": "roses", "count": 12,
                        "text": "tulips taken for roses: 12 times"}
    assert [p["text"] for p in most_confused(confusion, ["tulips", "roses", "daisy"], n=4)][-1] == \
        "daisy taken for roses: 1 time"


def test_most_confused_of_a_perfect_model_is_empty():
    assert most_confused([[5, 0], [0, 5]], ["a", "b"]) == []
    assert most_confused(None, []) == []


@pytest.mark.parametrize("accuracy, words", [
    (0.93, "about 9 times out of 10"), (0.25, "about 3 times out of 10"), (0.2, "about 2 times out of 10"),
    (0.1, "about 1 time out of 10"), (0.5, "about 5 times out of 10"), (0.96, "more than 9 times out of 10"),
    (0.03, "less than 1 time out of 10"), (1.0, "10 times out of 10"), (0.0, "0 times out of 10"),
])
def test_times_out_of_ten(accuracy, words):
    assert times_out_of_ten(accuracy) == words


def test_guessing_in_words():
    assert guessing_in_words([20] * 5, FLOWERS) == (
        "Guessing, without looking at the images, would be right about 2 times out of 10 (20%): there are 5 classes.")
    assert guessing_in_words([70, 10, 10, 10], ["cats", "dogs", "birds", "fish"]) == (
        "Always answering “cats”, the most common class, without looking at the images would be right "
        "about 7 times out of 10 (70%).")
    assert guessing_in_words([], []) is None


# ------------------------------------------------------------------------------------------------
# The pages (Django test client)

def finish(run, accuracy_per_class, per_class=20, class_names=FLOWERS, status="succeeded", **fields):
    """The run as the worker leaves it after testing: its confusion matrix and per-class table."""
    confusion = confusion_with(accuracy_per_class, per_class)
    total = sum(map(sum, confusion))
    TrainingRun.objects.filter(id=run.id).update(
        status=status, finished_at=timezone.now(), class_names=class_names, test_count=total,
        train_count=8 * per_class * len(class_names), val_count=total,
        test_accuracy=sum(confusion[i][i] for i in range(len(confusion))) / total, test_loss=1.6,
        confusion=confusion, per_class=[{"name": name, "precision": 0.2, "recall": 0.2, "f1": 0.2, "support": per_class}
                                        for name in class_names], wrong=[], **fields)
    run.refresh_from_db()
    return run


@pytest.fixture
def chance_run(shapes):
    """Today's case: 25% on 5 classes of flowers, where guessing gets 20%."""
    return finish(new_run(shapes), [0.25] * 5)


@pytest.fixture
def good_run(shapes):
    return finish(new_run(shapes), [0.9, 0.95, 0.9, 0.85, 0.9])


def test_run_page_of_a_chance_level_model_warns_in_plain_words(alice, chance_run):
    page = alice.get(reverse("training:detail", args=[chance_run.pk])).content.decode()

    assert 'id="learned-nothing"' in page
    box = page[page.index('id="learned-nothing"'):]
    box = box[:box.index("</section>")]
    assert "This model learned nothing useful: it did no better than guessing" in box
    assert "do not trust its answers" in box
    assert "Check the labels" in box and reverse("datasets:gallery", args=[chance_run.dataset.pk]) in box
    # The badge is not a plain success.
    assert re.search(r'<span class="badge succeeded guessing" id="run-status">Finished — learned nothing useful</span>',
                     page)
    # The result leads with times out of 10 and the comparison with guessing; the details stay below.
    assert "Right about 3 times out of 10 on images it never saw." in page
    assert ("For comparison: Guessing, without looking at the images, would be right about 2 times out of 10 "
            "(20%): there are 5 classes.") in page
    assert page.index('id="result-right"') < page.index('id="test-accuracy"') < page.index('id="confusion-chart"')
    assert page.index('id="learned-nothing"') < page.index('id="result-right"')
    assert 'id="test-accuracy">25.0%<' in page


def test_run_page_of_a_good_model_has_no_warning_and_says_how_often_it_is_right(alice, good_run):
    page = alice.get(reverse("training:detail", args=[good_run.pk])).content.decode()

    assert 'id="learned-nothing"' not in page
    assert "learned nothing" not in page and " guessing\"" not in page
    assert '<span class="badge succeeded" id="run-status">Finished</span>' in page
    assert "Right about 9 times out of 10 on images it never saw." in page
    assert "would be right about 2 times out of 10 (20%)" in page
    # The mix-ups, most first: each class's mistakes went to the next class.
    confused = page[page.index('id="most-confused"'):]
    confused = confused[:confused.index("</ul>")]
    assert re.findall(r"<li>(.*?)</li>", confused) == [
        "sunflowers taken for tulips: 3 times", "daisy taken for dandelion: 2 times",
        "roses taken for sunflowers: 2 times"]


def test_run_page_of_a_perfect_model_says_it_mixed_up_nothing(alice, shapes):
    run = finish(new_run(shapes), [1.0, 1.0], class_names=["cats", "dogs"])
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert "Right 10 times out of 10 on images it never saw." in page
    assert "It mixed up no classes" in page and 'id="learned-nothing"' not in page


def test_status_json_says_a_finished_run_learned_nothing(alice, chance_run, good_run):
    data = alice.get(reverse("training:status", args=[chance_run.pk])).json()
    assert data["learned_nothing"] is True
    assert data["status_label"] == "Finished — learned nothing useful"
    assert data["verdict"]["title"].startswith("This model learned nothing useful")
    assert data["chance_hint"] is None

    good = alice.get(reverse("training:status", args=[good_run.pk])).json()
    assert (good["learned_nothing"], good["status_label"], good["verdict"], good["chance_hint"]) == (
        False, "Finished", None, None)


def test_a_stopped_run_at_chance_reads_stopped_learned_nothing(alice, shapes):
    run = finish(new_run(shapes), [0.2] * 5, status="cancelled")
    assert alice.get(reverse("training:status", args=[run.pk])).json()["status_label"] == (
        "Stopped — learned nothing useful")


def training_at(dataset, val_accuracies, classes=5):
    run = new_run(dataset, epochs=10)
    TrainingRun.objects.filter(id=run.id).update(status="running", epoch=len(val_accuracies), val_count=100,
                                                 class_names=FLOWERS[:classes], train_count=400)
    for epoch, val in enumerate(val_accuracies, 1):
        EpochMetric.objects.create(run=run, epoch=epoch, loss=1.6, accuracy=0.2, val_loss=1.6, val_accuracy=val,
                                   learning_rate=0.01, seconds=1.0)
    return run


def test_while_training_the_page_hints_when_validation_stays_near_chance(alice, shapes):
    stuck = training_at(shapes, [0.2, 0.21, 0.19, 0.2])
    data = alice.get(reverse("training:status", args=[stuck.pk])).json()
    assert data["learned_nothing"] is False and data["status_label"] == "Training"
    assert data["chance_hint"].startswith("It may not be learning. For the last 3 epochs")
    assert "You can stop this run now" in data["chance_hint"]
    page = alice.get(reverse("training:detail", args=[stuck.pk])).content.decode()
    assert 'id="chance-hint" role="status">It may not be learning.' in page
    assert 'id="learned-nothing"' not in page  # only a hint while it trains

    learning = training_at(shapes, [0.2, 0.4, 0.6, 0.7])
    assert alice.get(reverse("training:status", args=[learning.pk])).json()["chance_hint"] is None
    early = training_at(shapes, [0.2, 0.2])
    assert alice.get(reverse("training:status", args=[early.pk])).json()["chance_hint"] is None


def test_a_failed_run_gets_no_verdict(alice, shapes):
    run = training_at(shapes, [0.2, 0.2, 0.2, 0.2])
    TrainingRun.objects.filter(id=run.id).update(status="failed", error="Out of memory", finished_at=timezone.now())
    data = alice.get(reverse("training:status", args=[run.pk])).json()
    assert (data["status_label"], data["verdict"], data["chance_hint"]) == ("Failed", None, None)


def test_a_finished_run_without_test_images_is_judged_by_its_best_validation_epoch(alice, shapes):
    run = training_at(shapes, [0.2, 0.22, 0.2])
    TrainingRun.objects.filter(id=run.id).update(status="succeeded", finished_at=timezone.now())
    data = alice.get(reverse("training:status", args=[run.pk])).json()
    assert data["status_label"] == "Finished — learned nothing useful"
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert 'id="learned-nothing"' in page and "22 of the 100 validation images" in page
    # The tables say the same, from the best epoch's validation accuracy.
    for url in (reverse("training:list"), reverse("training:dataset_runs", args=[shapes.pk])):
        assert "Finished — learned nothing useful" in alice.get(url).content.decode(), url


def row_of(page, run):
    row = page[page.index(f">Run {run.pk}</a>"):]
    return row[:row.index("</tr>")]


def test_the_runs_tables_never_call_a_chance_level_model_a_plain_success(alice, shapes, chance_run, good_run):
    for url in (reverse("training:list"), reverse("training:dataset_runs", args=[shapes.pk]),
                reverse("datasets:detail", args=[shapes.pk]), reverse("training:queue")):
        page = alice.get(url).content.decode()
        bad, good = row_of(page, chance_run), row_of(page, good_run)
        assert "Finished — learned nothing useful" in bad and "badge succeeded guessing" in bad, url
        assert "25.0%" in bad and "90.0%" in good, url
        assert "learned nothing" not in good and "guessing" not in good and ">Finished<" in good, url
    dataset_page = alice.get(reverse("training:dataset_runs", args=[shapes.pk])).content.decode()
    assert 'data-sort-value="25.0">25.0%<span class="guess-note">no better than guessing</span>' in dataset_page

    finished = {row["id"]: row for row in alice.get(reverse("training:queue_status")).json()["finished"]}
    assert finished[chance_run.pk]["status_label"] == "Finished — learned nothing useful"
    assert finished[chance_run.pk]["learned_nothing"] is True
    assert (finished[good_run.pk]["status_label"], finished[good_run.pk]["learned_nothing"]) == ("Finished", False)


def test_the_predict_page_says_which_models_learned_nothing(alice, chance_run, good_run):
    TrainingRun.objects.filter(id__in=[chance_run.id, good_run.id]).update(model_file="models/x.keras")
    page = alice.get(reverse("predict:index")).content.decode()
    assert "25.0% test accuracy — learned nothing useful" in page
    assert "90.0% test accuracy<" in page or "90.0% test accuracy</option>" in page
