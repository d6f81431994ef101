"""Saying "I don't know" (mlcore/familiarity.py): the distance rule on features whose answer is known,
the spread rule, the words, and a served model that carries its statistics."""
import numpy as np
import pytest

from mlcore.familiarity import (
    FAR_PERCENTILE,
    MAX_FEATURES,
    Familiarity,
    Judgement,
    doubt_in_words,
    judge,
    sure_in_words,
)


def clusters(n, centres, spread=1.0, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(centres)
    return centres[labels] + rng.normal(0, spread, (n, centres.shape[1])), labels


def test_pictures_far_from_every_class_are_flagged_and_the_others_are_not():
    centres = np.array([[0.0] * 8, [10.0] * 8, [-10.0] * 8])
    features, labels = clusters(900, centres)
    held_out, _ = clusters(3000, centres, seed=1)
    familiarity = Familiarity.fit(features, labels, held_out[:1000])
    flagged = familiarity.distances(held_out[1000:]) > familiarity.far_above
    assert flagged.mean() == pytest.approx(1 - FAR_PERCENTILE / 100, abs=0.01)
    strangers = np.full((50, 8), 40.0) + np.random.default_rng(2).normal(0, 1, (50, 8))
    assert (familiarity.distances(strangers) > familiarity.far_above).all()


def test_the_distance_is_the_mahalanobis_distance_to_the_nearest_class():
    from sklearn.covariance import LedoitWolf

    centres = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 1.0]])
    features, labels = clusters(400, centres, spread=np.array([1.0, 3.0, 0.5]))
    familiarity = Familiarity.fit(features, labels, features[:50])
    means = np.stack([features[labels == c].mean(axis=0) for c in (0, 1)])
    precision = np.linalg.inv(LedoitWolf().fit(features - means[labels]).covariance_)
    points = np.array([[1.0, 2.0, 0.0], [4.0, -1.0, 3.0]])
    expected = [min((p - m) @ precision @ (p - m) for m in means) for p in points]
    assert familiarity.distances(points) == pytest.approx(expected, rel=1e-3)


def test_many_features_are_reduced_first(tmp_path):
    features, labels = clusters(600, np.eye(3, MAX_FEATURES + 100) * 20)
    familiarity = Familiarity.fit(features, labels, features[:100])
    assert familiarity.whitening.shape == (MAX_FEATURES + 100, MAX_FEATURES)
    familiarity.save(tmp_path)
    loaded = Familiarity.load(tmp_path)
    assert np.array_equal(loaded.whitening, familiarity.whitening) and loaded.far_above == familiarity.far_above
    assert Familiarity.load(tmp_path / "nothing-here") is None


def test_judgements_and_their_words():
    centres = np.array([[0.0, 0.0], [10.0, 10.0]])
    features, labels = clusters(200, centres)
    familiarity = Familiarity.fit(features, labels, features)
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.99, 0.01]])
    distances = familiarity.distances(np.array([[0.0, 0.0], [10.0, 10.0], [50.0, -50.0]]))
    sure, spread, far = judge(probabilities, distances, familiarity)
    assert (sure.best, sure.doubt) == (0, "") and sure.confidence == pytest.approx(0.9)
    assert (spread.best, spread.doubt) == (1, "spread")
    assert far.doubt == "far"
    names = ["cat", "dog"]
    assert doubt_in_words(spread, probabilities[1], names) == "Not sure: it could be dog or cat."
    assert doubt_in_words(far, probabilities[2], names).endswith("so it may not be one of: cat, dog.")
    assert doubt_in_words(sure, probabilities[0], names) == ""
    many = [f"class {i}" for i in range(9)]
    assert doubt_in_words(Judgement(0, 0.9, "far"), [0.9] + [0.0125] * 8, many).endswith(
        "class 0, class 1, class 2, class 3, class 4, class 5 and 3 more.")
    assert judge(probabilities, None, None)[2].doubt == ""  # a model saved before the statistics existed
    assert sure_in_words(0.916) == "92 % sure"


def test_a_served_model_with_its_statistics_judges_each_picture(tmp_path):
    from mlcore.builder import build_model
    from mlcore.presets import preset_spec
    from mlcore.serving import ModelInfo, Predictor, fit_familiarity, save_model

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 8, 8, 1), dtype=np.uint8)
    y = np.arange(60) % 2
    model = build_model(preset_spec("dense"), (8, 8, 1), 2)
    model_path, _ = save_model(model, ModelInfo(["a", "b"], (8, 8), 1), tmp_path)
    fit_familiarity(model, x, y, x[:20]).save(tmp_path)
    predictor = Predictor(model_path, ModelInfo(["a", "b"], (8, 8), 1))
    assert predictor.familiarity is not None
    probabilities, judgements = predictor.judge_arrays(list(x[:5]))
    assert probabilities.shape == (5, 2) and len(judgements) == 5
    assert [j.best for j in judgements] == list(probabilities.argmax(axis=1))
    assert np.allclose(predictor.predict_pixels(x[:5]), probabilities, atol=1e-6)
    assert fit_familiarity(model, x, y, x[:5]) is None  # too few pictures held out to draw the line


def test_a_trained_run_keeps_its_statistics_beside_its_model(user):
    from django.core.files.base import ContentFile

    from datasets_app.ingestion import ingest_upload
    from datasets_app.models import Dataset, Upload
    from predict_app.services import predictor_for
    from tests.conftest import new_run
    from tests.images import labelled_zip
    from training_app.tasks import train

    dataset = Dataset.objects.create(owner=user, name="More shapes")
    upload = Upload(dataset=dataset, original_name="shapes.zip")
    upload.file.save("shapes.zip", ContentFile(labelled_zip(per_class=40)), save=True)
    ingest_upload(Upload.objects.claim(upload.id))
    run = new_run(dataset, epochs=2)
    train(run.id)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.val_count >= 10
    assert (run.model_path.parent / "familiarity.npz").exists()
    assert predictor_for(run).familiarity is not None


def test_a_transfer_network_is_judged_on_its_pooled_features(tmp_path):
    """1,280 features after the pretrained base (EfficientNet-Lite0, whose weights come with the site),
    more than MAX_FEATURES: reduced first."""
    from mlcore.builder import build_model
    from mlcore.presets import preset_spec
    from mlcore.serving import fit_familiarity

    model = build_model(preset_spec("efficientnet_lite0"), (32, 32, 3), 2, weights_dir=tmp_path)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    familiarity = fit_familiarity(model, x, np.arange(40) % 2, x[:20])
    assert familiarity.whitening.shape[0] == 1280 and familiarity.whitening.shape[1] <= MAX_FEATURES
    assert familiarity.far_above > 0
