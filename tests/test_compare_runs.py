"""Comparing runs of one dataset (/runs/compare/?runs=1,2): the curves overlaid, the settings side by side
with the differing rows marked, test accuracy and each class's F1, and the test pictures one run got
right and the other wrong; and the addresses it refuses."""
import json
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from datasets_app.models import Image
from datasets_app.versions import freeze
from mlcore.comparison import (
    PictureResults,
    per_class_side_by_side,
    picture_differences,
    settings_side_by_side,
)
from tests.conftest import ingest_shapes, new_run
from training_app.models import EpochMetric, TrainingRun

URL = reverse("training:compare")


# ------------------------------------------------------------------------------------------------
# The comparing itself (no Django)

def test_settings_side_by_side_marks_only_the_rows_that_differ():
    table = settings_side_by_side([
        [("Epochs", "10"), ("Batch size", "32 images a step")],
        [("Epochs", "20"), ("Batch size", "32 images a step"), ("Fine-tuning", "Then 5 more epochs")],
    ])
    assert [(row["name"], row["values"], row["differ"]) for row in table] == [
        ("Epochs", ["10", "20"], True),
        ("Batch size", ["32 images a step", "32 images a step"], False),
        ("Fine-tuning", ["–", "Then 5 more epochs"], True),  # a row only one run has differs too
    ]


def test_f1_side_by_side_matches_classes_by_name_and_marks_the_best():
    table = per_class_side_by_side([
        [{"name": "cat", "f1": 0.5}, {"name": "dog", "f1": 0.9}],
        None,  # a run without a test result
        [{"name": "dog", "f1": 0.9}, {"name": "cat", "f1": 0.75}, {"name": "fox", "f1": 0.2}],
    ])
    assert [(row["name"], row["values"], row["best"]) for row in table] == [
        ("cat", [0.5, None, 0.75], [False, False, True]),
        ("dog", [0.9, None, 0.9], [False, False, False]),  # all equal: no best to show
        ("fox", [None, None, 0.2], [False, False, False]),
    ]


def test_pictures_one_run_got_right_and_the_other_wrong():
    tested = {1: "cat", 2: "cat", 3: "dog", 4: "dog"}
    first = PictureResults(tested=tested, wrong={2: "dog", 3: "cat"}, complete=True)
    second = PictureResults(tested=tested, wrong={4: "cat", 2: "dog"}, complete=True)
    difference = picture_differences(first, second)
    assert difference.shared == 4
    assert difference.first_only == [4]  # right in the first, wrong in the second
    assert difference.second_only == [3]
    assert difference.unknown == 0  # picture 2: wrong in both, so in neither list


def test_only_the_pictures_both_runs_were_tested_on_count():
    first = PictureResults(tested={1: "cat", 2: "cat", 3: "dog"}, wrong={3: "cat"}, complete=True)
    # On a later version picture 3 went to training and 5 came into the test pictures.
    second = PictureResults(tested={1: "cat", 2: "cat", 5: "dog"}, wrong={1: "dog", 5: "cat"}, complete=True)
    difference = picture_differences(first, second)
    assert difference.shared == 2
    assert difference.first_only == [1] and difference.second_only == []


def test_a_run_that_kept_only_some_mistakes_claims_no_right_answers():
    tested = {1: "cat", 2: "cat", 3: "dog"}
    kept_some = PictureResults(tested=tested, wrong={1: "dog"}, complete=False)
    every = PictureResults(tested=tested, wrong={2: "dog"}, complete=True)
    difference = picture_differences(kept_some, every)
    # Picture 2 may be among the mistakes kept_some did not keep: not claimed as right.
    assert difference.first_only == [] and difference.unknown == 1
    assert difference.second_only == [1]  # `every` listed all its mistakes, so it got 1 right


# ------------------------------------------------------------------------------------------------
# The page

