"""Training, evaluation and prediction, through the domain code called directly."""
import keras
import numpy as np
import pytest
from django.urls import reverse

from datasets_app.models import Dataset
from mlcore.evaluation import evaluate
from mlcore.images import load_model_input
from mlcore.presets import make_model
from mlcore.presets import PRESET_SPECS, needs_weights, preset_spec
from mlcore.serving import ModelInfo, Predictor
from mlcore.training import TrainingConfig, train_model
from tests.conftest import new_run
from tests.images import CLASSES, image_bytes
from training_app.models import TrainingRun
from training_app.runner import train_run
from training_app.tasks import train


@pytest.mark.parametrize("preset", sorted(key for key in PRESET_SPECS if not needs_weights(key)))
def test_each_preset_trains_an_epoch_and_takes_raw_pixels(preset):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 8, 8, 1), dtype=np.uint8)
    y = np.arange(20) % 2
    config = TrainingConfig(spec=preset_spec(preset), image_size=(8, 8), channels=1, num_classes=2, epochs=1,
                            batch_size=8, optimizer=PRESET_SPECS[preset]["optimizer"])
    epochs = []
    outcome = train_model(config, x, y, x[:4], y[:4], on_epoch=lambda e, logs: epochs.append((e, logs)))
    model = outcome.model
    assert not outcome.stopped and not outcome.stopped_early
    assert [e for e, _ in epochs] == [1]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(epochs[0][1])
    assert model.layers[1].name == "rescale"
    assert model.predict(x[:3], verbose=0).shape == (3, 2)


def test_the_tutorial_dense_network_has_its_layers():
    model = make_model("dense", (28, 28, 1), 10)
    assert [type(layer).__name__ for layer in model.layers] == [
        "InputLayer", "Rescaling", "Flatten", "Dense", "Dense", "Dense"]
    assert model.count_params() == 28 * 28 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10


def test_evaluation_gives_accuracy_confusion_matrix_and_per_class_scores():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    result = evaluate(probabilities, np.array([0, 1, 1, 1]), ["cat", "dog"])
    assert result.accuracy == 0.75
    assert result.confusion == [[1, 0], [1, 2]]
    assert result.per_class[0] == {"name": "cat", "precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3),
                                   "support": 1}
    assert result.wrong == [(2, 0, 0.7)]
    # Every test picture's answer, in test-set order: (true class, predicted class, its probability).
    assert result.answers == [(0, 0, 0.9), (1, 1, 0.8), (1, 0, 0.7), (1, 1, 0.6)]
    assert result.loss == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.3, 0.6])))


def test_a_run_trains_evaluates_and_saves_its_model(shapes):
    run = new_run(shapes, epochs=3)
    train(run.id)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert (run.train_count, run.val_count, run.test_count) == (24, 3, 3)
    assert list(run.epoch_metrics.values_list("epoch", flat=True)) == [1, 2, 3]
    assert run.epoch == 3 and run.batch == run.batches_per_epoch == 3
    assert run.class_names == sorted(CLASSES)
    assert np.array(run.confusion).sum() == 3 and len(run.per_class) == 3
    # Every test picture's answer is kept, by image: the run page opens the pictures behind each cell.
    answers = list(run.test_answers.values_list("image_id", "true_class", "predicted_class", "confidence"))
    test_images = shapes.images.filter(split="test").select_related("image_class")
    assert sorted(a[:2] for a in answers) == sorted((i.id, run.class_names.index(i.label)) for i in test_images)
    assert sum(true == predicted for _, true, predicted, _ in answers) == np.trace(run.confusion)
    assert all(0 < confidence <= 1 for *_, confidence in answers)
    assert run.model_path.exists() and ModelInfo.from_json(run.model_path.with_suffix(".json").read_text()) == \
        ModelInfo(sorted(CLASSES), (16, 16), 1)


