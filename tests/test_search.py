""""Try several settings": which runs a search makes and how it shares its time (mlcore/search.py), and its
pages: the runs start as ordinary queued runs, the leaderboard ranks them, stopping cancels them, and the
best one can be trained longer."""
import json
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.urls import reverse
from django.utils import timezone

from mlcore import search
from mlcore.builder import normalise_spec
from mlcore.options import normalise_augmentation
from mlcore.presets import preset_spec
from tests.conftest import new_run
from training_app.models import EpochMetric, Search, TrainingRun
from training_app.starting import start_all_waiting, start_waiting

VALUES = {"preset": ["small_cnn", "dense"], "image_size": [16, 32], "learning_rate": [0.001, 0.0003],
          "batch_size": [8], "augmentation": [False, True]}


# ---- mlcore/search.py

def test_a_grid_is_every_combination_once_in_a_fixed_order():
    values = VALUES | {"batch_size": [8, 8], "image_size": [16]}  # a value ticked twice counts once
    runs = search.choose_runs(values, "grid")
    assert len({json.dumps(run, sort_keys=True) for run in runs}) == len(runs) == 8
    assert runs[0] == {"preset": "small_cnn", "image_size": 16, "learning_rate": 0.001, "batch_size": 8,
                       "augmentation": False}
    assert runs[1]["augmentation"] is True  # the last setting changes fastest
    assert runs[-1] == {"preset": "dense", "image_size": 16, "learning_rate": 0.0003, "batch_size": 8,
                        "augmentation": True}


def test_a_grid_over_the_cap_is_refused_in_words():
    values = VALUES | {"batch_size": [8, 16]}  # 32 combinations
    with pytest.raises(search.SearchError, match="make 32 combinations; a search tries at most 12"):
        search.choose_runs(values, "grid")


def test_random_picks_are_different_combinations_and_the_seed_repeats_them():
    values = VALUES | {"batch_size": [8, 16]}
    first = search.choose_runs(values, "random", picks=5, seed=7)
    assert len(first) == 5 and len({json.dumps(run, sort_keys=True) for run in first}) == 5
    assert all(run in search.combinations(values) for run in first)
    assert search.choose_runs(values, "random", picks=5, seed=7) == first
    assert search.choose_runs(values, "random", picks=5, seed=8) != first
    # Asking for more picks than there are combinations gives each combination once.
    small = {name: value[:1] for name, value in VALUES.items()} | {"augmentation": [False, True]}
    assert len(search.choose_runs(small, "random", picks=10, seed=1)) == 2


@pytest.mark.parametrize("values, mode, picks, words", [
    (VALUES | {"preset": []}, "grid", 0, "Choose at least one value for: network."),
    (VALUES | {"image_size": [], "batch_size": []}, "grid", 0, "input size, batch size"),
    (VALUES, "random", 0, "Pick between 1 and 12"),
    (VALUES, "random", 13, "Pick between 1 and 12"),
    (VALUES, "sideways", 3, "grid or random"),
])
def test_choices_a_search_cannot_be_made_from_say_why(values, mode, picks, words):
    with pytest.raises(search.SearchError, match=words):
        search.choose_runs(values, mode, picks=picks, seed=1)


def test_the_time_is_split_evenly_and_too_little_says_how_many_fit():
    split = search.split_budget(1800, 4)
    assert split.enough and split.each_s == 450
    assert split.in_words().startswith("4 runs, about 7 min each (30 min in all")
    short = search.split_budget(900, 12)
    assert not short.enough and short.fits == 7
    assert short.in_words() == ("15 min is too little for 12 runs: each needs at least 2 min, so 7 runs fit. "
                                "Choose fewer values or picks, or more time.")
    assert search.split_budget(900, 7).enough and search.split_budget(900, 7).each_s == 128


def test_training_longer_gets_at_least_twice_the_time_the_form_offers():
    assert search.longer_budget(450) == 900
    assert search.longer_budget(128) == 300
    assert search.longer_budget(1800) == 3600
    assert search.longer_budget(2400) == 3600  # the longest offered, short of twice
    assert search.longer_budget(7200) == 0  # nothing offered is longer: no limit


