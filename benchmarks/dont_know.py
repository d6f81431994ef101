"""How well a model says "I don't know" (mlcore/familiarity.py): MNIST-trained networks are shown digits
they never saw, and things that are not digits at all: the 200 flower photos (made grey and 28 x 28, as
the model's input) and random noise.

    .venv/bin/python benchmarks/dont_know.py [--train 12000] [--epochs 4]

One JSON line per network ("dont_know"): the share of each kind of picture the product flags as not
sure (far from the training pictures, or spread over several classes), against the plain baseline of
the same model's top probability below 0.5 (the usual softmax rule); with the digits test accuracy,
and the accuracy on the digits it does not flag. Goal: most non-digits flagged, few digits.
"""
import argparse
import json
import random
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mlcore.familiarity import features_and_probabilities, judge  # noqa: E402
from mlcore.images import decode_image, image_to_array  # noqa: E402
from mlcore.presets import preset_spec  # noqa: E402
from mlcore.serving import fit_familiarity, predict_batch  # noqa: E402
from mlcore.training import TrainingConfig, train_model  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BASELINE_BELOW = 0.5  # the usual rule: not sure when the top probability is under a half


def pictures(archive, names):
    return np.stack([image_to_array(decode_image(archive.read(name)).image, (28, 28), 1) for name in names])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=12000, help="MNIST training pictures")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    shuffle = random.Random(0)
    mnist = zipfile.ZipFile(DATA / "mnist-png.zip")
    names = [name for name in mnist.namelist() if name.endswith(".png")]
    train = [name for name in names if "/train/" in name]
    test = [name for name in names if "/test/" in name]
    shuffle.shuffle(train)
    shuffle.shuffle(test)
    train, val, test = train[:args.train], train[args.train:args.train + 2000], test[:2000]
    label = lambda group: np.array([int(name.split("/")[2]) for name in group])  # noqa: E731
    x_train, x_val, x_test = pictures(mnist, train), pictures(mnist, val), pictures(mnist, test)
    y_train, y_val, y_test = label(train), label(val), label(test)
    flowers_zip = zipfile.ZipFile(DATA / "flowers-mini.zip")
    flowers = pictures(flowers_zip, [name for name in flowers_zip.namelist() if name.endswith(".jpg")])
    noise = np.random.default_rng(0).integers(0, 256, (200, 28, 28, 1), dtype=np.uint8)

    for preset in ("small_cnn", "dense"):
        config = TrainingConfig(spec=preset_spec(preset), image_size=(28, 28), channels=1, num_classes=10,
                                epochs=args.epochs, batch_size=128, learning_rate=0.003, lr_schedule="cosine")
        model = train_model(config, x_train, y_train, x_val, y_val).model
        started = time.perf_counter()
        familiarity = fit_familiarity(model, x_train, y_train, x_val)
        fit_s = time.perf_counter() - started
        both = features_and_probabilities(model)
        figures = {"benchmark": "dont_know", "network": preset, "train_pictures": len(x_train),
                   "fit_seconds": round(fit_s, 2)}
        for kind, x in (("digits", x_test), ("flowers", flowers), ("noise", noise)):
            features = predict_batch(both, x, output=0)
            probabilities = predict_batch(both, x, output=1)
            judgements = judge(probabilities, familiarity.distances(features), familiarity)
            figures[f"{kind}_flagged"] = round(float(np.mean([bool(j.doubt) for j in judgements])), 3)
            figures[f"{kind}_flagged_far"] = round(float(np.mean([j.doubt == "far" for j in judgements])), 3)
            figures[f"{kind}_flagged_baseline"] = round(float((probabilities.max(axis=1) < BASELINE_BELOW).mean()), 3)
            if kind == "digits":
                said = probabilities.argmax(axis=1)
                trusted = np.array([not j.doubt for j in judgements])
                figures["digits_accuracy"] = round(float((said == y_test).mean()), 4)
                figures["digits_accuracy_when_sure"] = round(float((said == y_test)[trusted].mean()), 4)
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
