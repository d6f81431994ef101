"""From the confusion matrix to the pictures: the page of the test pictures behind a cell or a row of a
finished run, the run page's links to it, and fixing a picture's label from there (moved, sent to the
inbox or removed through labelling.py, recorded in the label history, undoable)."""
from django.urls import reverse
from django.utils import timezone

from datasets_app.models import Image, LabelChange
from datasets_app.versions import freeze, manifest_rows
from tests.conftest import new_run
from training_app.models import PictureAnswer, TrainingRun

NAMES = ["horizontal", "spot", "vertical"]  # the shapes dataset's classes, as a run lists them
H, S, V = range(3)


def finished_run(dataset, answers=True):
    """A finished run on `dataset` as the worker leaves it. Four of its horizontal pictures: two mistakes
    (said vertical at 91 %, spot at 60 %) and two right answers (98 % and 55 % sure)."""
    run = new_run(dataset, status="succeeded")
    horizontal = list(dataset.images.filter(image_class__name="horizontal").order_by("id")[:4])
    TrainingRun.objects.filter(id=run.id).update(
        finished_at=timezone.now(), test_accuracy=0.5, class_names=NAMES, test_count=4,
        confusion=[[2, 1, 1], [0, 0, 0], [0, 0, 0]],
        per_class=[{"name": name, "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": n}
                   for name, n in zip(NAMES, (4, 0, 0))],
        wrong=[[horizontal[0].id, V, 0.91], [horizontal[1].id, S, 0.6]])
    if answers:
        PictureAnswer.objects.bulk_create([
            PictureAnswer(run=run, image_id=horizontal[0].id, true_class=H, predicted_class=V, confidence=0.91),
            PictureAnswer(run=run, image_id=horizontal[1].id, true_class=H, predicted_class=S, confidence=0.6),
            PictureAnswer(run=run, image_id=horizontal[2].id, true_class=H, predicted_class=H, confidence=0.98),
            PictureAnswer(run=run, image_id=horizontal[3].id, true_class=H, predicted_class=H, confidence=0.55),
        ])
    run.refresh_from_db()
    return run, horizontal


def pictures_url(run, **query):
    from urllib.parse import urlencode
    return f"{reverse('training:pictures', args=[run.pk])}?{urlencode(query)}"


def change_url(image):
    return reverse("datasets:picture_change", args=[image.dataset_id, image.id])


def shown_ids(response):
    return [picture["answer"].image_id for picture in response.context["pictures"]]


def test_a_row_lists_the_surest_mistakes_first_then_the_least_sure_right_answers_in_words(alice, shapes):
    run, (sure_wrong, unsure_wrong, sure_right, unsure_right) = finished_run(shapes)
    response = alice.get(pictures_url(run, true="horizontal"))
    assert response.status_code == 200
    assert shown_ids(response) == [sure_wrong.id, unsure_wrong.id, unsure_right.id, sure_right.id]
    page = response.content.decode()
    assert "Test pictures labelled horizontal" in page
    assert "labelled horizontal, the model says vertical, 91 % sure" in page
    assert "labelled horizontal, the model says spot, 60 % sure" in page
    assert "horizontal, 98 % sure" in page and "horizontal, 55 % sure" in page
    assert page.index("91 % sure") < page.index("60 % sure") < page.index("55 % sure") < page.index("98 % sure")


def test_a_cell_lists_only_its_pictures(alice, shapes):
    run, (sure_wrong, *_) = finished_run(shapes)
    response = alice.get(pictures_url(run, true="horizontal", predicted="vertical"))
    assert shown_ids(response) == [sure_wrong.id]
    assert "that the model called vertical" in response.content.decode()
    # The one-click fix offered is the model's answer, as a class of the dataset.
    assert response.context["pictures"][0]["fix"] == shapes.classes.get(name="vertical")
    empty = alice.get(pictures_url(run, true="spot", predicted="vertical"))
    assert empty.status_code == 200 and 'id="no-pictures"' in empty.content.decode()


def test_only_the_owner_sees_a_runs_pictures(client, alice, shapes, other_user):
    run, _ = finished_run(shapes)
    url = pictures_url(run, true="horizontal")
    client.force_login(other_user)
    assert client.get(url).status_code == 404
    client.logout()
    assert client.get(url).status_code == 302  # to the login page


