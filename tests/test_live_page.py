"""The live run page (speed, step-size curve, overfitting hint, settings in words, where it trains),
"Train again with changes", and the sortable table of all runs of a dataset."""
import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from mlcore.insights import overfitting_hint, samples_per_second
from tests.conftest import ingest_shapes, new_run
from training_app.models import EpochMetric, TrainingRun


def epochs(losses, val_losses):
    return [{"epoch": i, "loss": loss, "val_loss": val} for i, (loss, val) in enumerate(zip(losses, val_losses), 1)]


# ------------------------------------------------------------------------------------------------
# The overfitting rule (no Django)

def test_hint_when_validation_loss_rose_while_training_loss_fell():
    hint = overfitting_hint(epochs([1.0, 0.8, 0.6, 0.5, 0.4, 0.3], [0.9, 0.7, 0.6, 0.65, 0.7, 0.8]))
    assert hint is not None
    assert "learn the training images by heart" in hint
    assert "validation loss has risen for 3 epochs since epoch 3" in hint
    assert "augmentation" in hint and "early stopping" in hint


def test_no_hint_while_both_losses_fall():
    assert overfitting_hint(epochs([1.0, 0.8, 0.6, 0.5, 0.4], [0.9, 0.8, 0.7, 0.6, 0.55])) is None


def test_no_hint_after_too_few_epochs():
    assert overfitting_hint([]) is None
    assert overfitting_hint(epochs([1.0, 0.5], [0.5, 0.9])) is None


def test_no_hint_after_a_single_worse_epoch():
    assert overfitting_hint(epochs([1.0, 0.8, 0.6, 0.5], [0.9, 0.7, 0.6, 0.9])) is None


def test_no_hint_without_validation_loss():
    assert overfitting_hint(epochs([1.0, 0.8, 0.6, 0.5, 0.4], [None] * 5)) is None
    # Nor while the latest epoch's validation loss is not known.
    assert overfitting_hint(epochs([1.0, 0.8, 0.6, 0.5, 0.4], [0.5, 0.6, 0.7, 0.8, None])) is None


def test_no_hint_when_training_loss_got_worse_too():
    # Both curves going up is a step size too large or a broken run, not memorising.
    assert overfitting_hint(epochs([0.5, 0.6, 0.7, 0.8], [0.5, 0.6, 0.7, 0.8])) is None


def test_no_hint_for_a_flat_noisy_validation_curve():
    assert overfitting_hint(epochs([1.0, 0.8, 0.6, 0.5, 0.4], [0.9, 0.5, 0.5004, 0.5002, 0.5003])) is None


def with_accuracy(rows, accuracies, val_accuracies):
    return [row | {"accuracy": a, "val_accuracy": v} for row, a, v in zip(rows, accuracies, val_accuracies)]


def test_hint_when_training_accuracy_leads_validation_by_more_than_ten_points_two_epochs_running():
    # Both losses still fall, so only the gap is evidence: 99 % against 80 % right.
    rows = with_accuracy(epochs([1.0, 0.8, 0.6, 0.5], [0.9, 0.8, 0.7, 0.65]),
                         [0.6, 0.8, 0.97, 0.99], [0.6, 0.75, 0.81, 0.80])
    hint = overfitting_hint(rows)
    assert "learn the training images by heart" in hint
    assert "in epoch 4 it was right on 99 % of its training images but only 80 % of its validation images" in hint


def test_no_hint_for_a_gap_of_ten_points_or_less_or_for_one_epoch():
    rows = epochs([1.0, 0.8, 0.6, 0.5], [0.9, 0.8, 0.7, 0.65])
    assert overfitting_hint(with_accuracy(rows, [0.6, 0.8, 0.97, 0.99], [0.6, 0.75, 0.90, 0.92])) is None
    # A gap in the latest epoch only is not enough.
    assert overfitting_hint(with_accuracy(rows, [0.6, 0.8, 0.9, 0.99], [0.6, 0.75, 0.88, 0.80])) is None


def test_with_few_validation_images_a_gap_must_be_larger_than_luck():
    rows = with_accuracy(epochs([1.0, 0.8, 0.6, 0.5], [0.9, 0.8, 0.7, 0.65]),
                         [0.6, 0.8, 0.97, 0.95], [0.6, 0.75, 0.8, 0.8])
    assert overfitting_hint(rows, val_count=500) is not None
    # With 10 validation images, 80 % give or take two standard errors is 55 % to 105 %.
    assert overfitting_hint(rows, val_count=10) is None