def finished(dataset, accuracy, curve, wrong=None, mistakes=None, per_class=None, **settings):
    """A run that finished and was tested on every test picture of its version; `wrong` (image ids with
    the class index it said) its mistakes, all of them unless `mistakes` says there were more."""
    run = new_run(dataset, **settings)
    test_rows = Image.objects.filter(dataset=dataset, split="test").count()
    names = run.version.class_names
    wrong = wrong or {}
    mistakes = len(wrong) if mistakes is None else mistakes
    # A confusion matrix with that many mistakes in all (where they fall does not matter here).
    confusion = [[0] * len(names) for _ in names]
    confusion[0][0], confusion[0][1] = test_rows - mistakes, mistakes
    TrainingRun.objects.filter(id=run.id).update(
        status="succeeded", finished_at=timezone.now(), epoch=len(curve), class_names=names,
        test_accuracy=accuracy, test_loss=0.4, test_count=test_rows, confusion=confusion,
        per_class=per_class or [{"name": n, "precision": 0.8, "recall": 0.8, "f1": 0.8, "support": 3} for n in names],
        wrong=[[image_id, said, 0.9] for image_id, said in wrong.items()])
    for epoch, (loss, val_accuracy) in enumerate(curve, 1):
        EpochMetric.objects.create(run=run, epoch=epoch, loss=loss, accuracy=0.5 + epoch / 100,
                                   val_loss=loss + 0.1, val_accuracy=val_accuracy, learning_rate=0.01, seconds=1)
    run.refresh_from_db()
    return run


def compare(client, *runs, status=200):
    response = client.get(URL, {"runs": ",".join(str(run.pk) for run in runs)})
    assert response.status_code == status, response.content.decode()[:2000]
    return response.content.decode()


def settings_row(page, name):
    """The <tr> of the settings table whose first cell starts with `name`."""
    table = page[page.index('id="compare-settings"'):]
    table = table[:table.index("</table>")]
    for row in re.findall(r"<tr[^>]*>.*?</tr>", table, re.DOTALL):
        if re.search(rf'<th scope="row">{re.escape(name)}', row):
            return row
    raise AssertionError(f"no row {name}")


def test_the_settings_that_differ_are_marked(alice, shapes):
    one = finished(shapes, 0.8, [(1.0, 0.5)], epochs=2, learning_rate=0.01, batch_size=8)
    two = finished(shapes, 0.9, [(1.0, 0.5)], epochs=5, learning_rate=0.001, batch_size=8)

    page = compare(alice, one, two)

    for name in ("Epochs", "Optimizer"):  # the step size is in the optimizer's row
        row = settings_row(page, name)
        assert 'class="differs"' in row and "≠ differs" in row, name
    assert ">2<" in settings_row(page, "Epochs") and ">5<" in settings_row(page, "Epochs")
    for name in ("Batch size", "Network", "Dataset version"):
        row = settings_row(page, name)
        assert "differs" not in row, name
    assert "Version 1" in settings_row(page, "Dataset version")


def test_the_curves_of_every_run_are_in_the_page(alice, shapes):
    one = finished(shapes, 0.8, [(1.0, 0.4), (0.7, 0.6)])
    two = finished(shapes, 0.9, [(0.9, 0.5), (0.5, 0.7), (0.3, 0.8)])

    page = compare(alice, two, one)  # the order picked is kept

    data = re.search(r'<script id="compare-curves" type="application/json">(.*?)</script>', page, re.DOTALL)
    curves = json.loads(data.group(1))
    assert [curve["id"] for curve in curves] == [two.pk, one.pk]
    assert [curve["name"] for curve in curves] == [f"Run {two.pk}", f"Run {one.pk}"]
    assert curves[0]["colour"] != curves[1]["colour"]  # each run its own colour
    assert [m["loss"] for m in curves[0]["metrics"]] == [0.9, 0.5, 0.3]
    assert [m["val_accuracy"] for m in curves[1]["metrics"]] == [0.4, 0.6]
    assert set(curves[0]["metrics"][0]) >= {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}
    assert 'id="compare-loss-chart"' in page and 'id="compare-accuracy-chart"' in page
    assert "js/compare.js" in page and "plotly/plotly.min.js" in page
    assert "cdn" not in page.lower()


