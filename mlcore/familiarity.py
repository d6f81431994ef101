"""Knowing when to say "I don't know": a prediction is not trusted when the model hesitates between
classes, or when the picture is unlike anything it learned from.

- Spread: the most likely class has less than SPREAD_BELOW of the probability, or is less than
  SPREAD_RATIO times as likely as the next one ("it could be a cat or a dog"; with two classes the
  first always has half or more, so the ratio is what tells there).
- Far: a model always names one of its classes, even for a street photo shown to a digits model (that
  gave "3, 34 % sure"), and a softmax is often very sure of such pictures. So the layer before the
  output ("features") is compared with the training pictures' features: the Mahalanobis distance to
  the nearest class mean, with one covariance shared by the classes (Lee et al., 2018, "A simple
  unified framework for detecting out-of-distribution samples"). A picture further away than
  FAR_PERCENTILE % of the validation pictures counts as far.

Measured on MNIST models given the 200 flower photos and random noise (benchmarks/dont_know.py;
docs/benchmarks.md, "I don't know"): the Keras MNIST example's network flags 90 % of the flowers and all
the noise (the usual rule, top probability under 0.5, flags 69 % and 51 %), and 2.2 % of the digits it
was tested on (it is right about 98.7 % of those it is sure of, 98.3 % of all); the dense network 94 %
and all (13 % and 12 %), and 4.7 % of the digits. The statistics are fitted once, at the end of
training, on a sample of the training pictures (at most FIT_PIXELS pixels of them: 2,000 digits, 300
photos at 224 x 224), and stored beside the model (familiarity.npz).

Models on a pretrained base (photos) are judged otherwise (`Neighbours`), because the Mahalanobis
distance did not carry over to pretrained features: on the suggested flower model (EfficientNet-Lite0
frozen, a new top) it fired on 2 of 27 photos of other things. There "far" is the cosine distance of a
picture's pooled features to its NEIGHBOURS-th nearest training picture (Sun et al., 2022,
"Out-of-distribution detection with deep nearest neighbors"), with the line at the NEAR_PERCENTILE-th
percentile of the validation pictures; and "spread" is a top probability below that of the least sure
SPREAD_SHARE % of the validation pictures (never above SPREAD_BELOW), without the ratio rule. Measured
on that model through the worker (benchmarks/dont_know_photos.py; docs/benchmarks.md, "I don't know on
photos"): 99.3 % of 274 pictures of other things flagged (all the noise, textures, drawings, text and
digits; 12 of 14 crops of a real temple photo that no tuning saw), for 2.9 % of the 587 test flowers;
the rules before flagged 74.5 % and 8.9 %. It flags few of the model's wrong answers (5 of 38): those
are mostly flowers it is sure of, and no line on the top probability catches half of them while
flagging 5 % of the flowers (docs/benchmarks.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPREAD_BELOW = 0.5
SPREAD_RATIO = 2.0
FAR_PERCENTILE = 99.0
MAX_FIT_IMAGES = 2000  # training pictures the class means and covariance are fitted on, at most
FIT_PIXELS = 300 * 224 * 224  # and at most this many pixels of them: one more pass over big photos costs
MAX_FEATURES = 512  # more features than this are reduced to this many directions first (see `fit`)
FILE_NAME = "familiarity.npz"
# Pretrained bases (Neighbours). Chosen on the flower photos' validation split and made-up pictures, from
# features extracted once (docs/benchmarks.md, "I don't know on photos"): with 300 training photos kept
# (FIT_PIXELS), the 5th nearest did as well as the 10th of all 2,051; the 97th to 98th percentile flags
# 2.5 to 4 % of the flowers and all but a few made-up pictures. A wider spread line costs more flowers
# than it finds mistakes: the least sure 3 % of validation photos flagged 4.8 % of the test flowers.
NEIGHBOURS = 5
NEAR_PERCENTILE = 97.5
SPREAD_SHARE = 1.0
MAX_KEPT = 1000  # training pictures whose features are kept beside the model (float16): 2.5 MB at 1,280


@dataclass
class Familiarity:
    # The Mahalanobis distance is a plain distance after a linear map: with the precision matrix
    # P = W Wᵀ (W from P's eigenvectors), (x - m)ᵀ P (x - m) = |xW - mW|². So W and the mapped class means are what is kept, and a
    # picture costs one product with W, whatever the number of classes.
    whitening: np.ndarray  # W: (features, at most MAX_FEATURES)
    means: np.ndarray  # (classes, features): each class's mean features in training, mapped by W
    far_above: float  # squared distance beyond which a picture is far from every class
    spread_below = None  # no line of its own: the fixed spread rules (SPREAD_BELOW, SPREAD_RATIO)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Each picture's squared Mahalanobis distance to the nearest class mean."""
        mapped = np.asarray(features, np.float32) @ self.whitening
        squared = ((mapped ** 2).sum(axis=1)[:, None] - 2 * mapped @ self.means.T
                   + (self.means ** 2).sum(axis=1)[None, :])
        return np.maximum(squared.min(axis=1), 0.0)

    def save(self, folder: Path) -> Path:
        path = Path(folder) / FILE_NAME
        np.savez(path, whitening=self.whitening, means=self.means, far_above=np.float32(self.far_above))
        return path

    @classmethod
    def load(cls, folder: Path) -> "Familiarity | Neighbours | None":
        """The statistics saved beside a model, of either kind; None for a model trained before they existed."""
        path = Path(folder) / FILE_NAME
        if not path.exists():
            return None
        with np.load(path) as data:
            if "kept" in data.files:
                return Neighbours(data["kept"], float(data["far_above"]), int(data["k"]),
                                  float(data["spread_below"]))
            return cls(data["whitening"], data["means"], float(data["far_above"]))

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, held_out: np.ndarray) -> "Familiarity | None":
        """Class means and a shrunk shared covariance from training features; the "far" line from
        features of pictures training did not see (validation, else test); None when the features do not
        vary at all. More than MAX_FEATURES
        features (a Flatten last: 3,136 for the MNIST example's network) are first reduced to the
        MAX_FEATURES directions in which the pictures of a class vary most."""
        from sklearn.covariance import LedoitWolf

        features = np.asarray(features, np.float64)
        classes = np.unique(labels)
        means = np.stack([features[labels == label].mean(axis=0) for label in classes])
        centred = features - means[np.searchsorted(classes, labels)]
        if features.shape[1] > MAX_FEATURES:
            projection = np.linalg.svd(centred, full_matrices=False)[2][:MAX_FEATURES].T
        else:
            projection = np.eye(features.shape[1])
        # Ledoit-Wolf shrinkage keeps the covariance well conditioned with fewer pictures than features;
        # directions in which the pictures do not vary at all (dead units) are left out.
        variances, directions = np.linalg.eigh(LedoitWolf().fit(centred @ projection).covariance_)
        kept = variances > max(variances.max(), 0.0) * 1e-9
        if not kept.any():
            return None
        whitening = projection @ (directions[:, kept] / np.sqrt(variances[kept]))
        familiarity = cls(whitening.astype(np.float32), (means @ whitening).astype(np.float32), 0.0)
        familiarity.far_above = float(np.percentile(familiarity.distances(held_out), FAR_PERCENTILE))
        return familiarity


