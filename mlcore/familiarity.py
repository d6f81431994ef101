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
percentile of the validation pictures; "spread" is a top probability below that of the least sure
SPREAD_SHARE % of the validation pictures (never above SPREAD_BELOW), without the ratio rule; and
"unlike" is an answer that the VOTERS nearest training pictures mostly vote against (their classes,
the nearer weighing more), with the line drawn so that the three together flag at most FLAG_SHARE % of
the validation pictures. The vote is there for the model's own mistakes: on the flowers most are
photos it is sure of, which no line on the top probability catches without flagging many right answers.
Measured on that model through the worker (benchmarks/dont_know_photos.py; docs/benchmarks.md, "I don't
know on photos"), before the vote: 99.3 % of 274 pictures of other things flagged (all the noise,
textures, drawings, text and digits; 12 of 14 crops of a real temple photo that no tuning saw), for
2.9 % of the 587 test flowers and 5 of its 38 wrong answers. With the vote, offline on that run's saved
features (300 training photos kept, three seeds): 98.9 to 99.6 % of the pictures of other things, 3.6
to 4.9 % of the test flowers and 21 to 37 % of the wrong answers (8 to 14 of 38). Half of the wrong
answers at 5 % of the flowers was not reached by any rule tried (docs/benchmarks.md).
When training hands over the features of every training picture (a frozen base), all of them vote, and far
and the share move (EVERY_NEAR_PERCENTILE, EVERY_FLAG_SHARE). Through the worker on the same model: 98.2 % of
the pictures of other things (11 of the 14 temple crops), 4.3 % of the test flowers, 14 of the 38 wrong
answers (13 by the vote); before, 99.3 %, 4.3 % and 10 of 38. Half of the wrong answers is still not reached:
even ranking the test flowers themselves and flagging exactly 5 % of them, no score tried catches more than
17 to 19 of the 38.
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
# than it finds mistakes: the least sure 3 % of validation photos flagged 4.8 % of the test flowers. With
# the vote the far line moved from 97.5 to 98.5: the flowers it no longer flags are room for the vote,
# which finds more mistakes (the made-up pictures stay flagged: 98.9 % and more).
NEIGHBOURS = 5
NEAR_PERCENTILE = 98.5
SPREAD_SHARE = 1.0
# The vote ("unlike", see Neighbours.vote): the VOTERS nearest kept training pictures, each weighing
# exp(cosine similarity / VOTE_WARMTH), so that the nearest count most; the line is drawn so that far, spread
# and the vote together flag at most FLAG_SHARE % of the held-out pictures. Measured offline on the flower
# model (docs/benchmarks.md): with the 300 photos kept, far at the 98.5th percentile and the vote, 4.4 % of
# the test flowers and 27 % of the wrong answers flagged (seeds 0-2) against 3.2 % and 13 % before.
VOTERS = 10
VOTE_WARMTH = 0.05
FLAG_SHARE = 4.5
MAX_KEPT = 1000  # training pictures whose features are kept beside the model (float16): 2.5 MB at 1,280
# When training already looked at every training picture (a frozen base: training.FrozenTrunk), the vote asks
# all of them rather than the few hundred kept for "far": the nearest of 2,049 flower photos are nearer, and
# know their class better, than the nearest of 300 (docs/benchmarks.md, "The vote of every training photo").
# At most MAX_VOTERS, in float16: 5.2 MB for 2,049 photos at 1,280 features. That sharper vote gets more of
# the room: far's line moves out to the EVERY_NEAR_PERCENTILE-th percentile (far flagged mostly right answers:
# 8 of 10 test flowers on the suggested model) and the three together flag at most EVERY_FLAG_SHARE % of the
# held-out pictures. Offline on the suggested flower model, six picks of the 300 kept for far: 4.3 to 4.4 % of
# the test flowers and 34 to 37 % of the wrong answers flagged, 97 to 99 % of the pictures of other things
# (the 300 voting, at 98.5 and 4.5: 3.6 to 5.6 % and 21 to 37 %).
MAX_VOTERS = 4000
EVERY_NEAR_PERCENTILE = 99.5
EVERY_FLAG_SHARE = 4.0


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
                # Files written before the vote have no labels: they judge by far and spread alone.
                voting = "labels" in data.files
                # Files without voters (before every training picture voted): the kept pictures vote.
                return Neighbours(data["kept"], float(data["far_above"]), int(data["k"]),
                                  float(data["spread_below"]), data["labels"] if voting else None,
                                  float(data["vote_above"]) if voting else float("inf"),
                                  data["voters"] if "voters" in data.files else None)
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


