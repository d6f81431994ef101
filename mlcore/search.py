"""Trying several settings at once: which runs a search makes from the values a person chose, and how its
total time is shared between them. Django-free; training_app/search_views.py turns each run into an
ordinary training run.

A search tries a few values of a few settings: every combination (a grid), or a number of different
combinations drawn at random with a seed (the same seed draws the same ones). Its total time is split
evenly: each run gets the total divided by their number as its own time budget (mlcore/budget.py), and
the worker keeps to it like any other run's.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from .budget import TIME_BUDGETS
from .options import AUGMENTATIONS, normalise_augmentation
from .words import count, decimal, duration

# The settings a search tries, in the order a run's settings are said ("Small CNN · 64 px · ...").
SEARCHED = ("preset", "image_size", "learning_rate", "batch_size", "augmentation")

MAX_RUNS = 12  # more would keep the workers busy for long and make the leaderboard hard to read
# Below this a run hardly gets past its first epochs (the budget keeps the last twentieth for testing): the
# shortest budget the training form offers.
MIN_RUN_S = 120

TOTAL_BUDGETS = [
    (900, "About 15 minutes"),
    (1800, "About 30 minutes"),
    (3600, "About an hour"),
    (7200, "About 2 hours"),
]
MODES = [("grid", "Every combination (a grid)"), ("random", "A number of combinations picked at random")]


class SearchError(ValueError):
    """Choices a search cannot be made from, with the reason in plain words."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _unique(values) -> list:
    """The values in the order given, each once (1 and 1.0 are the same value)."""
    seen, kept = set(), []
    for value in values:
        if value not in seen:
            seen.add(value)
            kept.append(value)
    return kept


def combinations(values: dict[str, list]) -> list[dict]:
    """Every combination of the chosen values (the grid), in a fixed order: the first setting changes
    slowest. Each setting of SEARCHED needs at least one value."""
    missing = [name for name in SEARCHED if not values.get(name)]
    if missing:
        raise SearchError(f"Choose at least one value for: {', '.join(LABELS[name] for name in missing)}.")
    lists = [_unique(values[name]) for name in SEARCHED]
    return [dict(zip(SEARCHED, combo)) for combo in itertools.product(*lists)]


def choose_runs(values: dict[str, list], mode: str, picks: int = 0, seed: int = 0) -> list[dict]:
    """The runs a search makes: every combination for a grid, or `picks` different ones drawn at random
    with `seed` (all of them when there are no more than that). SearchError when there would be more
    than MAX_RUNS, or the choice makes no sense."""
    grid = combinations(values)
    if mode == "grid":
        if len(grid) > MAX_RUNS:
            raise SearchError(
                f"These values make {count(len(grid), 'combination')}; a search tries at most {MAX_RUNS}. "
                "Choose fewer values, or pick some combinations at random.")
        return grid
    if mode != "random":
        raise SearchError("Choose a grid or random picks.")
    if not 1 <= picks <= MAX_RUNS:
        raise SearchError(f"Pick between 1 and {MAX_RUNS} combinations at random.")
    if picks >= len(grid):
        return grid  # every combination there is: no need to draw
    chosen = sorted(random.Random(seed).sample(range(len(grid)), picks))
    return [grid[i] for i in chosen]


@dataclass(frozen=True)
class Split:
    """How a total time is shared between `runs` runs."""
    total_s: int
    runs: int
    each_s: int  # each run's time budget
    fits: int  # how many runs the total gives at least MIN_RUN_S each

    @property
    def enough(self) -> bool:
        return self.runs <= self.fits

    def in_words(self) -> str:
        if not self.runs:
            return "No runs chosen yet."
        if not self.enough:
            return (f"{duration(self.total_s)} is too little for {count(self.runs, 'run')}: each needs at least "
                    f"{duration(MIN_RUN_S)}, so {count(self.fits, 'run fits', 'runs fit')}. Choose fewer "
                    "values or picks, or more time.")
        return (f"{count(self.runs, 'run')}, about {duration(self.each_s)} each "
                f"({duration(self.total_s)} in all on one training worker; several workers train "
                "them side by side and finish sooner).")