def test_the_served_probabilities_match_plain_keras(shapes):
    run = new_run(shapes)
    train(run.id)
    run.refresh_from_db()
    data = image_bytes("vertical", 24, "JPEG", seed=5)
    predictor = Predictor(run.model_path, ModelInfo.from_json(run.model_path.with_suffix(".json").read_text()))
    from mlcore.images import decode_image

    served = predictor.predict_image(decode_image(data).image)
    plain = keras.models.load_model(run.model_path).predict(load_model_input(data, (16, 16), 1)[None], verbose=0)[0]
    np.testing.assert_allclose(served, plain, atol=1e-5)
    assert served.sum() == pytest.approx(1.0, abs=1e-5)


def test_cancel_stops_at_the_next_step_and_keeps_the_model(shapes):
    run = new_run(shapes, epochs=50)
    TrainingRun.objects.filter(id=run.id).update(status="running")
    run.refresh_from_db()
    run.request_cancel()
    run.refresh_from_db()
    assert run.cancel_requested
    train_run(run)
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert run.epoch_metrics.count() == 1  # stopped in the first epoch
    assert run.has_model and run.model_path.exists()


def test_cancelling_a_waiting_run_means_no_worker_will_take_it(shapes):
    run = new_run(shapes)
    run.request_cancel()
    assert TrainingRun.objects.get(id=run.id).status == "cancelled"
    assert TrainingRun.objects.claim(run.id) is None


def test_a_second_delivery_of_a_claimed_run_does_nothing(shapes):
    run = new_run(shapes)
    assert TrainingRun.objects.claim(run.id) is not None
    train(run.id)  # the duplicate message
    run.refresh_from_db()
    assert (run.status, run.attempts, run.epoch_metrics.count()) == ("running", 1, 0)


def test_training_a_dataset_with_one_class_is_refused(alice, user):
    dataset = Dataset.objects.create(owner=user, name="Cats only")
    dataset.classes.create(name="cats")
    response = alice.post(reverse("training:new", args=[dataset.pk]), {
        "preset": "dense", "image_size": 16, "epochs": 1, "batch_size": 8, "learning_rate": 0.001})
    assert response.status_code == 200
    assert "at least two" in str(response.context["form"].non_field_errors())
    assert not TrainingRun.objects.exists()


def test_the_training_form_offers_settings_that_suit_the_dataset(alice, shapes):
    form = alice.get(reverse("training:new", args=[shapes.pk])).context["form"]
    assert form.initial["image_size"] == 16 and form.initial["preset"] == "small_cnn"


def test_a_run_learns_from_the_version_frozen_when_it_started(alice, shapes, user):
    """Starting a run freezes the labels; an edit made before the worker gets to it changes nothing."""
    from datasets_app.labelling import delete_images, relabel

    response = alice.post(reverse("training:new", args=[shapes.pk]), {
        "preset": "dense", "image_size": 16, "epochs": 1, "batch_size": 8, "learning_rate": 0.01})
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and run.version.number == 1 and run.version.image_count == 30
    spots = list(shapes.images.filter(image_class__name="spot").values_list("id", flat=True))
    relabel(shapes, spots[:5], shapes.classes.get(name="vertical"), user)
    delete_images(shapes, spots[5:], user)
    train(run.id)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.class_names == sorted(CLASSES) and run.train_count + run.val_count + run.test_count == 30
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert "version 1" in page and "Later changes to the dataset do not change this run" in page
    second = alice.post(reverse("training:new", args=[shapes.pk]), {
        "preset": "dense", "image_size": 16, "epochs": 1, "batch_size": 8, "learning_rate": 0.01})
    assert second.status_code == 302
    assert TrainingRun.objects.latest("id").version.number == 2


@pytest.mark.parametrize("next_url, lands_on", [
    ("/runs/queue/", "/runs/queue/"),
    ("https://elsewhere.example/", None),  # None: the run's own page
    ("//elsewhere.example/", None),
])
def test_cancel_goes_back_to_the_page_it_came_from_on_this_site_only(alice, shapes, next_url, lands_on):
    run = new_run(shapes)
    response = alice.post(reverse("training:cancel", args=[run.pk]), {"next": next_url})
    assert response["Location"] == (lands_on or reverse("training:detail", args=[run.pk]))


