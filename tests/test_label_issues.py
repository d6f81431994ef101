"""Likely wrong labels (mlcore/label_issues.py): on synthetic features whose flipped labels are known,
the ranking finds them, suggests the true class, and finds look-alikes labelled differently."""
import numpy as np
import pytest

from mlcore.label_issues import (
    near_duplicates,
    out_of_sample_probabilities,
    precision_recall,
    rank,
)

NAMES = ["cat", "dog", "fox", "owl"]


def noisy_clusters(n=800, classes=4, dims=16, flip_share=0.03, seed=0):
    """Well-separated classes, with `flip_share` of the labels moved to another class (seeded)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (classes, dims))
    truth = np.arange(n) % classes
    features = centres[truth] + rng.normal(0, 1, (n, dims))
    flipped = rng.choice(n, int(n * flip_share), replace=False)
    labels = truth.copy()
    labels[flipped] = (truth[flipped] + rng.integers(1, classes, len(flipped))) % classes
    return features.astype(np.float32), labels, truth, flipped


def test_flipped_labels_are_ranked_first_with_the_true_class_suggested():
    features, labels, truth, flipped = noisy_clusters()
    suspects, probabilities = rank(features, labels, NAMES)
    label_suspects = [s for s in suspects if s.kind == "label"]
    precision, recall = precision_recall([s.index for s in label_suspects], flipped)
    assert precision >= 0.9 and recall >= 0.8
    # Most likely first: the top ones are all truly flipped, and the class suggested is the true one.
    top = label_suspects[:len(flipped) // 2]
    assert all(s.index in set(flipped) and s.suggested == truth[s.index] for s in top)
    assert [s.score for s in label_suspects] == sorted(s.score for s in label_suspects)
    first = top[0]
    assert f"“{NAMES[first.suggested]}”" in first.reason and f"“{NAMES[first.given]}”" in first.reason
    assert probabilities.shape == (len(labels), len(NAMES))


def test_probabilities_come_from_models_that_never_saw_the_picture():
    # Labels of pure noise: a model that saw them would fit them; out of sample, it is right by chance only.
    rng = np.random.default_rng(3)
    features = rng.normal(0, 1, (400, 200)).astype(np.float32)
    labels = rng.integers(0, 2, 400)
    probabilities = out_of_sample_probabilities(features, labels, 2)
    assert np.mean(probabilities.argmax(1) == labels) < 0.65
    np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-6)


def test_a_class_smaller_than_the_folds_and_an_unused_class_do_not_break_it():
    features, labels, _, _ = noisy_clusters(n=200, classes=3, flip_share=0)
    features = np.vstack([features, features[:2] + 50])
    labels = np.concatenate([labels, [3, 3]])  # two pictures of a fourth class: two folds
    probabilities = out_of_sample_probabilities(features, labels, 5)  # a fifth class with no picture
    assert probabilities.shape == (202, 5) and np.all(probabilities[:, 4] < 0.01)
    assert rank(features[:1], labels[:1], NAMES) == ([], pytest.approx(np.zeros((1, 4))))


def test_look_alikes_labelled_differently_are_found_and_the_less_believed_one_is_suspected():
    features, labels, _, _ = noisy_clusters(n=400, flip_share=0)
    copy = features[10] + 0.01  # picture 10 again, filed under another class
    features = np.vstack([features, copy])
    labels = np.concatenate([labels, [(labels[10] + 1) % 4]])
    pairs = near_duplicates(features, labels)
    assert [(i, j) for i, j, _ in pairs] == [(10, 400)]
    suspects, _ = rank(features, labels, NAMES, names=[f"p{i}.png" for i in range(len(labels))])
    about_copy = [s for s in suspects if 400 in (s.index, s.other)]
    assert len(about_copy) == 1 and about_copy[0].index == 400  # the copy's label is the one out of place
    assert about_copy[0].suggested == labels[10]
    # Same label: a copy is no label problem.
    labels[400] = labels[10]
    assert near_duplicates(features, labels) == []


def test_precision_and_recall():
    assert precision_recall([1, 2, 3, 4], [1, 2, 9]) == (0.5, pytest.approx(2 / 3))
    assert precision_recall([], [1]) == (0.0, 0.0)
