"""How good a trained model is on images it never saw, and how far that figure can be trusted."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mlcore.familiarity import sure_in_words


@dataclass
class Evaluation:
    accuracy: float
    loss: float
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    per_class: list[dict]  # one dict per class: name, precision, recall, f1, support
    wrong: list[tuple[int, int, float]]  # (index in the test set, predicted class, its probability)
    # Every test picture in test-set order: (true class, predicted class, its probability). The run page
    # opens the pictures behind each cell of the confusion matrix from these.
    answers: list[tuple[int, int, float]]


def evaluate(probabilities: np.ndarray, y_true: np.ndarray, class_names: list[str],
             max_wrong: int = 48) -> Evaluation:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(class_names)))
    y_pred = probabilities.argmax(axis=1)
    chosen = np.clip(probabilities[np.arange(len(y_true)), y_true], 1e-7, 1.0)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    wrong_indices = np.flatnonzero(y_pred != y_true)
    # The most confident mistakes first: those are the ones worth looking at.
    wrong_indices = wrong_indices[np.argsort(-probabilities[wrong_indices, y_pred[wrong_indices]])]
    return Evaluation(
        accuracy=float((y_pred == y_true).mean()) if len(y_true) else 0.0,
        loss=float(-np.log(chosen).mean()) if len(y_true) else 0.0,
        confusion=confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        per_class=[
            {"name": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
        ],
        wrong=[(int(i), int(y_pred[i]), float(probabilities[i, y_pred[i]])) for i in wrong_indices[:max_wrong]],
        answers=[(int(t), int(p), float(probabilities[i, p])) for i, (t, p) in enumerate(zip(y_true, y_pred))],
    )


def answer_in_words(true: str, predicted: str, confidence: float) -> str:
    """What the model said of one test picture: "labelled daisy, the model says tulip, 91 % sure", or
    "daisy, 98 % sure" when it was right."""
    if true == predicted:
        return f"{true}, {sure_in_words(confidence)}"
    return f"labelled {true}, the model says {predicted}, {sure_in_words(confidence)}"


# Wider than this (in accuracy, from its low end to its high end), the interval is shown as a warning: too
# few test pictures to trust the figure. 25 test pictures at 92 % give 75 % to 98 %; it takes about
# 120 of them at 90 % to come under 11 points, and the 587 flower test photos at 93 % give 91 % to 95 %.
FEW_TEST_SPREAD = 0.10


def wilson_interval(right: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95 % with z = 1.96) of a proportion `right` of `total`: where the true
    accuracy on pictures like these most likely lies. Unlike "p ± 1.96 standard errors" it stays within
    0 to 1 and is honest at 0 or all right, which few test pictures often give."""
    if total <= 0:
        return 0.0, 1.0
    p = right / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class AccuracyInWords:
    text: str
    low: float
    high: float
    few: bool  # too few test pictures to trust the figure


def accuracy_in_words(right: int, total: int, noun: str = "test picture") -> AccuracyInWords | None:
    """"Right on 23 of 25 test pictures (92%). With so few test pictures the true figure could be anywhere
    from 75% to 98%." None without test pictures."""
    if total <= 0:
        return None
    low, high = wilson_interval(right, total)
    nouns = noun if total == 1 else noun + "s"
    share = 100 * right / total
    share_text = f"{share:.0f}%" if share == round(share) or total < 100 else f"{share:.1f}%"
    said = f"Right on {right:,} of {total:,} {nouns} ({share_text})."
    low_text, high_text = f"{_whole_percent(low, 'down')}%", f"{_whole_percent(high, 'up')}%"
    few = high - low > FEW_TEST_SPREAD
    if few:
        text = (f"{said} With so few {noun}s the true figure could be anywhere from {low_text} to {high_text}; "
                f"more {noun}s would tell it more surely.")
    else:
        text = f"{said} On pictures like these, the true figure is most likely between {low_text} and {high_text}."
    return AccuracyInWords(text, low, high, few)


def _whole_percent(fraction: float, way: str) -> int:
    """Rounded outwards, so the interval in words never claims more than the computed one."""
    value = 100 * fraction
    return math.floor(value + 1e-9) if way == "down" else math.ceil(value - 1e-9)