def test_hint_suggests_only_what_the_run_does_not_use():
    rows = epochs([1.0, 0.8, 0.6, 0.5, 0.4, 0.3], [0.9, 0.7, 0.6, 0.65, 0.7, 0.8])
    hint = overfitting_hint(rows, augmentation=True, dropout=True)
    assert "More images or early stopping help." in hint
    assert "augmentation" not in hint and "Dropout" not in hint

    hint = overfitting_hint(rows, augmentation=True, dropout=True, early_stopping_patience=3)
    assert "More images helps." in hint
    assert "early stopping" not in hint.lower().split("early stopping is on")[0]
    # While it trains, it says what early stopping will do instead of suggesting it.
    assert "Early stopping is on: once validation loss has not improved for 3 epochs" in hint


def test_no_hint_after_early_stopping_went_back_to_the_best_epoch():
    # The run of the issue: validation loss rose for the patience's epochs after epoch 3, early
    # stopping ended the run and the model went back to epoch 3. What came after is not in the model.
    rows = epochs([1.0, 0.8, 0.6, 0.5, 0.4, 0.3], [0.9, 0.7, 0.6, 0.65, 0.7, 0.8])
    assert overfitting_hint(rows, early_stopping_patience=3) is not None
    assert overfitting_hint(rows, early_stopping_patience=3, kept_epoch=3) is None
    # The gap at the kept epoch is still evidence about the model it kept.
    rows = with_accuracy(rows, [0.7, 0.97, 0.99, 0.99, 0.99, 0.99], [0.7, 0.85, 0.8, 0.78, 0.76, 0.7])
    assert "in epoch 3 it was right on 99 %" in overfitting_hint(rows, early_stopping_patience=3, kept_epoch=3)


def test_samples_per_second():
    assert samples_per_second(1000, 2.0) == 500
    assert samples_per_second(0, 2.0) is None
    assert samples_per_second(1000, 0) is None
    assert samples_per_second(1000, None) is None


# ------------------------------------------------------------------------------------------------
# The status JSON the live page polls

def add_epochs(run, rows):
    for epoch, (loss, val_loss, lr, seconds) in enumerate(rows, 1):
        EpochMetric.objects.create(run=run, epoch=epoch, loss=loss, accuracy=1 - loss / 2, val_loss=val_loss,
                                   val_accuracy=1 - val_loss / 2, learning_rate=lr, seconds=seconds)


OVERFITTING = [(1.0, 0.9, 0.01, 4.0), (0.7, 0.6, 0.01, 2.5), (0.5, 0.7, 0.001, 2.0), (0.3, 0.9, 0.0001, 2.0)]


def test_status_json_has_speed_step_sizes_hint_and_where_it_trains(alice, shapes):
    run = new_run(shapes, epochs=4)
    TrainingRun.objects.filter(id=run.id).update(status="running", epoch=4, train_count=24, worker_host="trainer-1",
                                                 devices="NVIDIA H100 80GB HBM3 (mixed precision)")
    add_epochs(run, OVERFITTING)

    data = alice.get(reverse("training:status", args=[run.pk])).json()

    assert data["samples_per_s"] == 12.0  # 24 training images in the latest epoch's 2 s
    assert data["samples_per_s_estimated"] is False
    assert data["seconds_per_epoch"] == 2.0
    assert [m["learning_rate"] for m in data["metrics"]] == [0.01, 0.01, 0.001, 0.0001]
    assert "validation loss has risen for 2 epochs since epoch 2" in data["overfitting_hint"]
    assert data["worker_host"] == "trainer-1"
    assert data["devices"] == "NVIDIA H100 80GB HBM3 (mixed precision)"
    assert data["where"] == "trainer-1, on NVIDIA H100 80GB HBM3 (mixed precision)"


