"""Why a model gave its answer: a heat map over the picture of what the answer was based on.

Grad-CAM (Selvaraju et al., 2017) for networks that keep image-shaped feature maps: the gradient of the
class's score with respect to the last such maps says how much each map matters; the maps weighted so,
summed and cut at zero, say where in the picture the evidence was. For networks with no such maps (Dense
layers straight after the pixels) occlusion instead: a grey patch slides over the picture and where the
class's score drops most is what the answer rested on. The score is the class's log-odds (_log_odds).

Computed on request only (one forward and backward pass a picture; occlusion a few dozen forward passes),
never while classifying. Keras and TensorFlow are imported inside the functions (see builder.py).
"""
from __future__ import annotations

import io
import threading
import weakref

import numpy as np
from PIL import Image

# Occlusion: a patch a quarter of the side, moved by half a patch, gives 7 x 7 = 49 pictures to classify.
OCCLUSION_PATCH_SHARE = 4
OCCLUSION_GREY = 128
# An overlay is at least this wide, so a map over a 28 x 28 picture can be seen.
MIN_OVERLAY_SIDE = 224
OVERLAY_OPACITY = 0.45

COLOURS_IN_WORDS = ("Red: what the answer was based on most; yellow and green: less; "
                    "blue: what it hardly looked at.")

_MAP_LAYERS = ("Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose",
               "MaxPooling2D", "AveragePooling2D")


def heat_map(model, pixels_uint8: np.ndarray, class_index: int, answer_from_features=None) -> np.ndarray:
    """(height, width) float32 in 0..1 over the model's input: 1 where the answer `class_index` drew most
    from. `pixels_uint8`: one model input, (height, width, channels), as the model takes it.

    `answer_from_features`: when something else than the network's output layer gives the answer (boosted
    trees on its features, mlcore/trees.py), the function from the features (the output layer's input) to
    the class probabilities. The map is then by occlusion through it: no gradient flows through trees, and
    the network's own gradient would explain the network's answer, not the one given."""
    pixels = np.asarray(pixels_uint8, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[..., np.newaxis]
    parts = None if answer_from_features else _parts_for(model)
    if parts is None:
        heat = occlusion_map(model, pixels, class_index, answer_from_features)
    else:
        heat = _grad_cam(parts, pixels, class_index)
    return _normalised(heat)


def method_of(model, answer_from_features=None) -> str:
    """"grad-cam" or "occlusion": which heat_map uses for `model` (and `answer_from_features`)."""
    return "occlusion" if answer_from_features or _parts_for(model) is None else "grad-cam"


# A served model is loaded once and kept (predict_app.services): the models built from it here are
# kept with it, and go when it goes.
_built: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_built_lock = threading.Lock()


def _parts_for(model):
    with _built_lock:
        if model not in _built:
            _built[model] = _grad_cam_parts(model)
        return _built[model]


# ---------------------------------------------------------------------------------------------
# Grad-CAM


def _makes_maps(layer) -> bool:
    """A convolution or pooling layer, or a nested network (a pretrained base) holding one. Not the
    random-change layers nor the pixel scaling, which keep the picture's shape without looking at it."""
    import keras

    if type(layer).__name__ in _MAP_LAYERS:
        return True
    return isinstance(layer, keras.Model) and any(_makes_maps(inner) for inner in layer.layers)


def _last_map_layer(network):
    """The last layer of `network` (top level) whose output is image-shaped (4-D), from the first layer that
    makes maps on; None when nothing in it makes maps (a dense-only network), or when its last maps are a
    single pixel, which cannot say where anything is (a pretrained base given 32 x 32 pictures). A
    pretrained base called as one layer counts with its output, which is its last convolution's maps."""
    seen_maps, found = False, None
    for layer in network.layers:
        seen_maps = seen_maps or _makes_maps(layer)
        if seen_maps and len(_output_shape(layer)) == 4:
            found = layer
    if found is not None and (_output_shape(found)[1] or 0) * (_output_shape(found)[2] or 0) <= 1:
        return None
    return found


def _output_in(network, layer):
    """The layer's output in `network`'s graph. A nested network's own `output` is the tensor of its
    inner graph, which `network` is not built from; the node that calls it in `network` gives the right
    one."""
    for nodes in getattr(network, "_nodes_by_depth", {}).values():
        for node in nodes:
            if node.operation is layer and node.output_tensors:
                return node.output_tensors[0]
    return layer.output


def _output_shape(layer) -> tuple:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):  # a layer called more than once has no single output
        return ()
    return tuple(shape)