def test_runs_beyond_the_limit_of_runs_at_once_are_said_to_wait_their_turn():
    assert search.turns_in_words(8, None, 0) == "" and search.turns_in_words(3, 3, 3) == ""
    assert search.turns_in_words(8, 3, 3) == ("The site trains at most 3 of your runs at once: 3 start now, and the "
                                              "other 5 wait their turn, starting one by one as runs end.")
    assert "1 starts now, and the other 1 waits its turn" in search.turns_in_words(2, 1, 3)
    assert search.waiting_in_words(3, 5, 3) == ("3 training or waiting for a worker, 5 waiting their turn: the site "
                                                "trains at most 3 of your runs at once")
    assert search.waiting_in_words(0, 1, 3) == "1 waiting its turn: the site trains at most 3 of your runs at once"
    assert search.waiting_in_words(2, 0, 3) == "2 training or waiting for a worker"


def test_the_leaderboard_order_is_validation_then_test_then_age():
    rows = [(0.8, None, 5), (0.9, 0.7, 3), (0.9, 0.8, 4), (None, None, 1), (0.9, None, 2)]
    ranked = sorted(rows, key=lambda row: search.rank_key(*row))
    assert [row[2] for row in ranked] == [4, 3, 2, 5, 1]


def test_random_changes_on_are_the_suggested_ones_else_mild_ones():
    suggested = {"flip": "horizontal", "rotation": 15}
    assert search.augmentation_for(True, suggested) == normalise_augmentation(suggested)
    assert search.augmentation_for(True, {}) == normalise_augmentation(search.MILD_CHANGES)
    assert not search.changes_on(search.augmentation_for(False, suggested))
    assert search.changes_on(search.augmentation_for(True, None))


# ---- the pages

pytestmark_db = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _room_for_a_search(settings):
    """The tests' limit of runs at once (3) would refuse most searches; one test checks that limit."""
    settings.QUOTA_QUEUED_RUNS = 20


def new_search_page(client, dataset):
    return client.get(reverse("training:search_new", args=[dataset.pk]))


def search_data(**changes):
    data = {"preset": ["small_cnn", "dense"], "image_size": ["16"], "learning_rate": ["0.001", "0.01"],
            "batch_size": ["8"], "augmentation": ["off", "on"], "mode": "grid", "picks": "4", "seed": "1",
            "total_budget_s": "1800", "name": ""}
    return data | changes


@pytestmark_db
def test_the_page_ticks_the_suggested_values_and_previews_the_runs(alice, shapes):
    response = new_search_page(alice, shapes)
    assert response.status_code == 200
    form = response.context["form"]
    suggested = form.suggested
    assert form["preset"].value() == [suggested["preset"]]
    assert form["image_size"].value() == [str(suggested["image_size"])]
    assert form["augmentation"].value() == ["off", "on"]
    runs = 2 * len(form["learning_rate"].value())
    page = response.content.decode()
    assert f"{runs} runs, about {1800 // runs // 60} min each" in page
    assert 'id="search-preview"' in page and "Start the search" in page


@pytestmark_db
def test_the_preview_follows_the_choices_and_says_when_the_time_is_too_short(alice, shapes):
    url = reverse("training:search_preview", args=[shapes.pk])
    answer = alice.get(url, search_data()).json()
    assert answer == {"ok": True, "text": "8 runs, about 3 min each (30 min in all on one training worker; "
                                          "several workers train them side by side and finish sooner)."}
    answer = alice.get(url, search_data(total_budget_s="900")).json()
    assert not answer["ok"] and "15 min is too little for 8 runs" in answer["text"] and "7 runs fit" in answer["text"]


