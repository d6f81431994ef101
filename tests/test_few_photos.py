"""A handful of photos a class (the "photos_few" benchmark): the frozen top also learns from five crops of
each training photo, and learns again on the training and validation photos together (mlcore.defaults
few_photos_plan); the run page and the time estimate say so."""
import numpy as np

from mlcore.budget import estimate
from mlcore.defaults import (FEW_PHOTOS_CROPS, DatasetFacts, FewPhotos, few_photos_in_words, few_photos_plan,
                             suggest)
from mlcore.presets import preset_spec
from mlcore.training import TrainingConfig, crops, train_model
from training_app.presenters import phases_in_words

FLIP = {"flip": "horizontal", "rotation": 0, "zoom": 0}  # as a run stores it: every setting, the others off


def test_only_a_frozen_mirrored_top_without_early_stopping_on_few_photos_gets_crops_and_the_refit():
    lite0 = preset_spec("efficientnet_lite0")
    assert few_photos_plan(lite0, FLIP, 0, 0, 45) == FewPhotos(crops=True, refit=True)
    assert few_photos_plan(lite0, FLIP, 0, 0, FEW_PHOTOS_CROPS) == FewPhotos(crops=True, refit=True)
    assert few_photos_plan(lite0, FLIP, 0, 0, FEW_PHOTOS_CROPS + 1) == FewPhotos()
    assert few_photos_plan(lite0, FLIP, 8, 0, 45) == FewPhotos()  # early stopping needs unseen validation photos
    assert few_photos_plan(lite0, FLIP | {"rotation": 10}, 0, 0, 45) == FewPhotos()  # not readable ahead
    assert few_photos_plan(lite0, {}, 0, 0, 45) == FewPhotos()
    assert few_photos_plan(preset_spec("small_cnn"), FLIP, 0, 0, 45) == FewPhotos()
    tuned = preset_spec("efficientnet_lite0")
    tuned["base"]["fine_tune_layers"] = 11
    assert few_photos_plan(tuned, FLIP, 0, 10, 45) == FewPhotos()
    assert few_photos_plan(tuned, FLIP, 0, 0, 45) == FewPhotos(crops=True, refit=True)  # no fine-tuning epochs
    assert few_photos_in_words(FewPhotos(), "Only 45 training photos: ") == ""


def test_the_suggestion_for_ten_photos_a_class_says_what_the_top_does_with_them():
    handful = suggest(DatasetFacts(images=637, classes=5, typical_side=240, channels=3, largest_class=143,
                                   smallest_class=110, training_images=45))
    said = " ".join(handful["reasons"])
    assert "five crops" in said and "training and validation photos together" in said
    assert few_photos_plan(handful["model_spec"], handful["augmentation"], handful["early_stopping_patience"],
                           handful["fine_tune_epochs"], 45) == FewPhotos(crops=True, refit=True)
    more = suggest(DatasetFacts(images=800, classes=5, typical_side=240, channels=3, largest_class=160,
                                smallest_class=160, training_images=200))
    assert handful["epochs"] == 20  # of 12 views of each photo: as much as 100 epochs of 2 learned
    assert "five crops" not in " ".join(more["reasons"]) and (more["batch_size"], more["epochs"]) == (16, 100)
    assert all(more["reasons"]) and all(handful["reasons"])


def test_five_crops_are_the_corners_and_the_centre_resized_back():
    pixels = np.zeros((1, 10, 10, 3), np.uint8)
    pixels[0, :5, :5] = 200  # the top left quarter is bright
    top_left, top_right, bottom_left, bottom_right, centre = crops(pixels, share=0.5)
    assert all(view.shape == pixels.shape and view.dtype == np.uint8 for view in (top_left, centre))
    assert top_left.min() == 200 and top_right.max() == 0 and bottom_left.max() == 0 and bottom_right.max() == 0
    assert 0 < centre.mean() < 200


def lite0_few(**settings):
    values = {"spec": preset_spec("efficientnet_lite0"), "image_size": (32, 32), "channels": 3, "num_classes": 3,
              "epochs": 3, "batch_size": 8, "learning_rate": 0.01, "augmentation": {"flip": "horizontal"},
              "crop_views": True, "refit_with_validation": True} | settings
    return TrainingConfig(**values)


