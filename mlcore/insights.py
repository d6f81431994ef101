"""Plain-words readings of a run's curves and results, for people who have never trained a network.

No Django here: the functions take the per-epoch numbers as plain dicts, and the test results
(accuracy, images per class, confusion matrix) as plain numbers and lists.
"""
from __future__ import annotations

from .words import count, decimal

# Validation loss must have stayed above its best for at least this many epochs...
MIN_EPOCHS_RISING = 2
# ...and the latest value must be at least this much (relative) above the best, so that a flat,
# noisy curve is not taken for overfitting.
MIN_RISE = 0.01
# The other evidence: training accuracy above validation accuracy by more than this, in each of the
# last GAP_EPOCHS epochs. Why 10 points: training accuracy is measured while random changes
# (augmentation) and Dropout are on, which only lower it, so a gap this large is not an artefact of
# them; a network that generalises keeps its two accuracies within a few points of each other, and
# label smoothing, which holds training accuracy back, moves them closer still. Two epochs in a row
# keep one lucky or unlucky epoch from raising the hint. With few validation images a gap of 10
# points can be luck alone, so the threshold grows to two standard errors of the validation accuracy
# there (the reasoning of the near-chance rule below). The 10 points is a judgement, not yet measured
# against runs on real photos: docs/benchmarks.md records validation and test accuracy only.
GAP = 0.10
GAP_EPOCHS = 2


def _gap_threshold(val_accuracy, val_count):
    if not val_count:
        return GAP
    return max(GAP, 2 * (val_accuracy * (1 - val_accuracy) / val_count) ** 0.5)


def _rising(known):
    """(best row, epochs since it) when validation loss has risen since its best while training loss
    fell (see MIN_EPOCHS_RISING and MIN_RISE), else None."""
    if len(known) < MIN_EPOCHS_RISING + 1:
        return None
    best_index = min(range(len(known)), key=lambda i: (known[i]["val_loss"], i))
    best, latest = known[best_index], known[-1]
    rising_for = len(known) - 1 - best_index
    if rising_for < MIN_EPOCHS_RISING:
        return None
    if latest["val_loss"] <= best["val_loss"] * (1 + MIN_RISE) + 1e-12:
        return None
    if latest["loss"] >= best["loss"]:
        return None  # both got worse: something else is wrong (step size too large, say), not memorising
    return best, rising_for


def _gap(rows, val_count):
    """The latest epoch's row when training accuracy led validation accuracy by more than the
    threshold in each of the last GAP_EPOCHS epochs, else None."""
    known = [row for row in rows if row.get("accuracy") is not None and row.get("val_accuracy") is not None]
    latest = known[-GAP_EPOCHS:]
    if len(latest) < GAP_EPOCHS or known[-1] is not rows[-1]:
        return None
    if all(row["accuracy"] - row["val_accuracy"] > _gap_threshold(row["val_accuracy"], val_count) for row in latest):
        return latest[-1]
    return None