def test_test_accuracy_and_each_classs_f1_side_by_side(alice, shapes):
    names = new_run(shapes).version.class_names
    one = finished(shapes, 0.8, [(1.0, 0.5)], per_class=[{"name": n, "f1": 0.5, "support": 3} for n in names])
    two = finished(shapes, 0.9, [(1.0, 0.5)], per_class=[{"name": n, "f1": 0.75, "support": 3} for n in names])

    page = compare(alice, one, two)

    row = page[page.index('id="compare-test-accuracy"'):]
    row = row[:row.index("</tr>")]
    assert row.index("80.0%") < row.index("90.0%") and "★ best" in row[row.index("90.0%"):]
    assert "★ best" not in row[:row.index("90.0%")]
    assert page.count('class="f1-row"') == len(names)
    for name in names:
        assert f"F1 of “{name}”" in page
    assert "50.0%" in page and "75.0%" in page
    assert "F1: one number for how well a class is found, 100 % is perfect" in page


def test_a_run_without_a_test_result_is_said_plainly(alice, shapes):
    one = finished(shapes, 0.8, [(1.0, 0.5)])
    waiting = new_run(shapes)

    page = compare(alice, one, waiting)

    assert f"Run {waiting.pk} has no test result" in " ".join(page.split())
    assert f"Run {waiting.pk} cannot be compared picture by picture: it has no test result." in page


def test_the_pictures_one_got_right_and_the_other_wrong(alice, shapes):
    tests = list(Image.objects.filter(dataset=shapes, split="test").order_by("id"))
    assert len(tests) >= 3
    a, b, both = tests[0], tests[1], tests[2]
    one = finished(shapes, 0.8, [(1.0, 0.5)], wrong={a.id: 1, both.id: 1})
    two = finished(shapes, 0.9, [(1.0, 0.5)], wrong={b.id: 2, both.id: 1})
    names = one.class_names

    page = compare(alice, one, two)

    section = page[page.index(f'id="pictures-{one.pk}-{two.pk}"'):]
    section = section[:section.index("</section>")]
    assert f"Both were tested on the same {len(tests)} test images." in section
    first_right = section[section.index(f"Right in run {one.pk}, wrong in run {two.pk}: 1"):
                          section.index(f"Right in run {two.pk}, wrong in run {one.pk}")]
    other_right = section[section.index(f"Right in run {two.pk}, wrong in run {one.pk}: 1"):]
    assert f'data-image="{b.id}"' in first_right and f'data-image="{a.id}"' not in first_right
    assert f"{b.image_class.name} → run {two.pk} said {names[2]}" in first_right
    assert f'data-image="{a.id}"' in other_right and f"run {one.pk} said {names[1]}" in other_right
    assert f'data-image="{both.id}"' not in section  # wrong in both
    assert reverse("datasets:image", args=[shapes.pk, b.id]) in first_right
    assert "most confident mistakes" not in section


def test_runs_that_kept_every_test_pictures_answer_are_compared_from_those(alice, shapes):
    from training_app.models import PictureAnswer

    tests = list(Image.objects.filter(dataset=shapes, split="test").order_by("id"))
    # Their mistake lists hold only one of two mistakes each, but every answer is kept: nothing is left out.
    one = finished(shapes, 0.5, [(1.0, 0.5)], wrong={tests[0].id: 1}, mistakes=2)
    two = finished(shapes, 0.5, [(1.0, 0.5)], wrong={tests[1].id: 1}, mistakes=2)
    classes = {image.id: one.class_names.index(image.image_class.name) for image in tests}
    for run, wrong in ((one, {tests[0].id, tests[2].id}), (two, {tests[1].id, tests[2].id})):
        PictureAnswer.objects.bulk_create(PictureAnswer(
            run=run, image_id=i, true_class=c, predicted_class=(c + 1) % len(run.class_names) if i in wrong else c,
            confidence=0.9) for i, c in classes.items())

    page = compare(alice, one, two)

    section = page[page.index(f'id="pictures-{one.pk}-{two.pk}"'):]
    section = section[:section.index("</section>")]
    assert "most confident mistakes" not in page
    first_right = section[section.index(f"Right in run {one.pk}, wrong in run {two.pk}: 1"):
                          section.index(f"Right in run {two.pk}, wrong in run {one.pk}")]
    assert f'data-image="{tests[1].id}"' in first_right
    assert f"Right in run {two.pk}, wrong in run {one.pk}: 1" in section
    assert f'data-image="{tests[2].id}"' not in section  # wrong in both


