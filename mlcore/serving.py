"""Saving a trained model with what is needed to use it, and predicting with it."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .familiarity import (FIT_PIXELS, MAX_FIT_IMAGES, Familiarity, Judgement, Neighbours,
                          features_and_probabilities, judge)
from .images import image_to_array


@dataclass(frozen=True)
class ModelInfo:
    class_names: list[str]
    image_size: tuple[int, int]  # (height, width)
    channels: int
    resize: str = "squash"  # how pictures of other shapes are made square (options.RESIZE_MODES)

    def to_json(self) -> str:
        return json.dumps({"class_names": self.class_names, "image_size": list(self.image_size),
                           "channels": self.channels, "resize": self.resize}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "ModelInfo":
        data = json.loads(text)
        # Models saved before resize modes existed were all squashed.
        return cls(list(data["class_names"]), tuple(data["image_size"]), int(data["channels"]),
                   data.get("resize", "squash"))


def save_model(model, info: ModelInfo, folder: Path) -> tuple[Path, Path]:
    """Write `model.keras` and, beside it, `model.json` with the class names and input size."""
    folder.mkdir(parents=True, exist_ok=True)
    model_path, info_path = folder / "model.keras", folder / "model.json"
    model.save(model_path)
    info_path.write_text(info.to_json())
    return model_path, info_path


def float32_twin(model, rebuild):
    """The model in float32, for saving: under mixed precision its layers compute in float16, which
    is what a GPU wants and a CPU serving predictions does not. `rebuild()` builds the same network
    afresh (its variables were float32 all along, so the weights copy over exactly). Leaves the
    global policy at float32."""
    import keras

    if keras.mixed_precision.global_policy().name == "float32":
        return model
    keras.mixed_precision.set_global_policy("float32")
    twin = rebuild()
    twin.set_weights(model.get_weights())
    return twin


def with_mirror_average(model, build_shell):
    """`model` answering from each picture and its mirror image together, for when averaging the two did
    better on the validation pictures (training.PartialTrunk.mirror_check). The saved network does it
    itself, so the classify page, the API and every export give the same answers.

    What is averaged is what the output layer reads (the features), which averages its scores before the
    softmax, as the check measures. The mirror image is made by layers every format knows: the width is
    turned to the last axis and multiplied by the reversed identity (exact: each pixel times 1, plus
    zeros), then turned back. `build_shell()` builds the network without its random-change layers
    (builder.build_without_weights), which an export would leave out anyway (formats.without_augmentation)."""
    import keras
    from keras import layers

    from .formats import without_augmentation

    plain = without_augmentation(model, build_shell)
    height, width, channels = plain.input_shape[1:]
    output = plain.get_layer("probabilities")
    features = keras.Model(plain.input, output.input, name="features")
    pixels = keras.Input(shape=(height, width, channels), name="pixels")
    flip = layers.Dense(width, use_bias=False, trainable=False, name="mirror_flip", dtype="float32")
    turned = layers.Permute((1, 3, 2), name="mirror_turn")(pixels)  # (height, channels, width)
    mirrored = layers.Permute((1, 3, 2), name="mirror_back")(flip(turned))
    flip.set_weights([np.eye(width, dtype="float32")[::-1]])
    averaged = layers.Average(name="mirror_average")([features(pixels), features(mirrored)])
    # A new output layer with the trained one's weights: one called in two models has two inputs, and
    # familiarity reads the output layer's input (familiarity.features_and_probabilities).
    probabilities = layers.Dense(output.units, activation="softmax", name="probabilities", dtype="float32")
    answers = probabilities(averaged)
    probabilities.set_weights(output.get_weights())
    return keras.Model(pixels, answers, name=plain.name)


def averages_mirrors(model) -> bool:
    return any(layer.name == "mirror_average" for layer in model.layers)


# Pixels in one batch of a prediction pass: 64 pictures of 224 x 224 (256 small ones at most). Memory
# grows with the batch: EfficientNet-Lite0 at 224 x 224 held 1.4 GB at 64 and 2 GB at 128 compiled.
BATCH_PIXELS = 64 * 224 * 224


def batch_size_for(pixels: np.ndarray) -> int:
    """Pictures a batch: up to 256, fewer for bigger pictures (BATCH_PIXELS)."""
    return max(1, min(256, BATCH_PIXELS // max(1, int(np.prod(pixels.shape[1:3])))))


def predict_batch(model, pixels: np.ndarray, batch_size: int | None = None, on_progress=None,
                  output: int | None = None) -> np.ndarray:
    """The model's outputs (class probabilities) for uint8 images, in batches, through a compiled function.

    Not `predict`, which makes an iterator per call, and not eager calls: called eagerly, Keras kept
    every layer's output of a batch alive, 80 MB a picture for EfficientNet-Lite0 at 224 x 224, and
    a test pass of 256-picture batches was killed for using 21 GB. `on_progress(done, total)` after
    each batch; `output` picks one output of a model that has several."""
    import tensorflow as tf

    if batch_size is None:
        batch_size = batch_size_for(pixels)
    call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    outputs = []
    for start in range(0, len(pixels), batch_size):
        result = call(np.ascontiguousarray(pixels[start:start + batch_size]))
        outputs.append(np.asarray(result if output is None else result[output]))
        if on_progress:
            on_progress(min(start + batch_size, len(pixels)), len(pixels))
    shape = model.output_shape if output is None else model.output_shape[output]
    return np.concatenate(outputs) if outputs else np.zeros((0, *shape[1:]), np.float32)


class Predictor:
    """A loaded model behind a warmed, compiled function: about 1 ms an image on a CPU
    instead of about 50 ms through `model.predict` (see docs/architecture.md)."""

    def __init__(self, model_path: Path, info: ModelInfo, trees_path: Path | None = None):
        import keras
        import tensorflow as tf

        from . import trees

        self.info = info
        # Only files this application wrote are loaded, and never with unsafe
        # deserialisation: a .keras file can carry code.
        self.model = keras.models.load_model(model_path, safe_mode=True, compile=False)
        # With the statistics saved beside it, the model also gives its features, to tell when a
        # picture is unlike what it learned (mlcore/familiarity.py).
        self.familiarity = Familiarity.load(Path(model_path).parent)
        # Boosted trees chosen to answer in place of the output layer (mlcore/trees.py): the network
        # gives its features, the trees the probabilities.
        self.trees = trees.load(trees_path) if trees_path else None
        self._both = bool(self.familiarity or self.trees)
        served = features_and_probabilities(self.model) if self._both else self.model
        height, width = info.image_size
        signature = tf.TensorSpec((None, height, width, info.channels), tf.uint8)
        self._call = tf.function(lambda x: served(x, training=False), input_signature=[signature])
        self._call(tf.zeros((1, height, width, info.channels), tf.uint8))

    def _features_and_probabilities(self, pixels: np.ndarray):
        result = self._call(pixels)
        if not self._both:
            return None, np.asarray(result)
        features, probabilities = np.asarray(result[0]), np.asarray(result[1])
        if self.trees:
            probabilities = self.trees.probabilities(features)
        return features, probabilities

    def predict_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return self._features_and_probabilities(pixels)[1]

    def judge_arrays(self, arrays: list[np.ndarray], batch_size: int = 32) -> tuple[np.ndarray, list[Judgement]]:
        """(probabilities, a judgement of each: its class, how sure, and any doubt) for model inputs."""
        probabilities, judgements = [], []
        for start in range(0, len(arrays), batch_size):
            features, batch = self._features_and_probabilities(np.stack(arrays[start:start + batch_size]))
            distances = self.familiarity.distances(features) if self.familiarity else None
            probabilities.append(batch)
            judgements += judge(batch, distances, self.familiarity, features)
        if not probabilities:
            return np.zeros((0, len(self.info.class_names)), np.float32), []
        return np.concatenate(probabilities), judgements

    def predict_arrays(self, arrays: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Probabilities for model inputs (see image_to_array), a batch at a time: one compiled call
        per batch, and only the small model-sized inputs are stacked, never the decoded pictures."""
        outputs = [self.predict_pixels(np.stack(arrays[start:start + batch_size]))
                   for start in range(0, len(arrays), batch_size)]
        return np.concatenate(outputs) if outputs else np.zeros((0, len(self.info.class_names)), np.float32)

    def predict_image(self, image) -> np.ndarray:
        """Probabilities for one decoded image (see images.decode_image), resized exactly as in training."""
        pixels = image_to_array(image, self.info.image_size, self.info.channels, self.info.resize)
        return self.predict_pixels(pixels[np.newaxis])[0]


