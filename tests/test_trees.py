"""Boosted trees on what a run's network sees (mlcore/trees.py, training_app/boosting.py): fitted and
stopped on the validation pictures, kept in XGBoost's own format, shown on the run page beside the
network's figure, and, when the owner chooses them, answering on the classify page and in the API."""
import numpy as np
import pytest
from django.urls import reverse

from mlcore import trees
from tests.conftest import new_run
from training_app.models import TreesTrial


def _task(count, rng, noise=0.0):
    """Three classes decided by two of eight numbers; `noise`: the share of labels drawn at random."""
    x = rng.normal(size=(count, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    flip = rng.random(count) < noise
    y[flip] = rng.integers(0, 3, flip.sum())
    return x, y


def test_trees_learn_a_simple_task_far_better_than_chance():
    rng = np.random.default_rng(0)
    (x, y), (xv, yv), (xt, yt) = _task(600, rng), _task(200, rng), _task(300, rng)
    fitted = trees.fit(x, y, xv, yv, 3)
    assert fitted.accuracy(xt, yt) > 0.9  # chance is at most the largest class, about 0.5 here
    probabilities = fitted.probabilities(xt)
    assert probabilities.shape == (300, 3) and np.allclose(probabilities.sum(1), 1, atol=1e-5)


def test_early_stopping_keeps_the_best_round_well_before_the_cap():
    rng = np.random.default_rng(1)
    (x, y), (xv, yv) = _task(300, rng, noise=1.0), _task(200, rng, noise=1.0)  # labels with nothing to learn
    fitted = trees.fit(x, y, xv, yv, 3, max_rounds=300, patience=5)
    assert fitted.rounds < 100 and fitted.booster.num_boosted_rounds() == fitted.rounds


def test_saved_trees_load_and_answer_the_same_and_are_no_pickle(tmp_path):
    rng = np.random.default_rng(2)
    (x, y), (xv, yv) = _task(300, rng), _task(100, rng)
    fitted = trees.fit(x, y, xv, yv, 3)
    path = fitted.save(tmp_path / trees.FILE_NAME)
    assert path.read_bytes()[:1] == b"{"  # UBJSON: an object, not a pickle (which starts with \x80)
    loaded = trees.load(path)
    assert (loaded.num_classes, loaded.rounds) == (3, fitted.rounds)
    assert np.array_equal(loaded.probabilities(xv), fitted.probabilities(xv))


def test_a_class_missing_from_the_training_pictures_keeps_the_networks_numbering():
    rng = np.random.default_rng(3)
    x, y = _task(200, rng)
    keep = y != 1
    fitted = trees.fit(x[keep], y[keep], x[:0], y[:0], 4)  # no validation pictures: some training ones stop it
    assert fitted.probabilities(x[:5]).shape == (5, 4)


def test_many_training_pictures_are_sampled_class_by_class_so_the_trees_take_minutes():
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    kept = trees.some_of_each_class(labels, 100, seed=0)
    assert len(kept) == 100 and np.all(np.diff(kept) > 0)  # distinct places, in order
    assert list(np.bincount(labels[kept])) == [90, 9, 1]  # each class keeps its share
    assert len(trees.some_of_each_class(labels[:50], 100)) == 50  # fewer than the most: all of them

    rng = np.random.default_rng(5)
    (x, y), (xv, yv), (xt, yt) = _task(3000, rng), _task(200, rng), _task(300, rng)
    fitted = trees.fit(x, y, xv, yv, 3, at_most=600)
    assert fitted.learned_from == 600 and fitted.accuracy(xt, yt) > 0.9


def test_small_pixels_are_the_baselines_few_numbers():
    pictures = np.random.default_rng(4).integers(0, 256, (3, 40, 30, 3), dtype=np.uint8)
    small = trees.small_pixels(pictures)
    assert small.shape == (3, trees.PIXELS_SIDE * trees.PIXELS_SIDE * 3) and 0 <= small.min() and small.max() <= 1
    tiny = np.full((2, 8, 8, 1), 255, np.uint8)  # smaller already: kept as they are
    assert trees.small_pixels(tiny).shape == (2, 64) and trees.small_pixels(tiny).max() == 1


# ---- The run page


def _ready_trial(run, trees_val, network_val, **fields):
    values = {"status": "ready", "model_file": run.model_file, "file": f"models/{run.id}/trees/t.ubj",
              "test_count": 40, "val_count": 30, "trees_test": 0.931, "network_test": 0.924, "pixels_test": 0.5,
              "trees_val": trees_val, "network_val": network_val, "rounds": 12, "seconds": 1.0} | fields
    return TreesTrial.objects.create(run=run, **values)


@pytest.fixture
def finished(shapes):
    return new_run(shapes, status="succeeded", model_file="models/x/attempt-1/model.keras",
                   class_names=["horizontal", "spot", "vertical"], test_accuracy=0.924, test_count=40)


@pytest.mark.django_db
def test_a_finished_run_offers_the_trees_and_asking_sends_one_worker(client, finished, monkeypatch):
    from training_app import starting

    sent = []
    monkeypatch.setattr(starting.fit_trees, "delay", sent.append)
    client.force_login(finished.owner)
    page = client.get(reverse("training:detail", args=[finished.pk])).content.decode()
    assert "Try boosted trees on its features" in page and 'id="trees-choose"' not in page

    answer = client.post(reverse("training:trees_make", args=[finished.pk]))
    assert answer.status_code == 302 and answer["Location"].endswith("#trees")
    client.post(reverse("training:trees_make", args=[finished.pk]))  # again while it waits: no second worker
    trial = TreesTrial.objects.get(run=finished)
    assert sent == [trial.id] and trial.status == "queued"
    page = client.get(reverse("training:detail", args=[finished.pk])).content.decode()
    assert 'id="trees-bar"' in page and "Waiting for a worker" in page
    state = client.get(reverse("training:trees_state", args=[finished.pk])).json()
    assert state["busy"] and state["percent"] == 0


@pytest.mark.django_db
def test_a_run_without_a_model_has_no_trees_to_try(client, shapes):
    run = new_run(shapes)  # queued
    client.force_login(run.owner)
    assert client.post(reverse("training:trees_make", args=[run.pk])).status_code == 404
    assert "Try boosted trees" not in client.get(reverse("training:detail", args=[run.pk])).content.decode()


@pytest.mark.django_db
def test_someone_elses_run_is_a_404(client, finished, other_user):
    client.force_login(other_user)
    assert client.post(reverse("training:trees_make", args=[finished.pk])).status_code == 404
    assert client.post(reverse("training:trees_choose", args=[finished.pk]), {"use": "1"}).status_code == 404


@pytest.mark.django_db
def test_better_trees_are_shown_beside_the_network_and_can_be_chosen_and_unchosen(client, finished):
    _ready_trial(finished, trees_val=0.95, network_val=0.9)
    client.force_login(finished.owner)
    page = client.get(reverse("training:detail", args=[finished.pk])).content.decode()
    assert ("Boosted trees on what the network sees: 93.1 % on the 40 test pictures, the network alone: 92.4 %."
            in page)
    assert "on the raw pixels" in page and "50.0 %" in page
    assert "the trees 95.0 %, the network 90.0 %" in page and 'id="trees-choose"' in page
    assert 'id="trees-beside"' in page  # beside the network's own test figure, too

    client.post(reverse("training:trees_choose", args=[finished.pk]), {"use": "1"})
    assert TreesTrial.objects.get(run=finished).chosen
    page = client.get(reverse("training:detail", args=[finished.pk])).content.decode()
    assert 'id="trees-chosen"' in page and "answer from the network alone" in page
    assert 'id="exports-network-alone"' in page  # said where the bundle is offered, too

    client.post(reverse("training:trees_choose", args=[finished.pk]), {"use": "0"})
    assert not TreesTrial.objects.get(run=finished).chosen


@pytest.mark.django_db
def test_trees_no_better_on_validation_cannot_be_chosen_even_if_better_on_test(client, finished):
    _ready_trial(finished, trees_val=0.9, network_val=0.9, trees_test=0.99)
    client.force_login(finished.owner)
    page = client.get(reverse("training:detail", args=[finished.pk])).content.decode()
    assert "The network alone did as well or better on the validation pictures" in page
    assert 'id="trees-choose"' not in page
    answer = client.post(reverse("training:trees_choose", args=[finished.pk]), {"use": "1"}, follow=True)
    assert answer.status_code == 200 and "did better than the network on the validation pictures" in answer.content.decode()
    assert not TreesTrial.objects.get(run=finished).chosen


@pytest.mark.django_db
def test_trees_of_an_earlier_model_of_the_run_are_not_offered(client, finished):
    _ready_trial(finished, trees_val=0.95, network_val=0.9, model_file="models/x/attempt-0/model.keras", chosen=True)
    client.force_login(finished.owner)
    page = client.get(reverse("training:detail", args=[finished.pk])).content.decode()
    assert "fitted on an earlier model of this run" in page and 'id="trees-choose"' not in page
    assert not TreesTrial.objects.get(run=finished).answers


def test_the_bundle_says_it_answers_from_the_network_alone():
    from mlcore.formats import BUNDLE_FILES

    readme = (BUNDLE_FILES / "README.md").read_text()
    assert "It answers from the network alone" in readme
    app = (BUNDLE_FILES / "app.py").read_text()
    assert "xgboost" not in app and "trees" not in app  # and it is so: the bundle loads model.onnx only


# ---- Fitted by the task's code on a trained run; answering through the trees once chosen


@pytest.mark.django_db
def test_the_job_measures_trees_beside_the_network_and_the_predictor_answers_through_them(shapes_model, client):
    from predict_app.services import predictor_for
    from training_app.tasks import fit_trees

    run = shapes_model
    trial, _ = TreesTrial.request(run)
    fit_trees(trial.id)  # what the worker runs, in this process
    trial.refresh_from_db()
    assert trial.status == "ready", trial.error
    assert trial.progress == 1.0 and trial.rounds >= 1 and trial.model_file == run.model_file
    assert trial.test_count == run.test_count and trial.val_count == run.val_count
    for figure in (trial.trees_test, trial.network_test, trial.pixels_test):
        assert figure is None or 0 <= figure <= 1
    if run.test_count:
        assert trial.network_test == pytest.approx(run.test_accuracy, abs=1e-6)  # the run's own figure

    network = predictor_for(run)
    assert network.trees is None  # not chosen: the network answers
    TreesTrial.objects.filter(id=trial.id).update(chosen=True)
    chosen = predictor_for(run)
    assert chosen is not network and chosen.trees is not None

    pixels = np.random.default_rng(5).integers(0, 256, (4, run.image_size, run.image_size, run.channels), np.uint8)
    probabilities, judgements = chosen.judge_arrays(list(pixels))
    expected = chosen.trees.probabilities(np.asarray(chosen._call(pixels)[0]))
    assert np.allclose(probabilities, expected, atol=1e-6) and len(judgements) == 4
    assert [judgement.best for judgement in judgements] == list(expected.argmax(1))

    # The API and the classify page answer through them too.
    from django.core.files.uploadedfile import SimpleUploadedFile

    from api_app.models import ApiToken
    from mlcore.images import decode_image
    from tests.images import image_bytes

    picture = image_bytes("spot", 16)
    expected = chosen.predict_image(decode_image(picture).image)
    key = ApiToken.objects.create_for(run.owner, "tests")[1]
    answer = client.post(reverse("api:classify", args=[run.id]), {"images": [SimpleUploadedFile("a.png", picture)]},
                         HTTP_AUTHORIZATION=f"Bearer {key}").json()["results"][0]
    served = [answer["probabilities"][name] for name in run.class_names]
    assert np.allclose(served, expected, atol=1e-5) and "not_sure" in answer
    client.force_login(run.owner)
    page = client.post(reverse("predict:index"), {"run": run.pk, "images": [SimpleUploadedFile("a.png", picture)]})
    assert page.status_code == 200 and 'id="answered-by-trees"' in page.content.decode()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_default_worker_fits_the_trees_from_the_run_page(celery_workers, shapes_model, client):
    from tests.conftest import wait_for

    run = shapes_model
    client.force_login(run.owner)
    assert client.post(reverse("training:trees_make", args=[run.pk]), HTTP_ACCEPT="application/json").json()["busy"]
    trial = wait_for(lambda: TreesTrial.objects.filter(run=run, status__in=["ready", "failed"]).first(), timeout=300,
                     interval=1, what="the trees to be fitted by a worker")
    assert trial.status == "ready", trial.error
    state = client.get(reverse("training:trees_state", args=[run.pk])).json()
    assert not state["busy"] and state["percent"] == 100
    if run.test_count:
        assert state["summary"].startswith("Boosted trees on what the network sees:")


@pytest.mark.django_db
def test_the_page_says_when_the_trees_learned_from_a_sample_of_the_training_pictures(client, finished):
    finished.train_count = 54_000
    finished.save(update_fields=["train_count"])
    _ready_trial(finished, trees_val=0.9, network_val=0.95, learned_from=10_000)
    client.force_login(finished.owner)
    page = client.get(reverse("training:detail", args=[finished.pk])).content.decode()
    assert "The trees learned from 10,000 of the 54,000 training pictures" in page

    TreesTrial.objects.filter(run=finished).update(learned_from=54_000)  # all of them: nothing to say
    page = client.get(reverse("training:detail", args=[finished.pk])).content.decode()
    assert "The trees learned from" not in page