def test_a_run_that_kept_only_its_most_confident_mistakes_says_so(alice, shapes):
    tests = list(Image.objects.filter(dataset=shapes, split="test").order_by("id"))
    one = finished(shapes, 0.5, [(1.0, 0.5)], wrong={tests[0].id: 1}, mistakes=2)  # one mistake not kept
    two = finished(shapes, 0.9, [(1.0, 0.5)], wrong={tests[1].id: 1})

    page = compare(alice, one, two)

    assert f"Run {one.pk} kept only its 1 most confident mistakes" in page
    section = page[page.index(f'id="pictures-{one.pk}-{two.pk}"'):]
    # Run one's answer to tests[1] is not known: not claimed as right.
    assert f"Right in run {one.pk}, wrong in run {two.pk}: 0" in section
    assert f"Right in run {two.pk}, wrong in run {one.pk}: 1" in section
    assert "1 more test image one run got wrong are left out" in section


def test_a_run_without_per_picture_results_is_said_plainly(alice, shapes):
    one = finished(shapes, 0.8, [(1.0, 0.5)])
    older = finished(shapes, 0.8, [(1.0, 0.5)])
    TrainingRun.objects.filter(id=older.id).update(wrong=None)

    page = compare(alice, one, older)

    assert (f"Run {older.pk} cannot be compared picture by picture: it finished before runs kept which test "
            "pictures they got wrong.") in page
    assert f"Right in run {one.pk}, wrong in run" not in page


def test_on_different_versions_only_the_pictures_both_tested_are_compared(alice, shapes):
    tests = list(Image.objects.filter(dataset=shapes, split="test").order_by("id"))
    moved = tests[0]
    one = finished(shapes, 0.8, [(1.0, 0.5)], wrong={tests[1].id: 1})
    # The first test picture goes to training: the next run is on version 2, without it among its tests.
    Image.objects.filter(id=moved.id).update(split="train", split_fixed=True)
    version = freeze(shapes, shapes.owner)
    assert version.number == 2
    two = finished(shapes, 0.8, [(1.0, 0.5)], wrong={tests[2].id: 1}, version=version)
    # Were `moved` still tested, run one's right answer to it would count: it must not.
    TrainingRun.objects.filter(id=two.id).update(wrong=[[moved.id, 1, 0.9], [tests[2].id, 1, 0.9]])

    page = compare(alice, one, two)

    assert "≠ differs" in settings_row(page, "Dataset version")
    section = page[page.index(f'id="pictures-{one.pk}-{two.pk}"'):]
    section = section[:section.index("</section>")]
    assert f"only the {len(tests) - 1} test images both were tested on are compared" in section
    assert f'data-image="{moved.id}"' not in section
    assert f'data-image="{tests[2].id}"' in section and f'data-image="{tests[1].id}"' in section


def test_more_than_two_runs_are_each_set_against_the_first(alice, shapes):
    runs = [finished(shapes, 0.5 + i / 10, [(1.0, 0.5)]) for i in range(3)]
    page = compare(alice, *runs)
    assert f'id="pictures-{runs[0].pk}-{runs[1].pk}"' in page and f'id="pictures-{runs[0].pk}-{runs[2].pk}"' in page
    assert f'id="pictures-{runs[1].pk}-{runs[2].pk}"' not in page
    assert f"Each run is set against the first picked, run {runs[0].pk}." in page


