"""Likely wrong labels across a whole dataset (issue 20, part 2), without Django.

Given each labelled picture's features (the layer before a network's output), its label and the
number of classes:

- out-of-sample probabilities: a logistic regression on the standardised features and a nearest-neighbours
  vote, fitted K times by stratified K-fold, so that every picture is judged by models that never saw it
  (a model that saw a wrong label would have learned it);
- cleanlab's `find_label_issues` on those probabilities, ranked by self-confidence (the probability
  the out-of-sample model gives the picture's own label, lowest first): the pictures whose label
  disagrees with what pictures like them are labelled;
- near-duplicates across classes: two pictures whose features are almost the same (cosine similarity
  of the centred features above a line) but that carry different labels; one of the two is wrong.

Each suspect comes with a suggested class and a reason in plain words, for the review page.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FOLDS = 5
NEIGHBOURS = 15  # the nearest-neighbours vote: 15 pictures, the nearer counting more
# Shown only when the out-of-sample models give the picture's own label less than this: cleanlab also
# counts pictures that are merely hard (a rose half in shadow), and a person's time goes to likely wrong
# ones. Chosen on held-out flips (benchmarks/label_threshold.py: other seeds, other MNIST digits): of the lines
# tried from 0.01 to 1, only 0.05, 0.075 and 0.1 met both goals, and 0.05 had the best F1 (MNIST precision 0.91,
# recall 0.86; flowers 0.86 and 0.73; every cleanlab suspect gave the flowers 0.57 and 0.76).
SHOWN_BELOW = 0.05
DUPLICATE_SIMILARITY = 0.97  # cosine of the centred features; above it two pictures look alike to the network
MAX_DUPLICATE_PAIRS = 500  # the review is for people: more pairs than this is a dataset problem, not a review
_CHUNK = 512  # rows of the similarity matrix computed at once (512 x 50,000 floats: 100 MB)


@dataclass(frozen=True)
class Suspect:
    index: int  # the picture's place in the features given
    given: int  # its label
    suggested: int  # the class it more likely belongs to
    score: float  # lower: more likely wrong (the out-of-sample probability of its own label)
    reason: str  # in plain words, with the class names
    kind: str = "label"  # "label" (the models disagree) or "duplicate" (looks like a picture labelled otherwise)
    other: int | None = None  # for a duplicate: the look-alike's place


def out_of_sample_probabilities(features: np.ndarray, labels: np.ndarray, class_count: int, folds: int = FOLDS,
                                seed: int = 0, on_fold=None) -> np.ndarray:
    """(n, class_count) probabilities, each row from models that never saw that picture: the mean of a
    logistic regression on the standardised features and a nearest-neighbours vote on their directions.

    Two models, because each is wrong on different pictures: on the flower photos with 3 % of the labels
    flipped, the regression alone flagged 236 pictures to find 86 % of the flips (a third of them
    flipped), the neighbours alone 127 for 77 %, their mean 127 for 81 % and, below SHOWN_BELOW, 80 for
    77 % (docs/benchmarks.md, "label_errors").

    Fewer folds when the smallest class has fewer pictures than folds (at least 2). A class missing from a
    fold's training pictures gets probability 0 there, before the small smoothing every row gets (cleanlab
    wants no class at exactly 0 for all pictures). `on_fold(done, total)` after each fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels, dtype=int)
    present = np.bincount(labels, minlength=class_count)
    smallest = present[present > 0].min()
    folds = int(max(2, min(folds, smallest)))
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    probabilities = np.zeros((len(labels), class_count), np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    # A class with fewer pictures than folds only warns: some folds' models never see it.
    splits = list(splitter.split(features, labels))
    # One BLAS thread: on two cores shared with a web server and a worker, the regression took 84 s for
    # 10,000 MNIST features with the default threads and 5 s with one.
    with threadpool_limits(1):
        for number, (train, held_out) in enumerate(splits, start=1):
            scaler = StandardScaler().fit(features[train])
            regression = LogisticRegression(max_iter=300, C=0.1).fit(scaler.transform(features[train]), labels[train])
            neighbours = KNeighborsClassifier(min(NEIGHBOURS, len(train)), weights="distance").fit(
                unit[train], labels[train])
            for model, inputs in ((regression, scaler.transform(features[held_out])), (neighbours, unit[held_out])):
                probabilities[np.ix_(held_out, model.classes_)] += model.predict_proba(inputs) / 2
            if on_fold:
                on_fold(number, len(splits))
    probabilities += 1e-6
    return probabilities / probabilities.sum(axis=1, keepdims=True)


def label_suspects(labels: np.ndarray, probabilities: np.ndarray, class_names: list[str],
                   shown_below: float = SHOWN_BELOW) -> list[Suspect]:
    """cleanlab's likely label issues whose own label gets under `shown_below`, most likely first, each with
    the class the out-of-sample models prefer and why."""
    from cleanlab.filter import find_label_issues

    labels = np.asarray(labels, dtype=int)
    if len(labels) == 0 or len(np.unique(labels)) < 2:
        return []
    # n_jobs=1: cleanlab otherwise forks a multiprocessing pool, which hung for good in a process that already
    # runs threads (TensorFlow's, a test server's: a fork copies their held locks); one process is quick enough.
    ranked = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1)
    suspects = []
    for index in ranked:
        index, given = int(index), int(labels[index])
        if probabilities[index, given] >= shown_below:
            continue
        row = probabilities[index].copy()
        row[given] = -1.0  # the suggestion is another class
        suggested = int(row.argmax())
        suspects.append(Suspect(index, given, suggested, float(probabilities[index, given]),
                                _label_reason(probabilities[index], given, suggested, class_names)))
    return suspects