def _unit(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


@dataclass
class Neighbours:
    """For models on a pretrained base: how far a picture's features are, in angle, from the training
    pictures nearest to it (see the module's docstring)."""
    kept: np.ndarray  # (pictures, features): training pictures' features scaled to length 1, float16
    far_above: float  # cosine distance to the k-th nearest beyond which a picture is far
    k: int = NEIGHBOURS
    spread_below: float = SPREAD_BELOW  # a top probability under this is "spread"

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Each picture's cosine distance (0 the same direction, 2 the opposite) to its k-th nearest
        kept training picture."""
        similar = _unit(features) @ self.kept.astype(np.float32).T
        k = min(self.k, similar.shape[1])
        return np.maximum(1.0 - np.partition(similar, -k, axis=1)[:, -k], 0.0)

    def save(self, folder: Path) -> Path:
        path = Path(folder) / FILE_NAME
        np.savez(path, kept=self.kept.astype(np.float16), far_above=np.float32(self.far_above),
                 k=np.int32(self.k), spread_below=np.float32(self.spread_below))
        return path

    @classmethod
    def fit(cls, features: np.ndarray, held_out: np.ndarray, held_out_probabilities: np.ndarray,
            seed: int = 0) -> "Neighbours | None":
        """Keep (at most MAX_KEPT of) the training features; draw the "far" line and the "spread" line
        from pictures training did not see; None when the features are all zero."""
        features = np.asarray(features, np.float32)
        if len(features) > MAX_KEPT:
            features = features[np.sort(np.random.default_rng(seed).permutation(len(features))[:MAX_KEPT])]
        if not len(features) or not np.abs(features).max() > 0:
            return None
        neighbours = cls(_unit(features).astype(np.float16), 0.0, min(NEIGHBOURS, len(features)))
        neighbours.far_above = float(np.percentile(neighbours.distances(held_out), NEAR_PERCENTILE))
        tops = np.asarray(held_out_probabilities).max(axis=1)
        neighbours.spread_below = float(min(SPREAD_BELOW, np.percentile(tops, SPREAD_SHARE)))
        return neighbours


def features_and_probabilities(model):
    """The model with two outputs: the layer before its output, and its probabilities."""
    import keras

    return keras.Model(model.inputs, [model.get_layer("probabilities").input, model.output],
                       name="features_and_probabilities")


@dataclass(frozen=True)
class Judgement:
    best: int  # the class the model gives the most probability
    confidence: float  # that probability
    doubt: str  # "" when the answer can be trusted, "far" or "spread" otherwise


def judge(probabilities: np.ndarray, distances: np.ndarray | None,
          familiarity: Familiarity | Neighbours | None) -> list[Judgement]:
    judgements = []
    # A line drawn from the model's own validation pictures (Neighbours), else the fixed rules.
    spread_below = getattr(familiarity, "spread_below", None)
    for row, probability in enumerate(probabilities):
        second, best = np.argsort(probability)[-2:]
        confidence = float(probability[best])
        doubt = ""
        if familiarity is not None and distances is not None and distances[row] > familiarity.far_above:
            doubt = "far"
        elif spread_below is not None:
            doubt = "spread" if confidence < spread_below else ""
        elif confidence < SPREAD_BELOW or confidence < SPREAD_RATIO * float(probability[second]):
            doubt = "spread"
        judgements.append(Judgement(int(best), confidence, doubt))
    return judgements


def doubt_in_words(judgement: Judgement, probabilities, class_names: list[str]) -> str:
    """What the page says instead of naming a class."""
    if judgement.doubt == "far":
        known = ", ".join(class_names[:6]) + (f" and {len(class_names) - 6} more" if len(class_names) > 6 else "")
        return f"Not sure: this picture looks unlike the pictures it learned from, so it may not be one of: {known}."
    if judgement.doubt == "spread":
        first, second = np.argsort(-np.asarray(probabilities))[:2]
        return f"Not sure: it could be {class_names[first]} or {class_names[second]}."
    return ""


def sure_in_words(confidence: float) -> str:
    """How sure, written the one way every page writes it: "92 % sure"."""
    return f"{round(100 * confidence)} % sure"