def _against(shares: np.ndarray, answers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From the vote's shares (Neighbours.votes): the share against each answer, and the class other than
    the answer with the most of the vote."""
    answers = np.asarray(answers)
    rows = np.arange(len(shares))
    inside = answers < shares.shape[1]  # a class with no kept picture gets no vote
    answered = np.minimum(answers, shares.shape[1] - 1)
    against = 1.0 - np.where(inside, shares[rows, answered], 0.0)
    others = shares.copy()
    others[rows[inside], answered[inside]] = -1.0
    return against, others.argmax(axis=1)


@dataclass
class Neighbours:
    """For models on a pretrained base: how far a picture's features are, in angle, from the training
    pictures nearest to it (see the module's docstring)."""
    kept: np.ndarray  # (pictures, features): training pictures' features scaled to length 1, float16
    far_above: float  # cosine distance to the k-th nearest beyond which a picture is far
    k: int = NEIGHBOURS
    spread_below: float = SPREAD_BELOW  # a top probability under this is "spread"
    labels: np.ndarray | None = None  # each voter's class; None (files before the vote): no vote
    vote_above: float = float("inf")  # a share of the vote against the model's answer beyond which it is doubted
    # The training pictures that vote (scaled to length 1, float16), when not the kept ones: every training
    # picture when training had looked at them all (see MAX_VOTERS); None: the kept pictures vote.
    voters: np.ndarray | None = None

    def __post_init__(self):
        # The kept pictures and the voters in float32, made once rather than for each picture served.
        self._kept32 = self._voters32 = None

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Each picture's cosine distance (0 the same direction, 2 the opposite) to its k-th nearest
        kept training picture."""
        if self._kept32 is None:
            self._kept32 = self.kept.astype(np.float32)
        similar = _unit(features) @ self._kept32.T
        k = min(self.k, similar.shape[1])
        return np.maximum(1.0 - np.partition(similar, -k, axis=1)[:, -k], 0.0)

    def votes(self, features: np.ndarray) -> np.ndarray:
        """(pictures, classes): each class's share of the vote of the picture's VOTERS nearest kept
        training pictures, the nearer weighing more. Needs the labels."""
        if self._voters32 is None:
            self._voters32 = (self.kept if self.voters is None else self.voters).astype(np.float32)
        similar = (self._voters32 @ _unit(features).T).T
        voters = min(VOTERS, similar.shape[1])
        nearest = np.argpartition(-similar, voters - 1, axis=1)[:, :voters]
        closeness = np.take_along_axis(similar, nearest, axis=1)
        weights = np.exp((closeness - closeness.max(axis=1, keepdims=True)) / VOTE_WARMTH)
        shares = np.zeros((len(similar), int(self.labels.max()) + 1))
        np.add.at(shares, (np.arange(len(similar))[:, None], self.labels[nearest]), weights)
        return shares / shares.sum(axis=1, keepdims=True)

    def vote(self, features: np.ndarray, answers: np.ndarray) -> np.ndarray:
        """Each picture's share (0 to 1) of the vote that goes to classes other than the model's answer:
        most wrong answers on the flowers were sure ones, but the training photos nearest to them were
        mostly of another class."""
        return _against(self.votes(features), answers)[0]

    def save(self, folder: Path) -> Path:
        path = Path(folder) / FILE_NAME
        extra = {} if self.labels is None else {"labels": self.labels.astype(np.int32),
                                                 "vote_above": np.float64(self.vote_above)}
        if self.voters is not None:
            extra["voters"] = self.voters.astype(np.float16)
        np.savez(path, kept=self.kept.astype(np.float16), far_above=np.float32(self.far_above),
                 k=np.int32(self.k), spread_below=np.float32(self.spread_below), **extra)
        return path

    @classmethod
    def fit(cls, features: np.ndarray, held_out: np.ndarray, held_out_probabilities: np.ndarray,
            seed: int = 0, labels: np.ndarray | None = None, voters: np.ndarray | None = None,
            voter_labels: np.ndarray | None = None) -> "Neighbours | None":
        """Keep (at most MAX_KEPT of) the training features, and their labels when given; draw the "far"
        line, the "spread" line and the vote's line from pictures training did not see; None when the
        features are all zero. With `voters` and `voter_labels` (the features and classes of every training
        picture, at most MAX_VOTERS of them kept) those vote instead of the kept pictures."""
        features = np.asarray(features, np.float32)
        if labels is not None:
            labels = np.asarray(labels, np.int32)
        if len(features) > MAX_KEPT:
            picked = np.sort(np.random.default_rng(seed).permutation(len(features))[:MAX_KEPT])
            features, labels = features[picked], (None if labels is None else labels[picked])
        if not len(features) or not np.abs(features).max() > 0:
            return None
        if voters is not None and len(voters) and voter_labels is not None:
            voters, labels = np.asarray(voters, np.float32), np.asarray(voter_labels, np.int32)
            if len(voters) > MAX_VOTERS:
                picked = np.sort(np.random.default_rng(seed).permutation(len(voters))[:MAX_VOTERS])
                voters, labels = voters[picked], labels[picked]
            voters = _unit(voters).astype(np.float16)
        else:
            voters = None
        neighbours = cls(_unit(features).astype(np.float16), 0.0, min(NEIGHBOURS, len(features)), labels=labels,
                         voters=voters)
        held_out_probabilities = np.asarray(held_out_probabilities)
        distances = neighbours.distances(held_out)
        near, share = (NEAR_PERCENTILE, FLAG_SHARE) if voters is None else (EVERY_NEAR_PERCENTILE, EVERY_FLAG_SHARE)
        neighbours.far_above = float(np.percentile(distances, near))
        tops = held_out_probabilities.max(axis=1)
        neighbours.spread_below = float(min(SPREAD_BELOW, np.percentile(tops, SPREAD_SHARE)))
        if labels is not None:
            # The lowest line at which far, spread and the vote together flag at most `share` % of the
            # held-out pictures (the shares are steps: try each value the held-out pictures reach).
            flagged = (distances > neighbours.far_above) | (tops < neighbours.spread_below)
            against = neighbours.vote(held_out, held_out_probabilities.argmax(axis=1))
            allowed = int(np.floor(share / 100 * len(tops)))
            for line in np.unique(against)[::-1]:
                if (flagged | (against >= line)).sum() > allowed:
                    break
                neighbours.vote_above = float(np.nextafter(line, -np.inf))  # flagged: against > vote_above
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
    # "" when the answer can be trusted; "far", "spread" or "unlike" (the nearest training pictures are of
    # another class: Neighbours.vote) otherwise
    doubt: str
    looks_like: int | None = None  # for "unlike": the class the nearest training pictures are of


def judge(probabilities: np.ndarray, distances: np.ndarray | None,
          familiarity: Familiarity | Neighbours | None, features: np.ndarray | None = None) -> list[Judgement]:
    """Each answer and its doubt. `features` (the layer before the output) let a model with labelled
    neighbours (Neighbours with labels) also doubt an answer its nearest training pictures vote against."""
    judgements = []
    # A line drawn from the model's own validation pictures (Neighbours), else the fixed rules.
    spread_below = getattr(familiarity, "spread_below", None)
    against = looks_like = None
    if features is not None and getattr(familiarity, "labels", None) is not None and len(probabilities):
        against, looks_like = _against(familiarity.votes(features), np.asarray(probabilities).argmax(axis=1))
    for row, probability in enumerate(probabilities):
        second, best = np.argsort(probability)[-2:]
        confidence = float(probability[best])
        doubt, like = "", None
        if familiarity is not None and distances is not None and distances[row] > familiarity.far_above:
            doubt = "far"
        elif spread_below is not None:
            doubt = "spread" if confidence < spread_below else ""
        elif confidence < SPREAD_BELOW or confidence < SPREAD_RATIO * float(probability[second]):
            doubt = "spread"
        if not doubt and against is not None and against[row] > familiarity.vote_above:
            doubt, like = "unlike", int(looks_like[row])
        judgements.append(Judgement(int(best), confidence, doubt, like))
    return judgements


def doubt_in_words(judgement: Judgement, probabilities, class_names: list[str]) -> str:
    """What the page says instead of naming a class."""
    if judgement.doubt == "far":
        known = ", ".join(class_names[:6]) + (f" and {len(class_names) - 6} more" if len(class_names) > 6 else "")
        return f"Not sure: this picture looks unlike the pictures it learned from, so it may not be one of: {known}."
    if judgement.doubt == "spread":
        first, second = np.argsort(-np.asarray(probabilities))[:2]
        return f"Not sure: it could be {class_names[first]} or {class_names[second]}."
    if judgement.doubt == "unlike":
        like = judgement.looks_like if judgement.looks_like is not None else int(np.argsort(-np.asarray(probabilities))[1])
        return (f"Not sure: it looks most like the training pictures of {class_names[like]}, "
                f"not those of {class_names[judgement.best]}.")
    return ""


def doubt_rule_in_words(unsure_below: float | None = None) -> str:
    """judge()'s "not sure" rule in plain words, written here once so that every page says it the same
    way. `unsure_below`: a line of the owner's own (the many-pictures page's "Not sure below"), which
    adds a rule of its own to the model's."""
    rules = [
        ("the picture looks unlike the pictures it learned from (further from them than nearly all of its "
         "validation pictures are)"),
        ("its answer is split between classes: less than half of the probability on its first choice, or less than "
         "twice the second's (a model that drew its own line from its validation pictures uses that line instead, "
         "never above half)"),
        "the training pictures most like it are mostly of another class",
    ]
    if unsure_below is not None:
        rules.append(f"it is less than {round(100 * unsure_below)} % sure (the line you can set here)")
    return ("A model always picks one of the classes it knows. It says “not sure” instead when "
            + "; when ".join(rules[:-1]) + "; or when " + rules[-1] + ".")


def sure_in_words(confidence: float) -> str:
    """How sure, written the one way every page writes it: "92 % sure"."""
    return f"{round(100 * confidence)} % sure"
