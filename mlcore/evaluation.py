"""How good a trained model is on images it never saw."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Evaluation:
    accuracy: float
    loss: float
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    per_class: list[dict]  # one dict per class: name, precision, recall, f1, support
    wrong: list[tuple[int, int, float]]  # (index in the test set, predicted class, its probability)


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
    )