@pytestmark_db
def test_a_grid_starts_every_combination_as_an_ordinary_queued_run(alice, shapes, user,
                                                                   django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as sent:
        response = alice.post(reverse("training:search_new", args=[shapes.pk]), search_data(name="First try"))
    found = Search.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("training:search", args=[found.pk])
    assert (found.owner, found.dataset, found.name, found.mode, found.total_budget_s) == (user, shapes, "First try",
                                                                                         "grid", 1800)
    assert found.values["preset"] == ["small_cnn", "dense"] and found.values["augmentation"] == [False, True]
    runs = list(TrainingRun.objects.order_by("id"))
    assert len(runs) == 8 and len(sent) == 8  # each sent to the training workers once committed
    assert found.waiting == []  # the limit (20 here) had room for all
    suggested = new_search_page(alice, shapes).context["form"].suggested
    seen = set()
    for run in runs:
        assert (run.search, run.owner, run.status, run.time_budget_s) == (found, user, "queued", 225)
        assert run.version is not None and run.dataset == shapes
        assert run.model_spec == normalise_spec(preset_spec(run.preset))
        assert run.optimizer == {"small_cnn": "adam", "dense": "adam"}[run.preset]
        assert (run.image_size, run.batch_size, run.epochs) == (16, 8, suggested["epochs"])
        seen.add((run.preset, run.learning_rate, search.changes_on(run.augmentation)))
    assert seen == {(p, lr, on) for p in ("small_cnn", "dense") for lr in (0.001, 0.01) for on in (False, True)}


@pytestmark_db
def test_random_picks_start_the_seeded_combinations(alice, shapes):
    data = search_data(mode="random", picks="3", seed="5")
    alice.post(reverse("training:search_new", args=[shapes.pk]), data)
    runs = TrainingRun.objects.all()
    values = {"preset": ["small_cnn", "dense"], "image_size": [16], "learning_rate": [0.001, 0.01],
              "batch_size": [8], "augmentation": [False, True]}
    expected = search.choose_runs(values, "random", picks=3, seed=5)
    assert sorted((r.preset, r.learning_rate, search.changes_on(r.augmentation)) for r in runs) == \
        sorted((c["preset"], c["learning_rate"], c["augmentation"]) for c in expected)
    assert {run.time_budget_s for run in runs} == {600}


@pytestmark_db
@pytest.mark.parametrize("changes, words", [
    ({"preset": []}, "Choose at least one network."),
    ({"preset": ["resnet9000"]}, "“resnet9000” is not a network this site offers."),
    ({"augmentation": []}, "Choose random changes on, off, or both."),
    ({"learning_rate": ["7"]}, "“7” is not one of the values offered here"),
    ({"total_budget_s": "900", "learning_rate": ["0.001", "0.003", "0.01"]},
     "too little for 12 runs: each needs at least 2 min, so 7 runs fit."),
    ({"batch_size": ["8", "16"]}, "These values make 16 combinations; a search tries at most 12."),
    ({"mode": "random", "picks": ""}, "Say how many combinations to pick at random."),
    ({"mode": "random", "picks": "40"}, "less than or equal to 12"),
])
def test_bad_choices_are_explained_and_start_nothing(alice, shapes, changes, words):
    response = alice.post(reverse("training:search_new", args=[shapes.pk]), search_data(**changes))
    assert response.status_code == 200
    assert words in response.content.decode()
    assert not Search.objects.exists() and not TrainingRun.objects.exists()


@pytestmark_db
def test_a_run_that_cannot_start_stops_the_whole_search_with_its_reason(alice, shapes):
    # EfficientNet-Lite0 needs pictures of at least 32 pixels: the 16-pixel run of it cannot start.
    data = search_data(preset=["small_cnn", "efficientnet_lite0"], image_size=["16", "32"], learning_rate=["0.001"],
                       augmentation=["off"])
    response = alice.post(reverse("training:search_new", args=[shapes.pk]), data)
    page = response.content.decode()
    assert response.status_code == 200 and "cannot start" in page and "16 px" in page
    assert not Search.objects.exists() and not TrainingRun.objects.exists()


@pytestmark_db
def test_the_preview_says_how_many_runs_wait_their_turn_and_refuses_only_without_room(alice, shapes, settings):
    settings.QUOTA_QUEUED_RUNS = 3  # the site's default
    url = reverse("training:search_preview", args=[shapes.pk])
    answer = alice.get(url, search_data()).json()
    assert answer == {"ok": True, "text": "8 runs, about 3 min each (30 min in all on one training worker; several "
                                          "workers train them side by side and finish sooner). The site trains at "
                                          "most 3 of your runs at once: 3 start now, and the other 5 wait their "
                                          "turn, starting one by one as runs end."}
    new_run(shapes)
    new_run(shapes)
    assert "1 starts now, and the other 7 wait their turn" in alice.get(url, search_data()).json()["text"]
    two = alice.get(url, search_data(augmentation=["on"], preset=["small_cnn"])).json()["text"]
    assert two == "2 runs, about 15 min each (30 min in all on one training worker; several workers train them " \
                  "side by side and finish sooner). The site trains at most 3 of your runs at once: 1 starts now, " \
                  "and the other 1 waits its turn, starting one by one as runs end."
    new_run(shapes)
    answer = alice.get(url, search_data()).json()
    assert answer == {"ok": False, "text": "You have reached your limit of 3 runs waiting or training at once; wait "
                                           "for one to finish or stop one."}
    response = alice.post(reverse("training:search_new", args=[shapes.pk]), search_data())
    assert response.status_code == 200 and "You have reached your limit of 3 runs" in response.content.decode()
    assert not Search.objects.exists() and TrainingRun.objects.count() == 3


@pytestmark_db
def test_someone_elses_dataset_and_search_are_not_found(alice, other_user):
    from tests.conftest import ingest_shapes

    theirs = ingest_shapes(other_user)
    assert new_search_page(alice, theirs).status_code == 404
    assert alice.post(reverse("training:search_new", args=[theirs.pk]), search_data()).status_code == 404
    assert alice.get(reverse("training:search_preview", args=[theirs.pk])).status_code == 404
    found = Search.objects.create(owner=other_user, dataset=theirs, name="Theirs", total_budget_s=900)
    queued = new_run(theirs, search=found)
    for name in ("search", "search_status"):
        assert alice.get(reverse(f"training:{name}", args=[found.pk])).status_code == 404
    for name in ("search_stop", "search_longer"):
        assert alice.post(reverse(f"training:{name}", args=[found.pk])).status_code == 404
    queued.refresh_from_db()
    assert queued.status == "queued" and TrainingRun.objects.count() == 1


def ranked_search(dataset):
    """A search with four runs: finished ones with their validation and test accuracies, one training and
    one waiting."""
    found = Search.objects.create(owner=dataset.owner, dataset=dataset, name="Ranked", total_budget_s=1800,
                                  values=VALUES)
    runs = {}
    for name, status, vals, test in [("good", "succeeded", [0.5, 0.9], 0.7), ("better_test", "succeeded", [0.9], 0.8),
                                     ("training", "running", [0.6], None), ("waiting", "queued", [], None)]:
        run = new_run(dataset, search=found, status=status, test_accuracy=test, time_budget_s=450,
                      model_file=f"models/{name}/model.keras" if status == "succeeded" else "",
                      learning_rate=0.003, augmentation=normalise_augmentation({"rotation": 10}))
        for epoch, value in enumerate(vals, start=1):
            EpochMetric.objects.create(run=run, epoch=epoch, val_accuracy=value)
        runs[name] = run
    return found, runs


@pytestmark_db
def test_the_leaderboard_ranks_by_validation_then_test_accuracy(alice, shapes):
    found, runs = ranked_search(shapes)
    other = new_run(shapes)  # not in the search
    board = alice.get(reverse("training:search_status", args=[found.pk])).json()
    assert [row["id"] for row in board["rows"]] == [runs[n].id for n in ("better_test", "good", "training", "waiting")]
    top = board["rows"][0]
    assert (top["place"], top["best_val_text"], top["test_text"]) == (1, "90.0%", "80.0%")
    assert top["settings"] == "Small convolutional network · 16 px · step 0.003 · batch 8 · random changes"
    assert top["budget_text"] == "about 7 min"
    assert board["rows"][3]["best_val_text"] == "–"
    assert board["best"] == {"id": runs["better_test"].id, "text": f"Train run {runs['better_test'].id} longer"}
    assert board["active"] == 2 and board["waiting"] == 0
    assert board["summary"] == "2 of 4 runs finished, 2 training or waiting for a worker."
    assert other.id not in [row["id"] for row in board["rows"]]
    page = alice.get(reverse("training:search", args=[found.pk])).content.decode()
    assert page.index(f"Run {runs['better_test'].id}<") < page.index(f"Run {runs['good'].id}<")
    assert f"Train run {runs['better_test'].id} longer" in page and 'id="stop-search"' in page
    assert reverse("training:search_status", args=[found.pk]) in page


@pytestmark_db
def test_stopping_the_search_cancels_its_waiting_runs_and_asks_training_ones_to_stop(alice, shapes):
    found, runs = ranked_search(shapes)
    other = new_run(shapes)  # a run of the same dataset outside the search keeps waiting
    response = alice.post(reverse("training:search_stop", args=[found.pk]))
    assert response.status_code == 302
    for run in [*runs.values(), other]:
        run.refresh_from_db()
    assert runs["waiting"].status == "cancelled"
    assert runs["training"].status == "running" and runs["training"].cancel_requested
    assert runs["good"].status == "succeeded" and not runs["good"].cancel_requested
    assert other.status == "queued" and not other.cancel_requested
    found.refresh_from_db()
    assert found.stopped_at is not None
    board = alice.get(reverse("training:search_status", args=[found.pk])).json()
    assert "the search was stopped" in board["summary"]


@pytestmark_db
def test_train_the_best_one_longer_starts_an_ordinary_run_with_its_settings(alice, shapes,
                                                                          django_capture_on_commit_callbacks):
    found, runs = ranked_search(shapes)
    best = runs["better_test"]
    TrainingRun.objects.filter(id=best.id).update(epochs=6)  # what fitted its share of the time
    with django_capture_on_commit_callbacks() as sent:
        response = alice.post(reverse("training:search_longer", args=[found.pk]))
    longer = TrainingRun.objects.exclude(id__in=[run.id for run in runs.values()]).get()
    assert response.status_code == 302 and response["Location"] == reverse("training:detail", args=[longer.pk])
    assert len(sent) == 1 and longer.status == "queued" and longer.search == found
    for name in ("preset", "model_spec", "image_size", "channels", "batch_size", "learning_rate", "optimizer",
                 "augmentation", "seed"):
        assert getattr(longer, name) == getattr(best, name), name
    assert longer.time_budget_s == 900  # twice its 450 s, as the training form offers it
    suggested_epochs = new_search_page(alice, shapes).context["form"].suggested["epochs"]
    assert longer.epochs == max(12, suggested_epochs)


@pytestmark_db
def test_train_longer_before_any_run_finished_says_to_wait(alice, shapes):
    found = Search.objects.create(owner=shapes.owner, dataset=shapes, name="Young", total_budget_s=900)
    new_run(shapes, search=found)
    response = alice.post(reverse("training:search_longer", args=[found.pk]), follow=True)
    assert "No run of this search has finished with a model yet" in response.content.decode()
    assert TrainingRun.objects.count() == 1


@pytestmark_db
def test_the_dataset_page_and_the_training_form_lead_to_the_search(alice, shapes):
    url = reverse("training:search_new", args=[shapes.pk])
    assert url in alice.get(reverse("datasets:detail", args=[shapes.pk])).content.decode()
    assert url in alice.get(reverse("training:new", args=[shapes.pk])).content.decode()


@pytestmark_db
def test_a_runs_page_names_its_search_and_its_share_of_the_time(alice, shapes):
    found, runs = ranked_search(shapes)
    page = alice.get(reverse("training:detail", args=[runs["waiting"].pk])).content.decode()
    assert reverse("training:search", args=[found.pk]) in page and "Ranked" in page
    assert "About 7 min: after its first epochs" in page
    alone = alice.get(reverse("training:detail", args=[new_run(shapes).pk])).content.decode()
    assert 'id="run-search"' not in alone


@pytestmark_db
def test_the_leaderboard_has_one_set_of_queries_however_many_runs(alice, shapes, django_assert_num_queries):
    found, _ = ranked_search(shapes)
    url = reverse("training:search_status", args=[found.pk])
    # The session, the person, the search, its runs with their best validation accuracy.
    with django_assert_num_queries(4):
        assert len(alice.get(url).json()["rows"]) == 4
    for _ in range(5):
        new_run(shapes, search=found)
    with django_assert_num_queries(4):
        assert len(alice.get(url).json()["rows"]) == 9


@pytestmark_db
def test_the_values_ticked_at_first_are_four_runs_whatever_the_limit(alice, shapes, settings):
    settings.QUOTA_QUEUED_RUNS = 3  # the site's default: the fourth run waits its turn
    response = new_search_page(alice, shapes)
    form = response.context["form"]
    assert len(form["learning_rate"].value()) == 2 and form["augmentation"].value() == ["off", "on"]
    page = response.content.decode()
    assert "4 runs, about 7 min each" in page and "3 start now, and the other 1 waits its turn" in page


# ---- more runs than the limit of runs at once: the rest wait their turn in the search

def runs_by_state(found):
    """(queued, running, ended) runs of the search, and how many wait their turn."""
    found.refresh_from_db()
    runs = list(found.runs.all())
    return (sum(r.status == "queued" for r in runs), sum(r.status == "running" for r in runs),
            sum(r.is_final for r in runs), len(found.waiting))


@pytest.fixture
def grid_of_8(alice, shapes, settings, django_capture_on_commit_callbacks):
    """A grid of 8 runs started with the site's default limit of 3 runs at once; the runs sent to the
    workers."""
    settings.QUOTA_QUEUED_RUNS = 3
    with django_capture_on_commit_callbacks() as sent:
        response = alice.post(reverse("training:search_new", args=[shapes.pk]), search_data(name="Eight"))
    found = Search.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("training:search", args=[found.pk])
    return found, sent


def grid_order(runs):
    return [(run.preset, run.learning_rate, search.changes_on(run.augmentation)) for run in runs]


GRID = [(p, lr, on) for p in ("small_cnn", "dense") for lr in (0.001, 0.01) for on in (False, True)]


@pytestmark_db
def test_a_grid_of_8_over_a_limit_of_3_starts_3_and_5_wait_their_turn(alice, grid_of_8):
    found, sent = grid_of_8
    assert runs_by_state(found) == (3, 0, 0, 5) and len(sent) == 3  # only the runs started go to the workers
    assert grid_order(found.runs.order_by("id")) == GRID[:3]  # first in the grid, first to start
    assert {run.time_budget_s for run in found.runs.all()} == {225}  # 30 min shared by all 8, not by 3
    assert [int(data["time_budget_s"]) for data in found.waiting] == [225] * 5
    board = alice.get(reverse("training:search_status", args=[found.pk])).json()
    assert (board["active"], board["waiting"], len(board["rows"])) == (3, 5, 3)
    assert board["summary"] == ("0 of 8 runs finished, 3 training or waiting for a worker, 5 waiting their turn: "
                                "the site trains at most 3 of your runs at once.")
    page = alice.get(reverse("training:search", args=[found.pk])).content.decode()
    assert "5 waiting their turn: the site trains at most 3 of your runs at once" in page
    assert "about 3 min a run" in page and 'id="stop-form" hidden' not in page


@pytest.fixture
def sent_to_workers(monkeypatch):
    """The ids of the runs sent to the training workers once committed, in order; none is really sent."""
    from training_app.tasks import train

    sent = []
    monkeypatch.setattr(train, "delay", sent.append)
    return sent


def end_one(run, how):
    """End `run` as a worker, a person or the reaper would; the commit hooks run (a test's transaction never
    commits)."""
    if how == "deleted":
        assert TrainingRun.objects.delete_unless_running(run.id)
        return
    if how == "cancelled while waiting":
        run.request_cancel()
        return
    if how == "given up by the reaper":
        TrainingRun.objects.filter(id=run.id).update(status="running", attempts=3,
                                                     heartbeat_at=timezone.now() - timedelta(hours=1))
        assert TrainingRun.objects.reap_stale() == []
        return
    claimed = TrainingRun.objects.claim(run.id)
    if how == "finished":
        claimed.finish(TrainingRun.Status.SUCCEEDED, test_accuracy=0.9)
    else:
        claimed.fail("Out of memory")


@pytestmark_db
@pytest.mark.parametrize("how", ["finished", "failed", "cancelled while waiting", "given up by the reaper",
                                 "deleted"])
def test_when_a_run_ends_the_next_one_waiting_its_turn_starts(grid_of_8, how, django_capture_on_commit_callbacks,
                                                             sent_to_workers):
    found, _ = grid_of_8
    first = found.runs.order_by("id").first()
    with django_capture_on_commit_callbacks(execute=True):
        end_one(first, how)
    started = found.runs.order_by("-id").first()
    assert started.id > first.id and started.status == "queued" and sent_to_workers == [started.id]
    assert grid_order([started]) == [GRID[3]] and started.time_budget_s == 225
    assert started.version == found.runs.order_by("id").last().version  # the same pictures as the others
    active = found.runs.filter(status__in=TrainingRun.ACTIVE).count()
    assert active == 3 and len(Search.objects.get().waiting) == 4


@pytestmark_db
def test_the_limit_is_never_passed_even_when_called_twice(grid_of_8, django_capture_on_commit_callbacks):
    found, _ = grid_of_8
    assert start_waiting(found.id) == 0 and start_waiting(found.id) == 0  # no room: nothing starts
    assert runs_by_state(found) == (3, 0, 0, 5)
    # Two runs end without a word (their worker died before it could start the next): two places free.
    ended = list(found.runs.order_by("id")[:2])
    TrainingRun.objects.filter(id__in=[run.id for run in ended]).update(status="succeeded")
    with django_capture_on_commit_callbacks() as sent:
        assert start_waiting(found.id) == 2
        assert start_waiting(found.id) == 0
    assert runs_by_state(found) == (3, 0, 2, 3) and len(sent) == 2
    assert grid_order(found.runs.order_by("id")) == GRID[:5]  # in the grid's order, none twice
    # Another run of the same person takes the place a run of the search leaves: still 3 at once.
    TrainingRun.objects.filter(id=found.runs.order_by("id")[2].id).update(status="failed")
    new_run(found.dataset)
    assert start_waiting(found.id) == 0 and TrainingRun.objects.filter(status="queued").count() == 3


@pytest.mark.django_db(transaction=True)
def test_two_callers_at_once_start_each_run_once_and_never_pass_the_limit(alice, shapes, settings, sent_to_workers):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite lets one writer in at a time: the row locks tested here are PostgreSQL's")
    settings.QUOTA_QUEUED_RUNS = 3
    alice.post(reverse("training:search_new", args=[shapes.pk]), search_data())
    found = Search.objects.get()
    TrainingRun.objects.filter(id__in=[run.id for run in found.runs.order_by("id")[:2]]).update(status="succeeded")
    together, started = threading.Barrier(2), []

    def call():
        try:
            together.wait()
            started.append(start_waiting(found.id))
        finally:
            connections.close_all()

    callers = [threading.Thread(target=call) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert sorted(started) == [0, 2]  # the second waited for the first's lock, then found no room
    assert runs_by_state(found) == (3, 0, 2, 3)
    assert grid_order(found.runs.order_by("id")) == GRID[:5] and len(sent_to_workers) == 5


@pytestmark_db
def test_the_page_and_the_hourly_clean_up_start_runs_a_lost_end_left_waiting(alice, grid_of_8, settings):
    found, _ = grid_of_8
    TrainingRun.objects.filter(id=found.runs.order_by("id").first().id).update(status="succeeded")
    board = alice.get(reverse("training:search_status", args=[found.pk])).json()
    assert (board["active"], board["waiting"], len(board["rows"])) == (3, 4, 4)
    assert runs_by_state(found) == (3, 0, 1, 4)
    TrainingRun.objects.filter(id=found.runs.order_by("id")[1].id).update(status="failed")
    assert start_all_waiting() == 1 and runs_by_state(found) == (3, 0, 2, 3)
    settings.QUOTA_QUEUED_RUNS = 0  # no limit: every run left starts
    assert start_all_waiting() == 3 and runs_by_state(found) == (6, 0, 2, 0)
    assert start_all_waiting() == 0


@pytestmark_db
def test_stopping_the_search_drops_the_runs_waiting_their_turn(alice, grid_of_8, django_capture_on_commit_callbacks,
                                                               sent_to_workers):
    found, _ = grid_of_8
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(reverse("training:search_stop", args=[found.pk]), follow=True)
    assert "the runs waiting their turn will not start" in response.content.decode()
    assert runs_by_state(found) == (0, 0, 3, 0) and found.stopped_at is not None
    assert set(found.runs.values_list("status", flat=True)) == {"cancelled"}
    assert sent_to_workers == []  # the runs cancelled made room, but none waits its turn any more
    assert start_waiting(found.id) == 0 and found.runs.count() == 3
    board = alice.get(reverse("training:search_status", args=[found.pk])).json()
    assert board["summary"] == "0 of 3 runs finished, the search was stopped."


@pytestmark_db
def test_a_waiting_run_the_site_can_no_longer_start_is_dropped_and_the_next_starts(grid_of_8):
    found, _ = grid_of_8
    found.waiting[0]["batch_size"] = "0"  # as if a setting's range had changed since
    found.save()
    TrainingRun.objects.filter(id=found.runs.order_by("id").first().id).update(status="succeeded")
    assert start_waiting(found.id) == 1
    assert runs_by_state(found) == (3, 0, 1, 3)
    assert grid_order([found.runs.order_by("-id").first()]) == [GRID[4]]


@pytestmark_db
def test_a_run_whose_turn_comes_while_pictures_are_added_waits_instead_of_being_dropped(grid_of_8):
    from datasets_app.models import Upload

    found, _ = grid_of_8
    upload = Upload.objects.create(dataset=found.dataset, original_name="more.zip", status=Upload.Status.RUNNING)
    TrainingRun.objects.filter(id=found.runs.order_by("id").first().id).update(status="succeeded")
    # The training form refuses a busy dataset; the runs waiting learn from the search's frozen pictures,
    # but they are checked the same way, so they wait for the upload rather than fail the check and go.
    assert start_waiting(found.id) == 0 and runs_by_state(found) == (2, 0, 1, 5)
    Upload.objects.filter(id=upload.id).update(status=Upload.Status.DONE)
    assert start_waiting(found.id) == 1 and runs_by_state(found) == (3, 0, 1, 4)
    assert grid_order([found.runs.order_by("-id").first()]) == [GRID[3]]


@pytestmark_db
def test_train_the_best_one_longer_while_runs_wait_their_turn(alice, grid_of_8):
    found, _ = grid_of_8
    best = found.runs.order_by("id").first()
    TrainingRun.objects.filter(id=best.id).update(status="succeeded", model_file="models/x/model.keras")
    EpochMetric.objects.create(run=best, epoch=1, val_accuracy=0.8)
    response = alice.post(reverse("training:search_longer", args=[found.pk]))
    longer = found.runs.order_by("-id").first()
    assert response.status_code == 302 and response["Location"] == reverse("training:detail", args=[longer.pk])
    assert longer.status == "queued" and longer.time_budget_s == search.longer_budget(225)
    assert longer.preset == best.preset
    assert runs_by_state(found) == (3, 0, 1, 5)  # it took the free place; the waiting ones wait on
