"""A time budget a person understands: the estimate before starting, and a worker that keeps to it."""
import json
import time

import numpy as np

from mlcore.budget import Estimate, estimate
from mlcore.presets import preset_spec
from mlcore.training import TrainingConfig, train_model


def test_the_estimate_reads_as_minutes_and_says_where_it_comes_from():
    assert Estimate(30, measured=False).in_words().startswith("under a minute (on a small 2-core computer")
    assert Estimate(75, measured=True).in_words() == "about a minute (measured on this site's worker)"
    assert Estimate(600, measured=True).in_words().startswith("about 10 minutes")
    assert Estimate(3 * 3600, measured=False).in_words().startswith("about 3.0 hours")


def test_a_frozen_pretrained_base_costs_one_look_at_each_picture_whatever_the_epochs():
    few = estimate("efficientnet_lite0", 224, 2000, 300, 600, 10, pretrained=True, mirrored=True)
    many = estimate("efficientnet_lite0", 224, 2000, 300, 600, 100, pretrained=True, mirrored=True)
    assert few.seconds == many.seconds
    unmirrored = estimate("efficientnet_lite0", 224, 2000, 300, 600, 10, pretrained=True, mirrored=False)
    assert unmirrored.seconds < few.seconds


def test_networks_from_scratch_cost_each_epoch_and_more_for_bigger_pictures():
    ten = estimate("deeper_cnn", 64, 2000, 300, 600, 10, pretrained=False, mirrored=True, pack_ready=True)
    twenty = estimate("deeper_cnn", 64, 2000, 300, 600, 20, pretrained=False, mirrored=True, pack_ready=True)
    assert 1.8 < (twenty.seconds - 5) / (ten.seconds - 5) < 2.2
    bigger = estimate("deeper_cnn", 128, 2000, 300, 600, 10, pretrained=False, mirrored=True, pack_ready=True)
    assert bigger.seconds > 3 * ten.seconds


def test_speeds_measured_on_this_site_come_first_and_a_budget_caps_the_estimate():
    # 500 training images a second at 64 pixels: 10 epochs of 2,000 (and a third of 300 validation) take 42 s.
    measured = estimate("deeper_cnn", 64, 2000, 300, 0, 10, pretrained=False, mirrored=False, pack_ready=True,
                        measured_images_per_s=(500, 64))
    assert measured.measured and round(measured.seconds) == 5 + 42
    capped = estimate("deeper_cnn", 64, 2000, 300, 0, 1000, pretrained=False, mirrored=False, budget_s=120)
    assert capped.seconds == 120


def test_the_worker_fits_its_epochs_and_step_size_schedule_into_the_budget():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (512, 32, 32, 3), dtype=np.uint8)
    y = (x[:, :, :, 0].mean(axis=(1, 2)) > 127).astype(np.int64)
    config = TrainingConfig(spec=preset_spec("small_cnn"), image_size=(32, 32), channels=3, num_classes=2, epochs=500,
                            batch_size=32, lr_schedule="cosine", learning_rate=0.01)
    plans, epochs = [], []
    started = time.monotonic()
    budget_s = 10.0
    outcome = train_model(config, x, y, x[:128], y[:128], deadline=started + budget_s, on_plan=plans.append,
                          on_epoch=lambda epoch, logs: epochs.append((epoch, logs["learning_rate"], time.monotonic())))
    assert plans and 2 < plans[-1] < 500, plans  # planned after the first epoch, again when the pace changed
    assert len(epochs) == plans[-1] and not outcome.stopped_early
    last_epoch_s = epochs[-1][2] - epochs[-2][2]
    assert epochs[-1][2] - started <= budget_s + last_epoch_s  # no epoch began that would end well past it
    # The cosine was fitted to the planned epochs: by the last one the step size has glided most of the way
    # to its floor (1 % of 0.01), where a schedule over 500 epochs would still be almost 0.01.
    assert epochs[-1][1] < 0.003, epochs


def test_a_short_budget_shrinks_the_pictures_until_enough_epochs_fit():
    from mlcore.budget import size_for_budget

    common = {"pretrained": False, "mirrored": True}
    assert size_for_budget("deeper_cnn", 128, 2000, 300, 600, budget_s=0, **common) == 128  # no budget: as asked
    assert size_for_budget("deeper_cnn", 128, 2000, 300, 600, budget_s=3600, **common) == 128
    assert size_for_budget("deeper_cnn", 128, 2000, 300, 600, budget_s=180, **common) == 96  # three quarters
    assert size_for_budget("deeper_cnn", 128, 2000, 300, 600, budget_s=120, **common) == 64  # half: 4 times quicker
    assert size_for_budget("deeper_cnn", 128, 200_000, 0, 0, budget_s=120, **common) == 64  # none fits: the smallest
    assert size_for_budget("efficientnet_lite0", 224, 2000, 300, 600, budget_s=300, pretrained=True,
                           mirrored=True) == 224


def test_the_form_shows_the_estimate_and_the_estimate_follows_the_settings(alice, shapes):
    from django.urls import reverse

    page = alice.get(reverse("training:new", args=[shapes.pk])).content.decode()
    assert 'id="time-estimate"' in page and "under a minute" in page
    assert 'name="time_budget_s"' in page and "About 5 minutes" in page
    url = reverse("training:estimate", args=[shapes.pk])
    answer = alice.get(url, {"image_size": 16, "epochs": 3}).json()
    assert answer["text"].startswith("under a minute") and answer["image_size"] == 16
    assert alice.get(url, {"image_size": "big"}).json() == {"text": "", "image_size": None}
    assert alice.get(url, {"model_spec": "{not json"}).json()["text"] == ""