def _output_layer(model):
    """The output layer (builder: Dense "probabilities", softmax), when the model has one with weights."""
    names = [layer.name for layer in model.layers]
    layer = model.get_layer("probabilities") if "probabilities" in names else None
    return layer if layer is not None and getattr(layer, "kernel", None) is not None else None


def _log_odds(values, class_index: int, from_features: bool, output):
    """How much the model favours the class: log(p / (1 - p)), from the scores before the softmax when
    the output layer is known. Not the probability itself: a network sure of its answer gives 1.0 for
    every small change of the picture, and neither a gradient nor a drop would show anything."""
    import keras

    ops = keras.ops
    if from_features:
        scores = ops.matmul(values, ops.cast(output.kernel, values.dtype)) + ops.cast(output.bias, values.dtype)
    else:
        scores = ops.log(ops.clip(values, 1e-12, 1.0))
    mask = ops.one_hot(class_index, scores.shape[-1], dtype=scores.dtype)
    others = ops.where(mask > 0, -1e9, scores)
    return ops.sum(scores * mask, axis=-1) - ops.logsumexp(others, axis=-1)


def _grad_cam_parts(model):
    """What _grad_cam needs, or None for occlusion: a compiled function of the pixels and the class giving
    [the feature maps of each pass] and their gradients (_with_gradients); and whether each pass saw the
    picture mirrored.

    A model that averages each picture with its mirror image (serving.with_mirror_average) calls its
    network ("features") twice. Its answer comes from both, so its map does too: the two passes' maps,
    the mirrored one flipped back, added. The network alone on the picture would explain an answer
    the model never gave."""
    import keras

    output = _output_layer(model)
    if output is not None and any(layer.name == "mirror_average" for layer in model.layers):
        features = model.get_layer("features")
        target = _last_map_layer(features)
        if target is None:
            return None
        inner = keras.Model(features.inputs, [_output_in(features, target), features.outputs[0]])

        def both(x, class_index):
            straight_maps, straight = inner(x, training=False)
            mirror_maps, mirrored = inner(x[:, :, ::-1, :], training=False)
            return [straight_maps, mirror_maps], _log_odds((straight + mirrored) / 2, class_index, True, output)

        return _with_gradients(both, model.input_shape[1:]), [False, True]
    target = _last_map_layer(model)
    if target is None:
        return None
    inner = keras.Model(model.inputs, [_output_in(model, target), output.input if output is not None else model.outputs[0]])

    def once(x, class_index):
        maps, values = inner(x, training=False)
        return [maps], _log_odds(values, class_index, output is not None, output)

    return _with_gradients(once, model.input_shape[1:]), [False]