def test_status_json_estimates_speed_during_the_first_epoch(alice, shapes):
    run = new_run(shapes, batch_size=8)
    TrainingRun.objects.filter(id=run.id).update(
        status="running", epoch=1, batch=3, batches_per_epoch=3, train_count=24, worker_host="trainer-1",
        devices="CPU", training_started_at=timezone.now() - timedelta(seconds=12))

    data = alice.get(reverse("training:status", args=[run.pk])).json()

    assert data["samples_per_s_estimated"] is True
    assert data["samples_per_s"] == pytest.approx(2.0, rel=0.05)  # 3 steps of 8 images in about 12 s
    assert data["seconds_per_epoch"] is None
    assert data["overfitting_hint"] is None
    assert data["where"] == "trainer-1, on its processor (CPU)"


def test_status_json_of_a_waiting_run(alice, shapes):
    run = new_run(shapes)
    data = alice.get(reverse("training:status", args=[run.pk])).json()
    assert (data["samples_per_s"], data["seconds_per_epoch"], data["overfitting_hint"]) == (None, None, None)
    assert data["metrics"] == []
    assert data["where"] == "Not started yet"
    assert data["best_epoch_note"] == ""


# ------------------------------------------------------------------------------------------------
# The run page

def test_run_page_shows_the_settings_in_plain_words(alice, shapes):
    run = new_run(shapes, optimizer="sgd", lr_schedule="cosine", early_stopping_patience=3, label_smoothing=0.1,
                  class_weighting="auto", seed=42, resize_mode="crop",
                  augmentation={"flip": "horizontal", "rotation": 15})
    TrainingRun.objects.filter(id=run.id).update(worker_host="trainer-1", devices="2 × NVIDIA H100 80GB HBM3")

    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()

    assert "Small convolutional network" in page
    assert "16×16 pixels, grayscale" in page or "16×16 pixels, colour" in page
    assert "Centre crop: cut the middle square out of the picture, then resize" in page
    assert "flip left–right, rotate up to 15°" in page
    assert "SGD with momentum, step size (learning rate) 0.01" in page
    assert "Cosine: starts at the step size" in page
    assert "batch size" in page.lower() and "8 images a step" in page
    assert "stops when validation loss has not improved for 3 epochs" in page
    assert "Automatic: images of rare classes count more" in page
    assert "<dt>Label smoothing</dt><dd>0.1</dd>" in page
    assert "42 (the same seed and settings give nearly the same result)" in page
    assert "trainer-1, on 2 × NVIDIA H100 80GB HBM3" in page
    assert 'id="lr-chart"' in page
    assert "Fine-tuning" not in page  # only for runs that fine-tune a pretrained network


def test_run_page_says_what_is_off(alice, shapes):
    page = alice.get(reverse("training:detail", args=[new_run(shapes).pk])).content.decode()
    assert "<dt>Random changes (augmentation)</dt><dd>Off</dd>" in page
    assert "<dt>Early stopping</dt><dd>Off: trains for every epoch</dd>" in page
    assert "<dt>Label smoothing</dt><dd>Off</dd>" in page
    assert "Not started yet" in page


def test_run_page_describes_fine_tuning(alice, shapes):
    spec = {"layers": [{"type": "GlobalAveragePooling2D"}], "base": {"name": "mobilenetv2", "fine_tune_layers": 20}}
    run = new_run(shapes, preset="mobilenetv2", model_spec=spec, image_size=32, channels=3, fine_tune_epochs=4,
                  fine_tune_learning_rate=0.00001)
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert "Then 4 more epochs with the top 20 layers of the pretrained network unfrozen, step size 0.00001" in page


def test_run_page_says_which_epoch_the_model_keeps_after_stopping_early(alice, shapes):
    run = new_run(shapes, epochs=10, early_stopping_patience=2)
    TrainingRun.objects.filter(id=run.id).update(status="succeeded", epoch=7, best_epoch=5, stopped_early=True,
                                                 finished_at=timezone.now())
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert ("Stopped early at epoch 7: its validation loss had not improved for 2 epochs. The model keeps the "
            "weights of epoch 5, the best (lowest validation loss).") in page


def test_run_page_says_which_epoch_the_model_keeps_after_a_stop(alice, shapes):
    run = new_run(shapes, epochs=10)
    TrainingRun.objects.filter(id=run.id).update(status="cancelled", epoch=4, best_epoch=3,
                                                 finished_at=timezone.now())
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert "Stopped by you; the model keeps the weights of epoch 3, the best (lowest validation loss) so far." in page
    assert alice.get(reverse("training:status", args=[run.pk])).json()["best_epoch_note"].startswith("Stopped by you")