def test_every_cell_row_and_wrong_picture_on_the_run_page_links_to_its_pictures(alice, shapes):
    run, (sure_wrong, *_) = finished_run(shapes)
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    base = reverse("training:pictures", args=[run.pk])
    for true in NAMES:
        assert f'href="{base}?true={true}"' in page  # the matrix's row, and the per-class table's
        for said in NAMES:
            assert f'href="{base}?true={true}&amp;predicted={said}"' in page
    assert page.count(f'href="{base}?true=horizontal"') >= 3  # matrix row, per-class name and count
    assert f'data-pictures-url="{base}"' in page  # the chart's cells, through run.js
    # The wrong pictures strip: each opens its cell, by the label the run learned from.
    assert f'class="wrong-link" href="{base}?true=horizontal&amp;predicted=vertical"' in page
    assert f'class="wrong-link" href="{base}?true=horizontal&amp;predicted=spot"' in page


def test_a_page_of_pictures_costs_the_same_queries_however_many_it_shows(alice, shapes):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    run, _ = finished_run(shapes)
    url = pictures_url(run, true="horizontal")
    with CaptureQueriesContext(connection) as few:
        assert len(shown_ids(alice.get(url))) == 4
    more = shapes.images.filter(image_class__name="horizontal").order_by("id")[4:]
    PictureAnswer.objects.bulk_create(PictureAnswer(run=run, image_id=image.id, true_class=H, predicted_class=S,
                                                    confidence=0.7) for image in more)
    with CaptureQueriesContext(connection) as many:
        assert len(shown_ids(alice.get(url))) == 10
    assert len(many) == len(few)


def test_moving_a_picture_is_recorded_takes_effect_in_the_next_version_and_can_be_undone(alice, shapes, user):
    run, (sure_wrong, *_) = finished_run(shapes)
    back = pictures_url(run, true="horizontal", predicted="vertical")
    vertical = shapes.classes.get(name="vertical")
    response = alice.post(change_url(sure_wrong), {"to": vertical.pk, "next": back})
    assert response.status_code == 302 and response["Location"] == back
    assert Image.objects.get(id=sure_wrong.id).label == "vertical"
    change = LabelChange.objects.filter(image_id=sure_wrong.id).first()
    assert (change.from_label, change.to_label, change.action, change.user) == (
        "horizontal", "vertical", "moved from test results", user)
    # The run keeps what it learned from; the next version has the new label.
    assert run.version.number == 1
    version = freeze(shapes, user)
    assert version.number == 2
    assert {row["image_id"]: row["label"] for row in manifest_rows(version)}[sure_wrong.id] == "vertical"

    page = alice.get(back).content.decode()
    assert "now in “vertical”" in page  # the run's answer stays; the picture's label now
    assert "was moved from “horizontal” to “vertical”" in page and 'id="picture-undo"' in page

    undone = alice.post(reverse("datasets:picture_undo", args=[shapes.pk]), {"next": back})
    assert undone.status_code == 302 and undone["Location"] == back
    assert Image.objects.get(id=sure_wrong.id).label == "horizontal"
    assert LabelChange.objects.filter(image_id=sure_wrong.id).first().action == "undone"
    history = alice.get(reverse("datasets:history", args=[shapes.pk])).content.decode()
    assert "Moved from a run&#x27;s test pictures" in history and "Change undone" in history
    # Once: a second undo says there is nothing left to undo.
    again = alice.post(reverse("datasets:picture_undo", args=[shapes.pk]), {"next": back}, follow=True)
    assert "There is nothing to undo" in again.content.decode()
    assert Image.objects.get(id=sure_wrong.id).label == "horizontal"


def test_sending_to_the_inbox_and_undoing_it(alice, shapes):
    run, (_, unsure_wrong, *_) = finished_run(shapes)
    back = pictures_url(run, true="horizontal")
    alice.post(change_url(unsure_wrong), {"to": "none", "next": back})
    assert Image.objects.get(id=unsure_wrong.id).image_class is None
    assert "now in the inbox" in alice.get(back).content.decode()
    alice.post(reverse("datasets:picture_undo", args=[shapes.pk]), {"next": back})
    assert Image.objects.get(id=unsure_wrong.id).label == "horizontal"