def _label_reason(row, given: int, suggested: int, class_names: list[str]) -> str:
    return (f"Pictures that look like this one are mostly labelled “{class_names[suggested]}”: a model that "
            f"never saw this picture gives “{class_names[suggested]}” {_percent(row[suggested])} and its label "
            f"“{class_names[given]}” {_percent(row[given])}.")


def _percent(value: float) -> str:
    percent = 100 * float(value)
    return "under 1 %" if percent < 1 else f"{percent:.0f} %"


def near_duplicates(features: np.ndarray, labels: np.ndarray, threshold: float = DUPLICATE_SIMILARITY,
                    limit: int = MAX_DUPLICATE_PAIRS) -> list[tuple[int, int, float]]:
    """(i, j, similarity) for pictures i < j labelled differently whose centred features point almost the
    same way, most alike first. Centred: the features of one network share a large common part (every
    pretrained feature is positive), which alone makes any two pictures look 0.7 alike."""
    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels, dtype=int)
    if len(features) < 2:
        return []
    centred = features - features.mean(axis=0)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    unit = centred / np.maximum(norms, 1e-12)
    pairs = []
    for start in range(0, len(unit), _CHUNK):
        block = unit[start:start + _CHUNK] @ unit.T
        rows, columns = np.nonzero(block > threshold)
        for row, column in zip(rows, columns):
            i, j = start + int(row), int(column)
            if i < j and labels[i] != labels[j]:
                pairs.append((i, j, float(block[row, column])))
    pairs.sort(key=lambda pair: -pair[2])
    return pairs[:limit]


def duplicate_suspects(pairs, labels: np.ndarray, probabilities: np.ndarray, class_names: list[str],
                       names: list[str] | None = None) -> list[Suspect]:
    """One suspect a pair of look-alikes: the one whose own label the out-of-sample model believes less,
    with the other's label suggested."""
    labels = np.asarray(labels, dtype=int)
    suspects = []
    for i, j, similarity in pairs:
        first, second = (i, j) if probabilities[i, labels[i]] <= probabilities[j, labels[j]] else (j, i)
        other = f"“{names[second]}”" if names else "another picture"
        suspects.append(Suspect(
            first, int(labels[first]), int(labels[second]), float(probabilities[first, labels[first]]),
            f"It looks almost the same as {other} ({100 * similarity:.0f} % alike to the network), which is "
            f"labelled “{class_names[labels[second]]}”, not “{class_names[labels[first]]}”. One of the two "
            "labels is probably wrong, or one picture is a copy of the other.",
            kind="duplicate", other=second))
    return suspects