def test_finished_run_stopped_early_shows_no_overfitting_hint(alice, shapes):
    run = new_run(shapes, epochs=10, early_stopping_patience=2, augmentation={"flip": "horizontal"})
    add_epochs(run, OVERFITTING)
    TrainingRun.objects.filter(id=run.id).update(status="succeeded", epoch=4, best_epoch=2, stopped_early=True,
                                                 finished_at=timezone.now())
    assert alice.get(reverse("training:status", args=[run.pk])).json()["overfitting_hint"] is None
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert "by heart" not in page.split('id="overfitting-hint"')[1].split("</p>")[0]


def test_running_hint_leaves_out_what_the_run_already_uses(alice, shapes):
    spec = {"layers": [{"type": "Flatten"}, {"type": "Dropout", "rate": 0.3}], "base": None}
    run = new_run(shapes, epochs=10, early_stopping_patience=3, augmentation={"flip": "horizontal"}, model_spec=spec)
    add_epochs(run, OVERFITTING)
    TrainingRun.objects.filter(id=run.id).update(status="running", epoch=4)
    hint = alice.get(reverse("training:status", args=[run.pk])).json()["overfitting_hint"]
    assert "More images helps." in hint
    assert "augmentation" not in hint and "Dropout" not in hint
    assert "Early stopping is on" in hint


def test_a_run_without_validation_images_says_early_stopping_went_by_training_loss(alice, shapes):
    run = new_run(shapes, epochs=10, early_stopping_patience=3)
    TrainingRun.objects.filter(id=run.id).update(status="succeeded", epoch=6, best_epoch=3, stopped_early=True,
                                                 train_count=20, val_count=0, finished_at=timezone.now())
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert "its training loss had not improved for 3 epochs" in page
    assert "the best (lowest training loss)" in page
    assert "stops when training loss has not improved for 3 epochs" in page


def test_run_page_shows_the_hint_and_links(alice, shapes):
    run = new_run(shapes, epochs=4)
    add_epochs(run, OVERFITTING)
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert "learn the training images by heart" in page
    assert f'href="{reverse("training:new", args=[shapes.pk])}?from={run.pk}"' in page
    assert "Train again with changes" in page
    assert f'href="{reverse("training:dataset_runs", args=[shapes.pk])}"' in page
    assert f'href="{reverse("training:code", args=[run.pk])}"' in page and "Show the code" in page


# ------------------------------------------------------------------------------------------------
# "Train again with changes"

def test_train_again_opens_the_form_with_that_runs_settings(alice, shapes):
    run = new_run(shapes, epochs=7, batch_size=16, optimizer="sgd", learning_rate=0.05, lr_schedule="step",
                  early_stopping_patience=2, seed=99, augmentation={"flip": "horizontal"})
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    link = f'{reverse("training:new", args=[shapes.pk])}?from={run.pk}'
    assert link in page

    response = alice.get(link)

    assert response.status_code == 200
    assert response.context["cloned_from"] == run
    form = response.context["form"]
    initial = form.initial
    for name, value in run.settings().items():
        if name == "model_spec":
            assert json.loads(initial[name]) == value  # the layer builder reads it as JSON
        else:
            assert initial[name] == value, name
    # The augmentation arrives as one field per setting; the page's inputs show them.
    assert form["augment_flip"].value() == "horizontal"
    assert form["epochs"].value() == 7 and form["optimizer"].value() == "sgd"


def test_train_again_ignores_someone_elses_run(alice, shapes, other_user):
    theirs = new_run(ingest_shapes(other_user, name="Theirs"), epochs=9, batch_size=32, seed=77)

    response = alice.get(f'{reverse("training:new", args=[shapes.pk])}?from={theirs.pk}')

    assert response.status_code == 200
    assert response.context["cloned_from"] is None
    initial = response.context["form"].initial
    assert (initial["epochs"], initial["batch_size"], initial["seed"]) != (9, 32, 77)


# ------------------------------------------------------------------------------------------------
# The table of all runs of a dataset