def _either_or(items):
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def overfitting_hint(metrics, *, early_stopping_patience=0, augmentation=False, dropout=False, kept_epoch=None,
                     val_count=0) -> str | None:
    """A warning when the network has started to memorise its training images, else None.

    `metrics` is one dict per epoch, in epoch order, with "epoch", "loss", "val_loss", "accuracy" and
    "val_accuracy" (None where unknown). It fires only on evidence in those numbers, either of:

    * the lowest validation loss lies at least MIN_EPOCHS_RISING epochs back, the latest validation
      loss is clearly above it, and the training loss has still fallen since that best epoch;
    * training accuracy led validation accuracy by more than GAP in each of the last GAP_EPOCHS epochs.

    `kept_epoch`: the epoch whose weights the finished model went back to (early stopping, or a
    stop by hand). Only the epochs up to it are judged: what came after is what early stopping
    caught, and the saved model does not have it.

    What it suggests leaves out what the run already uses: early stopping (`early_stopping_patience`
    above 0), random changes (`augmentation`), Dropout (`dropout`). More images always help.
    """
    rows = list(metrics)
    if kept_epoch is not None:
        rows = [row for row in rows if row.get("epoch") is not None and row["epoch"] <= kept_epoch]
    if not rows or rows[-1].get("val_loss") is None or rows[-1].get("loss") is None:
        return None  # no validation images, or the latest epoch is not known yet
    known = [row for row in rows if row.get("val_loss") is not None and row.get("loss") is not None]
    rising, gap = _rising(known), _gap(rows, val_count)
    if rising:
        best, rising_for = rising
        evidence = (f"training loss keeps falling, but validation loss has risen for {rising_for} epochs since "
                    f"epoch {best['epoch']}, its best.")
    elif gap:
        evidence = (f"in epoch {gap['epoch']} it was right on {round(100 * gap['accuracy'])} % of its training images "
                    f"but only {round(100 * gap['val_accuracy'])} % of its validation images, the images it does "
                    "not learn from.")
    else:
        return None
    helps = ["more images"]
    if not augmentation:
        helps.append("random changes (augmentation)")
    if not dropout:
        helps.append("Dropout")
    if not early_stopping_patience:
        helps.append("early stopping")
    advice = f"{_either_or(helps)} help{'s' if len(helps) == 1 else ''}."
    advice = advice[0].upper() + advice[1:]
    if early_stopping_patience and kept_epoch is None:
        advice += (f" Early stopping is on: once validation loss has not improved for "
                   f"{count(early_stopping_patience, 'epoch')}, it stops and keeps the best epoch's weights.")
    return f"The network is starting to learn the training images by heart: {evidence} {advice}"


def samples_per_second(train_count, seconds) -> float | None:
    """Training images a second in an epoch that took `seconds`; None when either is unknown."""
    if not train_count or not seconds or seconds <= 0:
        return None
    return train_count / seconds


# ------------------------------------------------------------------------------------------------
# Did the model learn anything? Its accuracy against what guessing would get.
#
# "Chance level" is the accuracy a model gets without looking at the images: the larger of
# 1/number-of-classes (answering at random) and the share of the largest class (always giving the
# most common answer).
#
# The rule for "near chance": a model has learned something only when its accuracy is CLEARLY above
# chance, that is above
#
#     chance + margin,  margin = min(max(STANDARD_ERRORS · SE, MIN_GAIN · (1 − chance)),
#                                    MAX_GAIN · (1 − chance))
#
# where SE = sqrt(chance · (1 − chance) / n) is how much a guesser's accuracy on n images varies
# from one set of n images to the next (the binomial standard error).
#
# * 2 standard errors: on a small test set, guessing alone lands above chance by luck quite often;
#   a guesser beats chance + 2 SE only about 1 time in 40, so a model that does not is not shown
#   to be better than guessing. This is what makes the rule work for the small datasets people
#   start with: 5 test images of 5 classes cannot tell a 40 % model from a guesser.
# * at least 10 % of the way from chance to perfect: on a large test set 2 SE shrinks to almost
#   nothing, and 21 % on 5 classes (chance 20 %) is "better than guessing" only to a statistician.
#   Today's case, 25 % on 5 classes, stays flagged however many test images there are.
# * at most half the way from chance to perfect: whatever the size of the test set, a model that
#   gets right at least half of what guessing gets wrong is never flagged, so the rule cannot fire
#   on a good model (90 % on 5 classes passes even with 5 test images; 100 % with 2 classes and
#   4 test images passes).
STANDARD_ERRORS = 2
MIN_GAIN = 0.10
MAX_GAIN = 0.50
# While a run trains, validation accuracy must have stayed near chance for this many epochs in a
# row before the page hints that it may not be learning: every network starts at chance.
EPOCHS_AT_CHANCE = 3
_EPSILON = 1e-9  # 2/3 must compare equal to 1/3 + 1/3


def chance_level(class_counts) -> float | None:
    """The accuracy a model gets without looking at the images.

    `class_counts`: how many of the evaluated images each class has (zero for a class with none).
    The larger of 1/number-of-classes and the share of the largest class; None without classes.
    """
    counts = [max(0, int(count)) for count in class_counts or []]
    if not counts:
        return None
    total = sum(counts)
    uniform = 1 / len(counts)
    return max(uniform, max(counts) / total) if total else uniform