def predict_with_features(model, pixels: np.ndarray, on_progress=None) -> tuple[np.ndarray, np.ndarray]:
    """(the features before the output layer, the class probabilities) of each picture, in one pass: when
    the test pictures are also fit_familiarity's held-out ones (fewer than 10 validation pictures), testing
    and familiarity share it. A pass of EfficientNet-Lite0 over 587 test photos took about 30 s on two
    busy cores, a third of a run of 10 photos a class ("photos_few")."""
    import tensorflow as tf

    both = features_and_probabilities(model)
    call = tf.function(lambda x: both(x, training=False), reduce_retracing=True)
    size, features, probabilities = batch_size_for(pixels), [], []
    for start in range(0, len(pixels), size):
        found, probability = call(np.ascontiguousarray(pixels[start:start + size]))
        features.append(np.asarray(found))
        probabilities.append(np.asarray(probability))
        if on_progress:
            on_progress(min(start + size, len(pixels)), len(pixels))
    if not features:
        return (np.zeros((0, *both.output_shape[0][1:]), np.float32), np.zeros((0, *both.output_shape[1][1:]), np.float32))
    return np.concatenate(features), np.concatenate(probabilities)


def fit_familiarity(model, x_train, y_train, x_held_out, seed: int = 0, held_out_features: np.ndarray | None = None,
                    every_feature: np.ndarray | None = None) -> Familiarity | Neighbours | None:
    """What tells, for this model, that a picture is unlike its training pictures (mlcore/familiarity.py):
    nearest neighbours for a model on a pretrained base, class means and a covariance otherwise. None
    without pictures held out to set the line. `held_out_features`: those pictures' features, when
    already found (predict_with_features). `every_feature`: the features (the layer before the output)
    of every training picture, in order, when training already has them (a frozen base:
    training.TrainingOutcome.features): then no pass over the training pictures is needed, and with a
    pretrained base they all vote ("unlike")."""
    if len(x_held_out) < 10:
        return None
    fits = max(1, min(MAX_FIT_IMAGES, FIT_PIXELS // int(np.prod(x_train.shape[1:3]))))
    picked = np.sort(np.random.default_rng(seed).permutation(len(x_train))[:fits])
    if every_feature is not None and len(every_feature) != len(x_train):
        every_feature = None
    both = features_and_probabilities(model)
    train_features = (every_feature[picked] if every_feature is not None
                      else predict_batch(both, x_train[picked], output=0))
    if held_out_features is None:
        held_out_features = predict_batch(both, x_held_out, output=0)
    if has_pretrained_base(model):
        # The output layer alone turns the features into probabilities: no second pass over the pictures.
        held_out_probabilities = np.asarray(model.get_layer("probabilities")(held_out_features))
        return Neighbours.fit(train_features, held_out_features, held_out_probabilities, seed=seed,
                              labels=y_train[picked], voters=every_feature,
                              voter_labels=None if every_feature is None else y_train)
    return Familiarity.fit(train_features, y_train[picked], held_out_features)


def has_pretrained_base(model) -> bool:
    import keras

    from .builder import BASES

    # A model that averages mirror images holds the network as one layer (with_mirror_average).
    return any(layer.name in BASES or (isinstance(layer, keras.Model) and has_pretrained_base(layer))
               for layer in model.layers)