def three_kinds(seed=0):
    """Classes 0 and 1 to train on; the validation pictures are class 2 (dark), which training lacks."""
    rng = np.random.default_rng(seed)
    x = rng.integers(100, 200, (12, 32, 32, 3)).astype(np.uint8)
    y = np.arange(12) % 2
    x[y == 1, :, :16] = 250
    xv = rng.integers(0, 20, (4, 32, 32, 3)).astype(np.uint8)
    return x, y, xv, np.full(4, 2)


def test_the_top_is_checked_on_unseen_validation_photos_then_learns_again_with_them():
    x, y, xv, yv = three_kinds()
    epochs = []
    outcome = train_model(lite0_few(), x, y, xv, yv, on_epoch=lambda epoch, logs: epochs.append((epoch, logs)))
    # The epochs' figures are the first fit's, checked on validation pictures it had not seen: class 2 never
    # came up in training, so it got none of them right.
    assert [epoch for epoch, _ in epochs] == [1, 2, 3]
    assert all(logs["val_accuracy"] == 0 for _, logs in epochs)
    assert outcome.phases == [{"phase": "refit", "train": 12, "val": 4, "crops": True}]
    # The model kept learned again with the validation pictures: it now knows class 2.
    assert (outcome.model.predict(xv, verbose=0).argmax(1) == 2).all()
    assert not outcome.stopped and outcome.best_epoch is None
    # Without the refit, the validation pictures stay unseen.
    alone = train_model(lite0_few(refit_with_validation=False), x, y, xv, yv)
    assert alone.phases is None and not (alone.model.predict(xv, verbose=0).argmax(1) == 2).any()


def test_the_refit_without_crops_learns_from_each_picture_and_its_mirror_image():
    x, y, xv, yv = three_kinds(seed=1)
    outcome = train_model(lite0_few(crop_views=False), x, y, xv, yv)
    assert outcome.phases == [{"phase": "refit", "train": 12, "val": 4, "crops": False}]
    assert (outcome.model.predict(xv, verbose=0).argmax(1) == 2).all()


def test_crops_count_in_the_estimate_and_the_run_page_says_what_the_refit_did():
    plain = estimate("efficientnet_lite0", 224, 45, 5, 587, 100, pretrained=True, mirrored=True).seconds
    cropped = estimate("efficientnet_lite0", 224, 45, 5, 587, 100, pretrained=True, mirrored=True,
                       crop_views=True).seconds
    assert cropped - plain > 400 / (60 * (64 / 224) ** 2 * (224 / 64) ** 2)  # 12 looks instead of 2 or 1
    words = phases_in_words([{"phase": "refit", "train": 45, "val": 5, "crops": True}])
    assert "45 training and 5 validation images together" in words and "crops" in words


def test_one_look_at_the_test_pictures_gives_their_answers_and_the_features_familiarity_needs():
    from mlcore.builder import build_model
    from mlcore.familiarity import features_and_probabilities
    from mlcore.serving import fit_familiarity, predict_batch, predict_with_features

    rng = np.random.default_rng(0)
    model = build_model(preset_spec("dense"), (8, 8, 1), 2)
    x = rng.integers(0, 256, (30, 8, 8, 1), dtype=np.uint8)
    features, probabilities = predict_with_features(model, x)
    assert np.allclose(probabilities, predict_batch(model, x), atol=1e-6)
    assert np.allclose(features, predict_batch(features_and_probabilities(model), x, output=0), atol=1e-6)
    y = np.arange(30) % 2
    alone = fit_familiarity(model, x, y, x[:12], seed=1)
    shared = fit_familiarity(model, x, y, x[:12], seed=1, held_out_features=features[:12])
    assert type(alone) is type(shared) and vars(alone).keys() == vars(shared).keys()
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(vars(alone).values(), vars(shared).values())
               if isinstance(a, np.ndarray))


def test_the_run_page_says_what_a_run_on_few_photos_does_beyond_its_settings(shapes):
    from tests.conftest import new_run
    from training_app.presenters import settings_in_words

    run = new_run(shapes, preset="efficientnet_lite0", model_spec=preset_spec("efficientnet_lite0"), image_size=32,
                  channels=3, epochs=20, augmentation=FLIP, early_stopping_patience=0)
    assert "Few photos" not in dict(settings_in_words(run))  # not known before the worker counts them
    run.train_count = 24
    said = dict(settings_in_words(run))["Few photos"]
    assert said.startswith("Only 24 training photos: it also looks at five crops")
    assert run.training_config(2).crop_views and run.training_config(2).refit_with_validation
    run.early_stopping_patience = 5
    assert "Few photos" not in dict(settings_in_words(run)) and not run.training_config(2).crop_views