def split_budget(total_s: int, runs: int) -> Split:
    """Each run gets an even share of `total_s`, in whole seconds."""
    return Split(total_s=total_s, runs=runs, each_s=total_s // runs if runs else 0, fits=total_s // MIN_RUN_S)


def turns_in_words(runs: int, room: int | None, limit: int) -> str:
    """How a search of `runs` runs is trained when the person may have at most `limit` runs waiting for a
    worker or training at once, `room` of them free now (None: no limit). "" when all of them start now;
    the others wait their turn in the search, not in the workers' queue, and start as places free up."""
    if room is None or runs <= room:
        return ""
    return (f"The site trains at most {limit} of your runs at once: {room} {'starts' if room == 1 else 'start'} "
            f"now, and the other {count(runs - room, 'waits its turn', 'wait their turn')}, starting one by one "
            "as runs end.")


def waiting_in_words(active: int, waiting: int, limit: int) -> str:
    """The leaderboard's words on a search's runs not ended: "3 training or waiting for a worker, 5 waiting
    their turn: the site trains at most 3 of your runs at once"; "" when there are none."""
    parts = [f"{active} training or waiting for a worker"] if active else []
    if waiting:
        parts.append(f"{count(waiting, 'waiting its turn', 'waiting their turn')}")
    text = ", ".join(parts)
    if waiting and limit:
        text += f": the site trains at most {limit} of your runs at once"
    return text


def longer_budget(run_s: int) -> int:
    """The budget for training the best run of a search longer: the shortest the training form offers that
    is at least twice `run_s`; the longest it offers when none is; 0 (no limit: every epoch, or until it
    stops improving) when even that is not longer."""
    offered = sorted(seconds for seconds, _ in TIME_BUDGETS if seconds)
    for seconds in offered:
        if seconds >= 2 * run_s:
            return seconds
    return offered[-1] if offered[-1] > run_s else 0


LABELS = {"preset": "network", "image_size": "input size", "learning_rate": "step size (learning rate)",
          "batch_size": "batch size", "augmentation": "random changes (augmentation)"}


def run_in_words(choice: dict, network_labels: dict | None = None) -> str:
    """One run of a search in a few words: "Small convolutional network · 64 px · step 0.001 · batch 32 ·
    random changes"."""
    network = (network_labels or {}).get(choice["preset"], choice["preset"])
    changes = "random changes" if choice["augmentation"] else "no random changes"
    return (f"{network} · {choice['image_size']} px · step {decimal(choice['learning_rate'])} · "
            f"batch {choice['batch_size']} · {changes}")


def rank_key(best_val_accuracy: float | None, test_accuracy: float | None, run_id: int) -> tuple:
    """Sorts a leaderboard: the best validation accuracy first, then the test accuracy (only finished runs
    have one), then the older run; a run with no epoch yet goes last."""
    return (best_val_accuracy is None, -(best_val_accuracy or 0.0),
            test_accuracy is None, -(test_accuracy or 0.0), run_id)


# "Random changes on" where the suggested settings have none: mild ones that suit digits and photos alike
# (no mirror images, which change what a letter or digit means).
MILD_CHANGES = {"rotation": 10, "zoom": 10, "translation": 10}


def changes_on(augmentation) -> bool:
    """Whether a run's random changes (augmentation) change anything at all."""
    clean = normalise_augmentation(augmentation)
    return any(clean[name] != change.param["default"] for name, change in AUGMENTATIONS.items())


def augmentation_for(on: bool, suggested) -> dict:
    """The random changes of a run with augmentation "on" (the suggested ones, else MILD_CHANGES) or "off"."""
    if not on:
        return normalise_augmentation({})  # every change at its default: off
    return normalise_augmentation(suggested if changes_on(suggested) else MILD_CHANGES)