def finished_run(dataset, accuracy, val_accuracies=(), **fields):
    run = new_run(dataset, **fields)
    started = timezone.now() - timedelta(minutes=5)
    TrainingRun.objects.filter(id=run.id).update(
        status="succeeded", test_accuracy=accuracy, epoch=len(val_accuracies), started_at=started,
        finished_at=started + timedelta(seconds=125), worker_host="trainer-1", devices="CPU")
    for epoch, val in enumerate(val_accuracies, 1):
        EpochMetric.objects.create(run=run, epoch=epoch, loss=0.5, accuracy=0.8, val_loss=0.6, val_accuracy=val,
                                   learning_rate=0.001, seconds=1.0)
    return run


def test_dataset_runs_table_lists_every_run_with_its_settings_and_results(alice, shapes):
    good = finished_run(shapes, 0.9, [0.5, 0.85, 0.8], optimizer="sgd", learning_rate=0.02, lr_schedule="cosine",
                        augmentation={"flip": "horizontal"}, epochs=3)
    waiting = new_run(shapes, batch_size=32)

    response = alice.get(reverse("training:dataset_runs", args=[shapes.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="dataset-runs" data-sortable' in page
    assert page.count("<tr data-run=") == 2
    assert page.index(f'data-run="{waiting.pk}"') < page.index(f'data-run="{good.pk}"')  # newest first
    row = page[page.index(f'data-run="{good.pk}"'):]
    row = row[:row.index("</tr>")]
    for text in (f"Run {good.pk}</a>", "Finished", "Small convolutional network", "3 of 3", ">SGD with momentum<",
                 ">0.02<", ">Cosine<", ">On<", "90.0%", "85.0%", "2 min 5 s", "trainer-1, on its processor (CPU)"):
        assert text in row, text
    assert 'data-sort-value="125"' in row  # time taken, in seconds, for sorting
    assert 'title="flip left–right"' in row
    waiting_row = page[page.index(f'data-run="{waiting.pk}"'):]
    waiting_row = waiting_row[:waiting_row.index("</tr>")]
    assert ">Off<" in waiting_row and "Waiting for a worker" in waiting_row and "Not started yet" in waiting_row
    assert 'aria-sort="descending"' in page  # the order it starts in: newest first
    assert "js/sort_table.js" in page


def test_dataset_runs_table_has_one_set_of_queries_however_many_runs(alice, shapes, django_assert_num_queries):
    url = reverse("training:dataset_runs", args=[shapes.pk])
    template = finished_run(shapes, 0.5, [0.4, 0.6])
    metrics = list(template.epoch_metrics.all())

    def add_runs(count):
        for _ in range(count):
            run = TrainingRun.objects.get(id=template.id)
            run.pk = None
            run.save()
            EpochMetric.objects.bulk_create([EpochMetric(run=run, epoch=m.epoch, val_accuracy=m.val_accuracy)
                                             for m in metrics])

    add_runs(2)
    # The session, the person, the dataset, the runs with their best validation accuracy.
    with django_assert_num_queries(4):
        assert alice.get(url).content.decode().count("<tr data-run=") == 3
    add_runs(27)
    with django_assert_num_queries(4):
        assert alice.get(url).content.decode().count("<tr data-run=") == 30


def test_dataset_runs_table_is_only_for_the_owner(client, shapes, other_user):
    finished_run(shapes, 0.9, [0.8])
    client.force_login(other_user)
    assert client.get(reverse("training:dataset_runs", args=[shapes.pk])).status_code == 404


def test_dataset_runs_table_needs_a_login(client, shapes):
    response = client.get(reverse("training:dataset_runs", args=[shapes.pk]))
    assert response.status_code == 302 and "/login" in response["Location"]


def test_dataset_runs_table_shows_only_that_datasets_runs(alice, shapes, user):
    other = ingest_shapes(user, name="Other shapes")
    mine = finished_run(shapes, 0.9, [0.8])
    elsewhere = finished_run(other, 0.7, [0.6])
    page = alice.get(reverse("training:dataset_runs", args=[shapes.pk])).content.decode()
    assert f'data-run="{mine.pk}"' in page and f'data-run="{elsewhere.pk}"' not in page


def test_dataset_page_links_to_the_runs_table(alice, shapes):
    finished_run(shapes, 0.9, [0.8])
    page = alice.get(reverse("datasets:detail", args=[shapes.pk])).content.decode()
    assert f'href="{reverse("training:dataset_runs", args=[shapes.pk])}"' in page
