"""Saying "I don't know" (mlcore/familiarity.py): the distance rule on features whose answer is known,
the spread rule, the words, and a served model that carries its statistics."""
import numpy as np
import pytest

from mlcore.familiarity import (
    FAR_PERCENTILE,
    FLAG_SHARE,
    MAX_FEATURES,
    MAX_KEPT,
    NEAR_PERCENTILE,
    NEIGHBOURS,
    SPREAD_BELOW,
    SPREAD_SHARE,
    VOTE_WARMTH,
    VOTERS,
    Familiarity,
    Judgement,
    Neighbours,
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


def test_a_transfer_network_is_judged_by_its_nearest_training_pictures(tmp_path):
    """The 1,280 pooled features after the pretrained base (EfficientNet-Lite0, whose weights come with
    the site): nearest neighbours, kept small beside the model, and served."""
    from mlcore.builder import build_model
    from mlcore.familiarity import features_and_probabilities
    from mlcore.presets import preset_spec
    from mlcore.serving import ModelInfo, Predictor, fit_familiarity, save_model

    model = build_model(preset_spec("efficientnet_lite0"), (32, 32, 3), 2, weights_dir=tmp_path)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    familiarity = fit_familiarity(model, x, np.arange(40) % 2, x[:20])
    assert isinstance(familiarity, Neighbours)
    assert familiarity.kept.shape == (40, 1280) and familiarity.kept.dtype == np.float16
    assert familiarity.far_above >= 0 and 0 < familiarity.spread_below <= SPREAD_BELOW
    info = ModelInfo(["a", "b"], (32, 32), 3)
    model_path, _ = save_model(model, info, tmp_path / "model")
    familiarity.save(tmp_path / "model")
    predictor = Predictor(model_path, info)
    assert isinstance(predictor.familiarity, Neighbours)
    _, judgements = predictor.judge_arrays(list(x[:3]) + [np.full((32, 32, 3), 255, np.uint8)])
    assert judgements[3].doubt == "far" and judgements[0].doubt != "far"  # a blank white picture; a training one
    # The kept pictures' classes travel with them, for the vote.
    assert np.array_equal(predictor.familiarity.labels, np.arange(40) % 2)
    assert predictor.familiarity.voters is None  # no features from training: the kept pictures vote
    # With the features training saw (a frozen base), every training picture votes, with no new pass over them.
    every = features_and_probabilities(model).predict(x, verbose=0)[0]
    voting = fit_familiarity(model, x, np.arange(40) % 2, x[:20], every_feature=every)
    assert voting.voters.shape == (40, 1280) and np.array_equal(voting.labels, np.arange(40) % 2)
    assert np.allclose(voting.kept.astype(np.float32), familiarity.kept.astype(np.float32), atol=2e-3)


def on_sphere(n, directions, spread=0.1, seed=0):
    """Features of n pictures around a few directions, as pooled features are: all positive, varied length."""
    rng = np.random.default_rng(seed)
    picked = directions[np.arange(n) % len(directions)]
    return np.abs(picked + rng.normal(0, spread, picked.shape)) * rng.uniform(0.5, 3, (n, 1))


def test_neighbours_flag_pictures_in_no_training_direction_and_few_others():
    directions = np.eye(4, 16)
    training, held_out = on_sphere(600, directions), on_sphere(3000, directions, seed=1)
    confident = np.tile([0.9, 0.1], (1000, 1))
    neighbours = Neighbours.fit(training, held_out[:1000], confident)
    flagged = neighbours.distances(held_out[1000:]) > neighbours.far_above
    assert flagged.mean() == pytest.approx(1 - NEAR_PERCENTILE / 100, abs=0.015)
    strangers = on_sphere(50, np.eye(4, 16, k=8), seed=2)  # other directions, any length
    assert (neighbours.distances(strangers) > neighbours.far_above).all()
    # Only the direction counts: the same picture ten times brighter is as familiar.
    assert neighbours.distances(held_out[:5] * 10) == pytest.approx(neighbours.distances(held_out[:5]), abs=1e-3)


def test_the_neighbours_distance_is_the_cosine_distance_to_the_kth_nearest():
    rng = np.random.default_rng(3)
    training, points = rng.normal(size=(50, 6)), rng.normal(size=(4, 6))
    neighbours = Neighbours.fit(training, training[:10], np.tile([0.6, 0.4], (10, 1)))
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    expected = 1 - np.sort(unit(points) @ unit(training).T, axis=1)[:, -NEIGHBOURS]
    assert neighbours.distances(points) == pytest.approx(expected, abs=2e-3)  # kept in float16


def test_neighbours_keep_at_most_max_kept_and_load_back(tmp_path):
    training = on_sphere(MAX_KEPT + 200, np.eye(3, 8))
    probabilities = np.random.default_rng(0).dirichlet([1, 1, 1], 200)
    neighbours = Neighbours.fit(training, training[:200], probabilities)
    assert neighbours.kept.shape == (MAX_KEPT, 8)
    # The spread line: the least sure SPREAD_SHARE % of the held-out pictures, never above SPREAD_BELOW.
    assert neighbours.spread_below == pytest.approx(min(SPREAD_BELOW, np.percentile(probabilities.max(axis=1),
                                                                                   SPREAD_SHARE)))
    neighbours.save(tmp_path)
    loaded = Familiarity.load(tmp_path)
    assert isinstance(loaded, Neighbours) and loaded.k == NEIGHBOURS
    assert np.array_equal(loaded.kept, neighbours.kept) and loaded.far_above == pytest.approx(neighbours.far_above)
    assert loaded.spread_below == pytest.approx(neighbours.spread_below)
    assert Neighbours.fit(np.zeros((20, 8)), training[:20], probabilities[:20]) is None  # features that say nothing


def test_a_model_with_neighbours_is_spread_only_below_its_own_line():
    neighbours = Neighbours(np.eye(2, dtype=np.float16), far_above=0.5, k=1, spread_below=0.4)
    probabilities = np.array([[0.55, 0.45], [0.35, 0.33], [0.9, 0.1]])
    features = np.array([[1.0, 0.1], [0.1, 1.0], [-1.0, -1.0]])
    sure, spread, far = judge(probabilities, neighbours.distances(features), neighbours)
    assert sure.doubt == "" and spread.doubt == "spread" and far.doubt == "far"
    # The fixed rules would have doubted the first: 0.55 is not twice 0.45.
    assert judge(probabilities[:1], None, None)[0].doubt == "spread"


def voting_neighbours(seed=0, wrong_share=0.025):
    """Neighbours fitted on three classes, each in its own direction, with held-out pictures the model
    answers surely, wrongly for about wrong_share of them."""
    directions = np.eye(3, 12)
    training, held_out = on_sphere(300, directions), on_sphere(400, directions, seed=seed + 1)
    labels, truth = np.arange(300) % 3, np.arange(400) % 3
    answers = np.where(np.random.default_rng(seed).random(400) < wrong_share, (truth + 1) % 3, truth)
    sure = np.full((400, 3), 0.02)
    sure[np.arange(400), answers] = 0.96
    return Neighbours.fit(training, held_out, sure, labels=labels), held_out, sure, answers != truth


def test_the_vote_doubts_a_sure_answer_whose_nearest_training_pictures_are_of_another_class():
    neighbours, *_ = voting_neighbours()
    assert neighbours.vote_above < 1.0  # a line was drawn
    features = on_sphere(2, np.eye(3, 12)[[1, 1]], seed=5)  # two pictures like the training pictures of b
    probabilities = np.array([[0.96, 0.02, 0.02], [0.02, 0.96, 0.02]])  # "a" (wrong, sure) and "b"
    wrong, right = judge(probabilities, neighbours.distances(features), neighbours, features)
    assert wrong.doubt == "unlike" and wrong.looks_like == 1 and wrong.confidence == pytest.approx(0.96)
    assert right.doubt == "" and right.looks_like is None
    assert doubt_in_words(wrong, probabilities[0], ["a", "b", "c"]) == (
        "Not sure: it looks most like the training pictures of b, not those of a.")
    # Without the features (or from a file written before the vote) there is no vote.
    assert judge(probabilities, neighbours.distances(features), neighbours)[0].doubt == ""


def test_the_vote_is_the_share_of_the_nearest_training_pictures_weighted_by_closeness():
    rng = np.random.default_rng(4)
    training, labels, points = rng.normal(size=(60, 6)), np.arange(60) % 3, rng.normal(size=(5, 6))
    neighbours = Neighbours(Neighbours.fit(training, training[:10], np.tile([0.5, 0.3, 0.2], (10, 1))).kept,
                            far_above=1.0, labels=labels)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    similar = unit(points) @ neighbours.kept.astype(np.float32).T
    against = neighbours.vote(points, [0, 1, 2, 0, 1])
    for i, (row, answer) in enumerate(zip(similar, [0, 1, 2, 0, 1])):
        nearest = np.argsort(-row)[:VOTERS]
        weights = np.exp(row[nearest] / VOTE_WARMTH)
        assert against[i] == pytest.approx(weights[labels[nearest] != answer].sum() / weights.sum(), abs=1e-5)


def test_far_spread_and_the_vote_together_flag_at_most_flag_share_of_the_held_out_pictures():
    neighbours, held_out, probabilities, wrong = voting_neighbours()
    judgements = judge(probabilities, neighbours.distances(held_out), neighbours, held_out)
    flagged = np.array([bool(j.doubt) for j in judgements])
    assert flagged.mean() <= FLAG_SHARE / 100
    # The room left by far and spread goes to the wrong answers: the vote catches most of what it flags.
    unlike = np.array([j.doubt == "unlike" for j in judgements])
    assert unlike.sum() >= 5 and wrong[unlike].mean() > 0.8


def test_the_vote_is_saved_and_a_file_from_before_the_vote_still_loads(tmp_path):
    neighbours, held_out, probabilities, _ = voting_neighbours()
    neighbours.save(tmp_path)
    loaded = Familiarity.load(tmp_path)
    assert np.array_equal(loaded.labels, neighbours.labels) and loaded.vote_above == neighbours.vote_above
    # A file written before the vote: the same arrays less the labels and the line.
    np.savez(tmp_path / "familiarity.npz", kept=neighbours.kept, far_above=np.float32(neighbours.far_above),
             k=np.int32(neighbours.k), spread_below=np.float32(neighbours.spread_below))
    old = Familiarity.load(tmp_path)
    assert isinstance(old, Neighbours) and old.labels is None and old.vote_above == np.inf
    judgements = judge(probabilities, old.distances(held_out), old, held_out)
    assert {j.doubt for j in judgements} <= {"", "far", "spread"}


def test_every_training_picture_votes_when_given_and_travels_with_the_model(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    every, labels, points = rng.normal(size=(120, 6)), np.arange(120) % 3, rng.normal(size=(5, 6))
    held_out, answers = rng.normal(size=(40, 6)), [0, 1, 2, 0, 1]
    probabilities = rng.dirichlet([1, 1, 1], 40)
    # The first 30 are kept for "far"; all 120 vote.
    neighbours = Neighbours.fit(every[:30], held_out, probabilities, labels=labels[:30], voters=every,
                                voter_labels=labels)
    assert neighbours.kept.shape == (30, 6) and neighbours.voters.shape == (120, 6)
    assert neighbours.voters.dtype == np.float16 and np.array_equal(neighbours.labels, labels)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    similar = unit(points) @ unit(every).T
    against = neighbours.vote(points, answers)
    for i, (row, answer) in enumerate(zip(similar, answers)):
        nearest = np.argsort(-row)[:VOTERS]
        weights = np.exp(row[nearest] / VOTE_WARMTH)
        assert against[i] == pytest.approx(weights[labels[nearest] != answer].sum() / weights.sum(), abs=2e-3)
    # Far still asks the kept pictures alone.
    assert neighbours.distances(points) == pytest.approx(
        1 - np.sort(unit(points) @ unit(every[:30]).T, axis=1)[:, -NEIGHBOURS], abs=2e-3)
    neighbours.save(tmp_path)
    loaded = Familiarity.load(tmp_path)
    assert np.array_equal(loaded.voters, neighbours.voters) and np.array_equal(loaded.labels, labels)
    assert loaded.vote(points, answers) == pytest.approx(against)
    # At most MAX_VOTERS of them, with their own classes.
    monkeypatch.setattr("mlcore.familiarity.MAX_VOTERS", 50)
    fewer = Neighbours.fit(every[:30], held_out, probabilities, labels=labels[:30], voters=every, voter_labels=labels)
    assert fewer.voters.shape == (50, 6) and len(fewer.labels) == 50
    kept_rows = [int(np.argmin(np.abs(unit(every).astype(np.float16) - row).sum(axis=1))) for row in fewer.voters]
    assert np.array_equal(fewer.labels, labels[kept_rows])


def test_every_doubt_has_its_words_on_a_stored_picture_and_a_code_in_the_api():
    from api_app.serializers import DOUBT_CODES
    from predict_app.models import ClassifiedImage

    for doubt in ("far", "spread", "unlike"):
        assert doubt in DOUBT_CODES and ClassifiedImage(doubt=doubt).doubt_in_words
    assert ClassifiedImage(doubt="unlike").doubt_in_words != ClassifiedImage(doubt="far").doubt_in_words