def _with_gradients(call, input_shape):
    """`call` compiled with the gradient of its score with respect to its maps: a picture of
    EfficientNet-Lite0 at 224 x 224 took about 0.5 s run eagerly on a busy CPU."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((1, *input_shape), tf.float32), tf.TensorSpec((), tf.int32)])
    def maps_and_gradients(x, class_index):
        with tf.GradientTape() as tape:
            # Watching the input records every operation, those of a frozen base too (whose weights,
            # not being trained, the tape would otherwise ignore).
            tape.watch(x)
            maps, score = call(x, class_index)
        return maps, tape.gradient(score, maps)

    return maps_and_gradients


def _grad_cam(parts, pixels: np.ndarray, class_index: int) -> np.ndarray:
    call, mirrored = parts
    height, width = pixels.shape[:2]
    maps, gradients = call(pixels[np.newaxis].astype(np.float32), np.int32(class_index))
    total = np.zeros((height, width), np.float32)
    for found, gradient, flip in zip(maps, gradients, mirrored):
        if gradient is None:
            continue
        found, gradient = np.asarray(found, np.float32)[0], np.asarray(gradient, np.float32)[0]
        weights = gradient.mean(axis=(0, 1))  # how much each map matters to this class
        cam = np.maximum((found * weights).sum(axis=-1), 0)
        cam = _resized(cam, height, width)
        total += cam[:, ::-1] if flip else cam
    return total


def _resized(values: np.ndarray, height: int, width: int) -> np.ndarray:
    if values.shape == (height, width):
        return values.astype(np.float32)
    return np.asarray(Image.fromarray(values.astype(np.float32), mode="F").resize((width, height),
                                                                                   Image.Resampling.BILINEAR))


# ---------------------------------------------------------------------------------------------
# Occlusion


def occlusion_map(model, pixels: np.ndarray, class_index: int, answer_from_features=None) -> np.ndarray:
    """How much the class's log-odds (_log_odds) drop when a grey patch hides each part of the picture
    (not normalised). Every covered picture is classified in one batch of at most 64; with
    `answer_from_features` (see heat_map), by it on the network's features."""
    from .serving import predict_batch

    height, width = pixels.shape[:2]
    patch_h, patch_w = (max(1, -(-side // OCCLUSION_PATCH_SHARE)) for side in (height, width))
    step_h, step_w = max(1, patch_h // 2), max(1, patch_w // 2)
    boxes = [(top, left) for top in _starts(height, patch_h, step_h) for left in _starts(width, patch_w, step_w)]
    covered = np.repeat(pixels[np.newaxis], len(boxes) + 1, axis=0)
    for number, (top, left) in enumerate(boxes, start=1):
        covered[number, top:top + patch_h, left:left + patch_w] = OCCLUSION_GREY
    output = _output_layer(model)
    if answer_from_features is not None:
        import keras

        features = predict_batch(keras.Model(model.inputs, model.get_layer("probabilities").input), covered,
                                 batch_size=64)
        odds = np.asarray(_log_odds(np.asarray(answer_from_features(features), np.float32), class_index, False, None))
    elif output is not None:
        import keras

        features = predict_batch(keras.Model(model.inputs, output.input), covered, batch_size=64)
        odds = np.asarray(_log_odds(features, class_index, True, output))
    else:
        odds = np.asarray(_log_odds(predict_batch(model, covered, batch_size=64), class_index, False, None))
    drops = np.maximum(odds[0] - odds[1:], 0)
    total, counts = np.zeros((height, width), np.float32), np.zeros((height, width), np.float32)
    for drop, (top, left) in zip(drops, boxes):
        total[top:top + patch_h, left:left + patch_w] += drop
        counts[top:top + patch_h, left:left + patch_w] += 1
    return total / np.maximum(counts, 1)


def _starts(side: int, patch: int, step: int) -> list[int]:
    starts = list(range(0, max(1, side - patch + 1), step))
    if starts[-1] + patch < side:  # the last patch reaches the edge
        starts.append(side - patch)
    return starts


def _normalised(heat: np.ndarray) -> np.ndarray:
    heat = np.nan_to_num(np.asarray(heat, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    heat = np.maximum(heat, 0)
    top = float(heat.max()) if heat.size else 0.0
    return heat / top if top > 0 else np.zeros_like(heat)


# ---------------------------------------------------------------------------------------------
# Drawing it


# The colour map's stops, from 0 to 1: blue, cyan, green, yellow, red.
_STOPS = [0.0, 0.25, 0.5, 0.75, 1.0]
_STOP_COLOURS = np.array([[0, 0, 255], [0, 255, 255], [0, 255, 0], [255, 255, 0], [255, 0, 0]], np.float32)


def colours(heat: np.ndarray) -> np.ndarray:
    """(height, width, 3) uint8: blue for 0, through cyan, green and yellow, to red for 1 (written out, so
    that no plotting library is needed)."""
    heat = np.clip(np.asarray(heat, np.float32), 0, 1)
    channels = [np.interp(heat, _STOPS, _STOP_COLOURS[:, channel]) for channel in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def overlay(pixels: np.ndarray, heat: np.ndarray) -> bytes:
    """A PNG of the picture with the heat map's colours blended over it, at least MIN_OVERLAY_SIDE wide."""
    pixels = np.asarray(pixels, dtype=np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    picture = Image.fromarray(pixels).convert("RGB")
    height, width = pixels.shape[:2]
    scale = max(1, -(-MIN_OVERLAY_SIDE // max(1, width)))
    if scale > 1:
        picture = picture.resize((width * scale, height * scale), Image.Resampling.NEAREST)
    heat = _resized(np.asarray(heat, np.float32), picture.height, picture.width)
    blended = (np.asarray(picture, np.float32) * (1 - OVERLAY_OPACITY)
               + colours(heat).astype(np.float32) * OVERLAY_OPACITY)
    buffer = io.BytesIO()
    Image.fromarray(blended.round().clip(0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()