def test_someone_elses_dataset_has_no_estimate(client, shapes, other_user):
    from django.urls import reverse

    client.force_login(other_user)
    assert client.get(reverse("training:estimate", args=[shapes.pk])).status_code == 404


def test_a_run_started_with_a_budget_keeps_it_and_says_so(alice, shapes):
    from django.urls import reverse

    from training_app.models import TrainingRun

    response = alice.post(reverse("training:new", args=[shapes.pk]), {"time_budget_s": 300, "epochs": 4})
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and run.time_budget_s == 300
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert "About 5 minutes: after its first epochs the worker trains as many as fit" in page


def test_fine_tuning_epochs_add_to_the_estimate_of_a_pretrained_base():
    frozen = estimate("efficientnet_lite0", 224, 2000, 300, 600, 40, pretrained=True, mirrored=True)
    tuned = estimate("efficientnet_lite0", 224, 2000, 300, 600, 40, pretrained=True, mirrored=True, fine_tune_epochs=10)
    assert frozen.seconds + 60 < tuned.seconds < frozen.seconds + 600
    assert estimate("efficientnet_lite0", 224, 2000, 300, 600, 40, pretrained=True, mirrored=True, fine_tune_epochs=10,
                    budget_s=300).seconds == 300


def test_the_plan_and_what_each_phase_gave_read_as_words():
    from training_app.presenters import phases_in_words, plan_in_words

    spec = preset_spec("efficientnet_lite0")
    assert plan_in_words({"model_spec": spec, "fine_tune_epochs": 0}) == (
        "The plan: a new top learns on EfficientNet-Lite0, which stays as it is.")
    spec["base"]["fine_tune_layers"] = 11
    assert "its top 11 layers are fine-tuned for up to 10 epochs" in plan_in_words(
        {"model_spec": spec, "fine_tune_epochs": 10})
    assert plan_in_words({"model_spec": preset_spec("small_cnn")}) == ""
    top = {"phase": "top", "val_accuracy": 0.931, "val_loss": 0.2}
    assert phases_in_words([top, {"phase": "fine_tune", "val_accuracy": 0.954, "val_loss": 0.15, "kept": True}]) == (
        "New top alone: 93.1 % right on the validation images; after fine-tuning: 95.4 % (kept).")
    assert "went back to the new top alone" in phases_in_words(
        [top, {"phase": "fine_tune", "val_accuracy": 0.92, "val_loss": 0.3, "kept": False}])
    assert "too little of the time budget" in phases_in_words([top, {"phase": "fine_tune", "skipped": "time"}])
    mirrors = {"phase": "mirrors", "val_accuracy": 0.888, "mirrored_val_accuracy": 0.878, "kept": False}
    assert phases_in_words([top, mirrors]).endswith(
        "gave 87.8 % (against 88.8 % alone), so the model answers from the image alone.")
    assert "would give 90.0 %" in phases_in_words([top, {**mirrors, "mirrored_val_accuracy": 0.9}])
    assert phases_in_words([top, {**mirrors, "mirrored_val_accuracy": 0.9, "kept": True}]).endswith(
        "gave 90.0 % (against 88.8 % alone), so the model answers from each image and its mirror image together.")
    assert phases_in_words([mirrors]).startswith("Averaging each image's answer")  # a network trained whole
    assert phases_in_words(None) == ""


def test_fifteen_minutes_chosen_for_photos_buys_the_fine_tuning_plan(alice, shapes, monkeypatch):
    from django.urls import reverse

    from datasets_app.models import Dataset
    from mlcore.defaults import DatasetFacts, photo_plan
    from training_app.models import TrainingRun

    plan = photo_plan(900)  # Lite2's, or a smaller base's where this site lacks its weights
    # The shapes are tiny; seen as photos, they get the plan for photos.
    monkeypatch.setattr(Dataset, "training_facts", lambda self: DatasetFacts(
        images=30, classes=3, typical_side=240, channels=3, largest_class=10, smallest_class=10))
    url = reverse("training:estimate", args=[shapes.pk])
    frozen = json.dumps(preset_spec("efficientnet_lite0"))
    quick = alice.get(url, {"time_budget_s": 300, "model_spec": frozen, "fine_tune_epochs": 0}).json()
    assert quick["plan"] == "The plan: a new top learns on EfficientNet-Lite0, which stays as it is."
    assert quick["plan_url"] == ""
    slow = alice.get(url, {"time_budget_s": 900, "model_spec": frozen, "fine_tune_epochs": 0}).json()
    assert "would also fine-tune its top 11 layers" in slow["plan"] and slow["plan_url"].endswith("?time_budget_s=900")
    page = alice.get(slow["plan_url"]).content.decode()
    assert f"then its top 11 layers are fine-tuned for up to {plan.fine_tune_epochs} epochs" in page
    # A post that names only the time gets that time's plan for everything it leaves out.
    response = alice.post(reverse("training:new", args=[shapes.pk]), {"time_budget_s": 900})
    run = TrainingRun.objects.get()
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert (run.fine_tune_epochs, run.label_smoothing) == (plan.fine_tune_epochs, plan.label_smoothing)
    assert run.model_spec["base"]["fine_tune_layers"] == 11 and run.time_budget_s == 900