# ------------------------------------------------------------------------------------------------
# Whose runs, and addresses it cannot compare

def test_someone_elses_run_is_not_found(alice, shapes, other_user):
    mine = finished(shapes, 0.8, [(1.0, 0.5)])
    theirs_dataset = ingest_shapes(other_user, name="Theirs")
    theirs = finished(theirs_dataset, 0.9, [(1.0, 0.5)])

    page = compare(alice, mine, theirs, status=404)

    assert f"You have no run {theirs.pk}" in page and 'id="compare-problem"' in page
    assert "Theirs" not in page  # nothing of their run shows
    # The same words as for a run that does not exist.
    assert "You have no run 99999" in compare(alice, mine, type("R", (), {"pk": 99999}), status=404)


def test_it_needs_a_login(client, shapes):
    one, two = finished(shapes, 0.8, [(1.0, 0.5)]), finished(shapes, 0.9, [(1.0, 0.5)])
    response = client.get(URL, {"runs": f"{one.pk},{two.pk}"})
    assert response.status_code == 302 and "/login" in response["Location"]


@pytest.mark.parametrize("query, words", [
    ({}, "Pick at least two runs"),
    ({"runs": ""}, "Pick at least two runs"),
    ({"runs": "abc,2"}, "“abc” is not a run number"),
    ({"runs": "-1,2"}, "“-1” is not a run number"),
    ({"runs": "1e3,2"}, "“1e3” is not a run number"),
    ({"runs": "9" * 400}, "is not a run number"),
    ({"runs": ",".join(str(i) for i in range(1, 12))}, "at most 8 runs"),
], ids=["none", "empty", "word", "negative", "float", "huge", "too-many"])
def test_addresses_it_cannot_read_get_a_clear_message(alice, query, words):
    response = alice.get(URL, query)
    assert response.status_code == 400
    page = response.content.decode()
    assert words in page and 'id="compare-problem"' in page


def test_one_run_named_twice_is_not_two_runs(alice, shapes):
    one = finished(shapes, 0.8, [(1.0, 0.5)])
    assert "Pick at least two runs" in compare(alice, one, one, status=400)


def test_runs_of_different_datasets_are_not_compared(alice, shapes, user):
    other = ingest_shapes(user, name="Other shapes")
    one, two = finished(shapes, 0.8, [(1.0, 0.5)]), finished(other, 0.9, [(1.0, 0.5)])
    assert "These runs are on different datasets" in compare(alice, one, two, status=400)


def test_the_runs_table_form_sends_the_ticked_runs(alice, shapes):
    one, two = finished(shapes, 0.8, [(1.0, 0.5)]), finished(shapes, 0.9, [(1.0, 0.5)])
    page = alice.get(reverse("training:dataset_runs", args=[shapes.pk])).content.decode()
    assert f'<form method="get" action="{URL}" id="compare-form">' in page
    for run in (one, two):
        assert f'<input type="checkbox" name="runs" value="{run.pk}"' in page
    # The form sends ?runs=1&runs=2: the compare page reads that too.
    response = alice.get(URL, {"runs": [one.pk, two.pk]})
    assert response.status_code == 200 and "Comparing 2 runs on" in response.content.decode()


def test_a_picture_relabelled_between_versions_shows_both_labels(alice, shapes):
    picture = Image.objects.filter(dataset=shapes, split="test").order_by("id").first()
    before = picture.image_class
    one = finished(shapes, 1.0, [(1.0, 0.5)])
    after = shapes.classes.exclude(id=before.id).first()
    Image.objects.filter(id=picture.id).update(image_class=after)
    version = freeze(shapes, shapes.owner)
    two = finished(shapes, 0.8, [(1.0, 0.5)], wrong={picture.id: 0}, version=version)

    page = compare(alice, one, two)

    said = version.class_names[0]
    assert (f"{before.name} (in run {two.pk}’s version: {after.name}) → run {two.pk} said {said}"
            in " ".join(page.split()))