def test_a_run_on_the_offline_pretrained_network_with_a_time_budget_trains_tests_and_saves(shapes):
    spec = preset_spec("efficientnet_lite0")
    run = new_run(shapes, preset="efficientnet_lite0", model_spec=spec, image_size=32, channels=3, epochs=5,
                  augmentation={"flip": "horizontal"}, time_budget_s=120, learning_rate=0.001)
    train(run.id)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert list(run.epoch_metrics.values_list("epoch", flat=True)) == [1, 2, 3, 4, 5]  # all fit in two minutes
    # The top learned from the features of the 24 training pictures in 12 views each, as few photos do
    # (mlcore.defaults.few_photos_plan: mirror images, and five crops with theirs): 36 batches of 8; then
    # it learned again with the validation pictures.
    assert run.batches_per_epoch == 36
    assert run.phase_results == [{"phase": "refit", "train": 24, "val": run.val_count, "crops": True}]
    assert run.test_accuracy is not None and run.model_path.exists()
    assert ModelInfo.from_json(run.model_path.with_suffix(".json").read_text()).image_size == (32, 32)


def test_a_fine_tuned_run_keeps_what_each_phase_gave_and_its_page_says_it(alice, shapes):
    spec = preset_spec("efficientnet_lite0")
    spec["base"]["fine_tune_layers"] = 11  # the last block and the head (mlcore.defaults.PHOTO_PLANS)
    run = new_run(shapes, preset="custom", model_spec=spec, image_size=32, channels=3, epochs=2, fine_tune_epochs=2,
                  fine_tune_learning_rate=0.0001, augmentation={"flip": "horizontal"}, time_budget_s=900)
    train(run.id)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    # With time left in its budget, a kept fine-tuning learns again with the validation pictures.
    assert [phase["phase"] for phase in run.phase_results] == ["top", "fine_tune", "mirrors"] + (
        ["refit"] if run.phase_results[1]["kept"] else [])
    assert list(run.epoch_metrics.values_list("epoch", flat=True)) == [1, 2, 3, 4]
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert "New top alone:" in page and "right on the validation images; after fine-tuning:" in page
    assert "with its mirror image" in page
    # The saved model answers as the trained one: reloaded, it gives the page's test accuracy.
    assert run.test_accuracy is not None and run.model_path.exists()


def test_a_run_whose_validation_prefers_mirror_images_saves_a_model_that_averages_them(alice, shapes, monkeypatch):
    """Whether averaging pays is for each run's validation pictures to say (mlcore.training.mirror_verdict,
    tested on its own in test_training_choices); here it is made to say yes, to follow what the run does then."""
    from mlcore.training import PartialTrunk

    measured = PartialTrunk.mirror_check
    monkeypatch.setattr(PartialTrunk, "mirror_check",
                        lambda self, *args, **kwargs: {**measured(self, *args, **kwargs), "kept": True})
    spec = preset_spec("efficientnet_lite0")
    spec["base"]["fine_tune_layers"] = 11
    run = new_run(shapes, preset="custom", model_spec=spec, image_size=32, channels=3, epochs=2, fine_tune_epochs=1,
                  fine_tune_learning_rate=0.0001, augmentation={"flip": "horizontal"}, time_budget_s=900)
    train(run.id)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.phase_results[2]["phase"] == "mirrors" and run.phase_results[2]["kept"]
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert "answers from each image and its mirror image together" in page
    # What the classify page and the API load: the saved network averages a picture with its mirror image.
    predictor = Predictor(run.model_path, ModelInfo.from_json(run.model_path.with_suffix(".json").read_text()))
    assert "mirror_average" in [layer.name for layer in predictor.model.layers]
    pictures = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    answers, mirrored = (predictor.model(p.astype(np.float32)) for p in (pictures, pictures[:, :, ::-1]))
    assert np.abs(np.asarray(answers) - np.asarray(mirrored)).max() < 1e-5
    # "Not sure" can be fitted on it (this dataset holds out too few pictures for the run to do so).
    from mlcore.serving import fit_familiarity
    many = np.random.default_rng(1).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    assert fit_familiarity(predictor.model, many[:14], np.arange(14) % 3, many[14:]) is not None