def _largest_class_wins(counts) -> bool:
    """Whether always giving the most common answer beats answering at random."""
    return bool(sum(counts)) and max(counts) / sum(counts) > 1 / len(counts) + _EPSILON


def clearly_above_chance(chance: float, n: int) -> float:
    """The accuracy a model must beat, on n images, to count as clearly better than guessing."""
    room = 1 - chance
    margin = MIN_GAIN * room
    if n and n > 0:
        margin = max(margin, STANDARD_ERRORS * (chance * (1 - chance) / n) ** 0.5)
    return chance + min(margin, MAX_GAIN * room)


def near_chance(accuracy: float, chance: float, n: int) -> bool:
    """True when `accuracy` on n images is not clearly above chance (see the rule above)."""
    return accuracy <= clearly_above_chance(chance, n) + _EPSILON


def times_out_of_ten(accuracy: float) -> str:
    """The accuracy as a whole number out of 10, in words: 0.93 → "about 9 times out of 10"."""
    if accuracy >= 1:
        return "10 times out of 10"
    if accuracy <= 0:
        return "0 times out of 10"
    if accuracy >= 0.95:
        return "more than 9 times out of 10"
    if accuracy < 0.05:
        return "less than 1 time out of 10"
    tenths = int(accuracy * 10 + 0.5)  # round half up: 0.25 → 3, not Python's round-half-even 2
    return f"about {count(tenths, 'time')} out of 10"


def percent(fraction: float) -> str:
    """0.2 → "20%", 1/3 → "33.3%"."""
    return f"{round(100 * fraction, 1):g}%"


def guessing_in_words(class_counts, class_names=None) -> str | None:
    """What guessing would get, as a sentence to compare the model with; None without classes.

    Names the class when always giving the most common answer beats answering at random."""
    chance = chance_level(class_counts)
    if chance is None:
        return None
    counts = list(class_counts)
    how_often = f"{times_out_of_ten(chance)} ({percent(chance)})"
    if _largest_class_wins(counts):
        largest = counts.index(max(counts))
        name = class_names[largest] if class_names and largest < len(class_names) else "the most common class"
        return (f"Always answering “{name}”, the most common class, without looking at the images "
                f"would be right {how_often}.")
    return (f"Guessing, without looking at the images, would be right {how_often}: "
            f"there are {len(counts)} classes.")


def most_confused(confusion, class_names, n=3) -> list[dict]:
    """The mix-ups it makes most: the off-diagonal cells of the confusion matrix (rows: the true
    class, columns: what the model said) with the most images, most first, at most n.

    Each is a dict: true, predicted, count, and text, e.g. "tulips taken for roses: 12 times"."""
    cells = [(int(n), true, predicted)
             for true, row in enumerate(confusion or []) for predicted, n in enumerate(row)
             if true != predicted and n > 0]
    # The most mistakes first; among equals, in the order of the classes.
    cells.sort(key=lambda cell: (-cell[0], cell[1], cell[2]))
    names = list(class_names or [])

    def name(index):
        return names[index] if index < len(names) else f"class {index + 1}"

    return [{"true": name(true), "predicted": name(predicted), "count": times,
             "text": f"{name(true)} taken for {name(predicted)}: {count(times, 'time')}"}
            for times, true, predicted in cells[:n]]


def what_to_try(pretrained=False, learning_rate=None, images_per_class=None, finished=True) -> list[str]:
    """Plain-words things to change when a model does not learn; the first ones help most often."""
    tips = ["Check the labels: open the dataset's gallery and make sure each image is in the right class. "
            "If the labels are mixed up, there is nothing to learn."]
    more = "Add more images to each class: a few dozen at least, a few hundred is better"
    if images_per_class:
        more += f" (this run had about {images_per_class} a class to learn from)"
    tips.append(more + ".")
    if not pretrained:
        tips.append("Start from a pretrained network, one that has already learned to recognise shapes and "
                    "textures in over a million photos: choose a “Transfer learning” network under Network.")
    tips.append("Train for longer: more epochs, or a longer time under “About how long can this take?”, give "
                "the network more chances to learn.")
    if learning_rate and learning_rate > 0.001 + _EPSILON:
        tips.append(f"Use a smaller step size (learning rate), such as 0.001 instead of {decimal(learning_rate)}: "
                    "steps that are too big keep the network jumping around instead of settling.")
    elif learning_rate and learning_rate < 0.0001 - _EPSILON:
        tips.append(f"Use a larger step size (learning rate), such as 0.001 instead of {decimal(learning_rate)}: "
                    "steps that are too small change the network too slowly.")
    else:
        tips.append("Try a different step size (learning rate), such as ten times smaller or larger.")
    if not finished:
        tips.insert(0, "You can stop this run now (it keeps what it has learned) and train again with changes.")
    return tips


