"""Heat maps of what an answer was based on (mlcore/explain.py), on a case where the answer is known to
depend on one corner: pictures of noise are of class "bright" when their top-left corner is bright. Grad-CAM
for a convolutional network, on it alone and inside a model that averages mirror images; occlusion for a
network of Dense layers only."""
import io

import numpy as np
import pytest
from PIL import Image

from mlcore.builder import build_model, build_without_weights
from mlcore.explain import colours, heat_map, method_of, overlay

SIDE = 32
CORNER = 10
CONV_SPEC = {"layers": [{"type": "Conv2D", "filters": 8}, {"type": "MaxPooling2D"},
                        {"type": "Conv2D", "filters": 8}, {"type": "GlobalAveragePooling2D"}], "base": None}
DENSE_SPEC = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 16}], "base": None}


def corner_pictures(count, seed):
    """(pictures, labels): noise from 0 to 100; label 1 ("bright") when the top-left corner is 255."""
    rng = np.random.default_rng(seed)
    pictures = rng.integers(0, 100, (count, SIDE, SIDE, 3)).astype(np.uint8)
    labels = np.arange(count) % 2
    pictures[labels == 1, :CORNER, :CORNER] = 255
    return pictures, labels


def trained(spec, epochs):
    import keras

    keras.utils.set_random_seed(0)
    model = build_model(spec, (SIDE, SIDE, 3), 2)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    pictures, labels = corner_pictures(200, seed=0)
    model.fit(pictures, labels, epochs=epochs, batch_size=20, verbose=0)
    test, test_labels = corner_pictures(40, seed=1)
    accuracy = (model.predict(test, verbose=0).argmax(axis=1) == test_labels).mean()
    assert accuracy >= 0.95, f"the network did not learn the corner ({accuracy:.0%}): the test would prove nothing"
    return model


@pytest.fixture(scope="module")
def conv_model():
    return trained(CONV_SPEC, epochs=6)


@pytest.fixture(scope="module")
def dense_model():
    return trained(DENSE_SPEC, epochs=6)


def quadrant_shares(heat):
    half = SIDE // 2
    total = heat.sum()
    return {"top left": heat[:half, :half].sum() / total, "top right": heat[:half, half:].sum() / total,
            "bottom left": heat[half:, :half].sum() / total, "bottom right": heat[half:, half:].sum() / total}


def assert_mostly_top_left(model, method):
    assert method_of(model) == method
    pictures, labels = corner_pictures(6, seed=2)
    for picture in pictures[labels == 1]:
        heat = heat_map(model, picture, 1)
        assert heat.shape == (SIDE, SIDE) and heat.dtype == np.float32
        assert heat.min() >= 0 and heat.max() == pytest.approx(1.0)
        shares = quadrant_shares(heat)
        assert shares["top left"] > 0.5 and all(shares["top left"] > 2 * share for name, share in shares.items()
                                                if name != "top left"), shares


def test_grad_cam_of_a_conv_net_falls_on_the_corner_the_answer_depends_on(conv_model):
    assert_mostly_top_left(conv_model, "grad-cam")


def test_occlusion_of_a_dense_network_falls_on_the_corner_the_answer_depends_on(dense_model):
    assert_mostly_top_left(dense_model, "occlusion")


def test_a_model_averaging_mirror_images_is_explained_by_both_passes_flipped_back(conv_model):
    """Its answer comes from the picture and its mirror image: the mirror pass's map, flipped back, lands on
    the same corner, and the map is the one of the answer the model gives."""
    from mlcore.serving import with_mirror_average

    averaging = with_mirror_average(conv_model, lambda: build_without_weights(CONV_SPEC, (SIDE, SIDE, 3), 2))
    assert_mostly_top_left(averaging, "grad-cam")


def test_a_pretrained_base_is_explained_from_its_last_maps_when_they_say_where():
    """A base is one layer of the model (a nested network) whose output is its last convolution's maps:
    2 x 2 for EfficientNet-Lite0 at 64 x 64. At 32 x 32 they are one pixel, which says nothing of where:
    occlusion then."""
    spec = {"layers": [{"type": "GlobalAveragePooling2D"}], "base": {"name": "efficientnet_lite0", "fine_tune_layers": 0}}
    for side, method in [(64, "grad-cam"), (32, "occlusion")]:
        model = build_without_weights(spec, (side, side, 3), 3)
        assert method_of(model) == method
        heat = heat_map(model, np.random.default_rng(3).integers(0, 255, (side, side, 3)).astype(np.uint8), 2)
        assert heat.shape == (side, side) and 0 <= heat.min() and heat.max() <= 1


def test_a_picture_with_nothing_to_show_gives_an_empty_map_not_a_division_by_zero(dense_model):
    """Occlusion of a picture that is all grey already changes nothing: every drop is 0."""
    heat = heat_map(dense_model, np.full((SIDE, SIDE, 3), 128, np.uint8), 1)
    assert heat.shape == (SIDE, SIDE) and not heat.any()


def test_the_overlay_is_a_png_of_the_picture_enlarged_with_red_where_the_map_is_high():
    picture = np.zeros((28, 28, 1), np.uint8)
    heat = np.zeros((28, 28), np.float32)
    heat[:7, :7] = 1
    image = Image.open(io.BytesIO(overlay(picture, heat)))
    assert image.format == "PNG" and image.mode == "RGB" and image.size == (224, 224)
    red, green, blue = np.asarray(image)[10, 10].astype(int)
    assert red > 100 and green < 20 and blue < 20  # red over the hot corner
    red, green, blue = np.asarray(image)[200, 200].astype(int)
    assert blue > 40 and red < 20  # blue where it hardly looked
    assert colours(np.array([0.0, 0.5, 1.0])).tolist() == [[0, 0, 255], [0, 255, 0], [255, 0, 0]]


def test_boosted_trees_answering_for_the_network_are_explained_by_occlusion_through_them(conv_model):
    """When trees chosen for a run answer (mlcore/trees.py), the map is of their answer: the covered pictures'
    features go through the trees, and the corner the trees' answer rests on is found."""
    import keras

    from mlcore.trees import fit

    features_of = keras.Model(conv_model.inputs, conv_model.get_layer("probabilities").input)
    pictures, labels = corner_pictures(200, seed=3)
    held, held_labels = corner_pictures(60, seed=4)
    trees = fit(features_of.predict(pictures, verbose=0), labels, features_of.predict(held, verbose=0), held_labels, 2)
    assert trees.accuracy(features_of.predict(held, verbose=0), held_labels) >= 0.95  # else the test proves nothing
    assert method_of(conv_model, trees.probabilities) == "occlusion"
    for picture in corner_pictures(6, seed=5)[0][1::2]:  # the bright ones
        shares = quadrant_shares(heat_map(conv_model, picture, 1, trees.probabilities))
        assert shares["top left"] > 0.5, shares