def test_removing_a_picture_and_putting_it_back_as_it_was(alice, shapes, user):
    run, (sure_wrong, *_) = finished_run(shapes)
    before = Image.objects.filter(id=sure_wrong.id).values().get()
    back = pictures_url(run, true="horizontal")
    response = alice.post(change_url(sure_wrong), {"to": "remove", "next": back}, follow=True)
    assert "was removed from the dataset" in response.content.decode()
    assert not Image.objects.filter(id=sure_wrong.id).exists()
    assert LabelChange.objects.filter(dataset=shapes).first().action == "removed from test results"
    page = alice.get(back)
    assert "removed from the dataset since this run" in page.content.decode()
    assert shown_ids(page)[0] == sure_wrong.id  # the run's answer is still there, without buttons

    alice.post(reverse("datasets:picture_undo", args=[shapes.pk]), {"next": back})
    assert Image.objects.filter(id=sure_wrong.id).values().get() == before  # same id, file, class, split
    restored = LabelChange.objects.filter(image_id=sure_wrong.id).first()
    assert (restored.to_label, restored.action, restored.user) == ("horizontal", "restored", user)


def test_bad_input_gets_a_clear_message_never_an_error(client, alice, shapes, other_user):
    run, (sure_wrong, *_) = finished_run(shapes)
    back = pictures_url(run, true="horizontal")

    unknown = alice.get(pictures_url(run, true="daisy"))
    assert unknown.status_code == 400 and "This run has no class called “daisy”" in unknown.content.decode()
    unknown = alice.get(pictures_url(run, true="horizontal", predicted="tulip"))
    assert unknown.status_code == 400 and "no class called “tulip”" in unknown.content.decode()
    assert alice.get(reverse("training:pictures", args=[run.pk])).status_code == 400  # no class at all

    def message_after(image_id, to, dataset=shapes):
        url = reverse("datasets:picture_change", args=[dataset.pk, image_id])
        response = alice.post(url, {"to": to, "next": back}, follow=True)
        assert response.status_code == 200
        return " ".join(str(m) for m in response.context["messages"])

    assert "That class no longer exists" in message_after(sure_wrong.id, 999999)
    assert "not a valid class" in message_after(sure_wrong.id, "tulip")
    assert "Choose a class" in message_after(sure_wrong.id, "")
    # Someone else's picture, named through one's own dataset: not found in it, nothing changed.
    theirs = new_dataset_picture(other_user)
    assert "no longer in the dataset" in message_after(theirs.id, "none")
    assert Image.objects.get(id=theirs.id).image_class_id == theirs.image_class_id
    # ... and through their dataset: a 404, as for every page of theirs.
    url = reverse("datasets:picture_change", args=[theirs.dataset_id, theirs.id])
    assert alice.post(url, {"to": "none"}).status_code == 404
    # A picture already removed.
    alice.post(change_url(sure_wrong), {"to": "remove", "next": back})
    assert "no longer in the dataset" in message_after(sure_wrong.id, "remove")
    # Already in that class: nothing changes, and it says so.
    horizontal = shapes.classes.get(name="horizontal")
    assert "already in “horizontal”" in message_after(run.test_answers.last().image_id, horizontal.pk)
    # The way back is a page of this site only.
    response = alice.post(change_url(Image.objects.get(id=run.test_answers.last().image_id)),
                          {"to": "none", "next": "https://elsewhere.example/"})
    assert response["Location"] == reverse("datasets:gallery", args=[shapes.pk])
    # Undo with nothing to undo, or in another dataset.
    client.force_login(other_user)
    response = client.post(reverse("datasets:picture_undo", args=[theirs.dataset_id]), follow=True)
    assert "There is nothing to undo" in response.content.decode()


def new_dataset_picture(owner):
    from tests.conftest import ingest_shapes
    return ingest_shapes(owner, name="Theirs").images.filter(image_class__isnull=False).first()


def test_a_run_from_before_answers_were_kept_says_so(alice, shapes):
    run, _ = finished_run(shapes, answers=False)
    response = alice.get(pictures_url(run, true="horizontal"))
    assert response.status_code == 200
    assert "finished before the site kept what the model said of each test picture" in response.content.decode()


def test_a_run_without_test_results_says_so(alice, shapes):
    run = new_run(shapes)
    response = alice.get(pictures_url(run, true="horizontal"))
    assert response.status_code == 200 and "no test results yet" in response.content.decode()


def test_a_removed_picture_whose_file_was_cleaned_up_cannot_come_back_and_it_says_why(alice, shapes):
    from dlsite import storage

    run, (sure_wrong, *_) = finished_run(shapes)
    back = pictures_url(run, true="horizontal")
    alice.post(change_url(sure_wrong), {"to": "remove", "next": back})
    storage.delete(sure_wrong.file.name)  # as the clean-up does once no row or version names it
    response = alice.post(reverse("datasets:picture_undo", args=[shapes.pk]), {"next": back}, follow=True)
    assert "its file was cleaned up" in response.content.decode()
    assert not Image.objects.filter(id=sure_wrong.id).exists()