def _verdict(accuracy, chance, n, based_on, final, tips, guess="guessing"):
    """The verdict dict when `accuracy` is near chance, else None. `guess` names what chance is:
    "guessing", or always answering with the most common class."""
    if not near_chance(accuracy, chance, n):
        return None
    # Within 10 % of the way to perfect: no better than guessing, however many images it was tested
    # on. Above that, only the small number of images keeps it from counting: it may be just luck.
    guessing = accuracy <= chance + MIN_GAIN * (1 - chance) + _EPSILON
    images = "images it never saw" if based_on == "test" else "validation images"
    if n:
        right = f"{round(accuracy * n)} of the {n} {images}, {percent(accuracy)}"
    else:
        right = f"{percent(accuracy)} of its {images}"
    compare = (f"{guess}, without looking at the images, would be right {times_out_of_ten(chance)} "
               f"({percent(chance)})")
    result = f"It was right {times_out_of_ten(accuracy)} ({right}); {compare}."
    if final and guessing:
        title = "This model learned nothing useful: it did no better than guessing"
        text = f"{result} So do not trust its answers."
        badge = "learned nothing useful"
    elif final:
        title = "This model did not do clearly better than guessing"
        text = (f"{result} With only {n} images to check it on, a result like this can be luck, "
                "so do not trust its answers yet.")
        badge = "may be just guessing"
    else:
        title = "It may not be learning"
        text = (f"For the last {EPOCHS_AT_CHANCE} epochs it has done no better than guessing on its "
                f"{images}: after the latest epoch it was right {times_out_of_ten(accuracy)} ({right}), and "
                f"{compare}. Networks often need a few epochs to get going, but if this goes on, the "
                "finished model will be no better than guessing.")
        badge = ""
    return {"based_on": based_on, "final": final, "guessing": guessing, "accuracy": accuracy,
            "chance": chance, "count": n, "title": title, "text": text, "badge": badge, "tips": tips}


def verdict_from_test(accuracy, class_counts, **tips) -> dict | None:
    """When a finished model's test accuracy is near chance: a dict with a title, a text, a short
    badge ("learned nothing useful") and what to try (`tips` go to what_to_try), else None.

    `class_counts`: the test images of each class, e.g. the row sums of the confusion matrix."""
    chance = chance_level(class_counts)
    if accuracy is None or chance is None:
        return None
    counts = list(class_counts)
    guess = "always answering with its most common class" if _largest_class_wins(counts) else "guessing"
    return _verdict(accuracy, chance, sum(counts), "test", True, what_to_try(**tips), guess=guess)


def verdict_from_validation(val_accuracies, num_classes, val_count=0, finished=False, **tips) -> dict | None:
    """The same verdict from the validation accuracy of each epoch (None where unknown), for a run
    with no test result.

    While it trains (`finished` False), a hint that it may not be learning: the last
    EPOCHS_AT_CHANCE epochs were all near chance. Once finished, its best epoch was near chance.
    Chance is 1/num_classes: the validation images of each class are not counted separately, and
    the share of the largest class could only make chance higher, so this never flags too much."""
    known = [accuracy for accuracy in val_accuracies or [] if accuracy is not None]
    if not num_classes or num_classes < 2 or not known:
        return None
    chance = 1 / num_classes
    if finished:
        return _verdict(max(known), chance, val_count, "validation", True, what_to_try(**tips))
    latest = known[-EPOCHS_AT_CHANCE:]
    if len(latest) < EPOCHS_AT_CHANCE or not all(near_chance(a, chance, val_count) for a in latest):
        return None
    return _verdict(known[-1], chance, val_count, "validation", False, what_to_try(finished=False, **tips))