def rank(features: np.ndarray, labels: np.ndarray, class_names: list[str], names: list[str] | None = None,
         folds: int = FOLDS, seed: int = 0, duplicate_threshold: float = DUPLICATE_SIMILARITY,
         on_fold=None) -> tuple[list[Suspect], np.ndarray]:
    """Every suspect of a dataset, likely wrong labels first (most likely first), then look-alikes across
    classes not already among them; and the out-of-sample probabilities (for the benchmark's baseline)."""
    labels = np.asarray(labels, dtype=int)
    if len(labels) < 2 or len(np.unique(labels)) < 2:
        return [], np.zeros((len(labels), len(class_names)))
    probabilities = out_of_sample_probabilities(features, labels, len(class_names), folds, seed, on_fold)
    suspects = label_suspects(labels, probabilities, class_names)
    seen = {suspect.index for suspect in suspects}
    for suspect in duplicate_suspects(near_duplicates(features, labels, duplicate_threshold), labels,
                                      probabilities, class_names, names):
        if suspect.index not in seen and suspect.other not in seen:
            suspects.append(suspect)
            seen.add(suspect.index)
    return suspects, probabilities


def precision_recall(flagged, wrong) -> tuple[float, float]:
    """Of the pictures flagged, the share truly wrong; of those truly wrong, the share flagged."""
    flagged, wrong = {int(i) for i in flagged}, {int(i) for i in wrong}
    hits = len(flagged & wrong)
    return (hits / len(flagged) if flagged else 0.0), (hits / len(wrong) if wrong else 1.0)


# --- features ---------------------------------------------------------------------------------

PRETRAINED = "efficientnet_lite0"  # with no trained run: offline, and the best start for photos
PRETRAINED_SIZE = 224


def pretrained_feature_model(channels: int, weights_dir=None):
    """EfficientNet-Lite0 at 224 x 224 as the builder makes it for training (grey repeated as red, green
    and blue), ending in its pooled features: the model gives (features, probabilities of a random top);
    only the features are used."""
    from .builder import build_model
    from .familiarity import features_and_probabilities

    spec = {"layers": [{"type": "GlobalAveragePooling2D"}], "base": {"name": PRETRAINED, "fine_tune_layers": 0}}
    model = build_model(spec, (PRETRAINED_SIZE, PRETRAINED_SIZE, channels), 2, weights_dir=weights_dir)
    return features_and_probabilities(model)


def features_of(model, batches, on_batch=None) -> np.ndarray:
    """The layer before the output of a trained model (or the output 0 of a pretrained_feature_model) for
    batches of uint8 pictures (an array, or any iterable of arrays: the job decodes a batch at a time, so a
    large dataset is never in memory whole), through one compiled function. `on_batch(pictures done)`."""
    import tensorflow as tf

    from .familiarity import features_and_probabilities
    from .serving import batch_size_for

    if not isinstance(model.output, (list, tuple)):
        model = features_and_probabilities(model)
    if isinstance(batches, np.ndarray):
        pixels, size = batches, batch_size_for(batches)
        batches = (pixels[start:start + size] for start in range(0, len(pixels), size))
    call = tf.function(lambda x: model(x, training=False)[0], reduce_retracing=True)
    found, done = [], 0
    for batch in batches:
        found.append(np.asarray(call(np.ascontiguousarray(batch))))
        done += len(batch)
        if on_batch:
            on_batch(done)
    return np.concatenate(found) if found else np.zeros((0, model.output_shape[0][-1]), np.float32)
