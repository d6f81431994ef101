from collections import Counter

from mlcore.splits import stratified_split


def test_each_class_is_split_80_10_10():
    labels = ["a"] * 50 + ["b"] * 30
    splits = stratified_split(labels)
    counts = Counter(zip(labels, splits))
    assert (counts["a", "train"], counts["a", "val"], counts["a", "test"]) == (40, 5, 5)
    assert (counts["b", "train"], counts["b", "val"], counts["b", "test"]) == (24, 3, 3)


def test_the_split_is_the_same_every_time_and_changes_with_the_seed():
    labels = ["a"] * 40 + ["b"] * 40
    assert stratified_split(labels) == stratified_split(labels)
    assert stratified_split(labels, seed=1) != stratified_split(labels, seed=2)


def test_small_classes_still_get_a_test_and_validation_image():
    assert Counter(stratified_split(["a"] * 3)) == {"train": 1, "val": 1, "test": 1}
    assert stratified_split(["a", "a"]) == ["train", "train"]


def test_folder_splits_are_kept_and_validation_is_taken_from_training():
    labels = ["a"] * 20 + ["a"] * 5
    given = ["train"] * 20 + ["test"] * 5
    splits = stratified_split(labels, given)
    assert splits[20:] == ["test"] * 5
    assert Counter(splits[:20]) == {"train": 18, "val": 2}
