"""Offline: what a handful of photos a class gives on cached frozen features, without the site's runs.

    .venv/bin/python benchmarks/photos_few_offline.py rows CACHE          # the split, as photos_few.py makes it
    .venv/bin/python benchmarks/photos_few_offline.py features CACHE lite0,lite1,lite2 [VIEWS]
    .venv/bin/python benchmarks/photos_few_offline.py evaluate CACHE lite0[,lite2-2] [WORDS]

`rows` imports the flower zip as photos_few.py does (20 % test, 10 % validation, seeded) and keeps its
manifest. `features` reads, through each EfficientNet-Lite at its own size (squashed, as packed), the 587
test photos once and every photo photos_few.py picks (5, 10 and 20 a class, seeds 0-2) in VIEWS views (12:
whole, the four corner crops and the centre crop at 80 % of the side, each also mirrored; 2: whole and
mirrored; saved as NET-2). `evaluate` fits, for each size and pick, the site's top (Dropout 0.2 and a softmax
layer, Adam at 0.003 along a cosine, batches of 16, 100 epochs; here in numpy), scikit-learn's
LogisticRegression, or the nearest class mean, on the training photos alone (one or two a class held out as
the site does) or on training and validation, and prints the medians on the test photos. WORDS keeps the
methods whose names hold one of these comma-separated words. Results: docs/benchmarks.md, "photos_few".
"""
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
NETS = {"lite0": 224, "lite1": 240, "lite2": 260}


def picks(rows, per_class, seed):
    """The photos photos_few.picked_zip picks, in its order."""
    pool = defaultdict(list)
    for row in sorted(rows, key=lambda row: row["image_id"]):
        if row["split"] != "test":
            pool[row["label"]].append(row)
    rng = np.random.default_rng(seed)
    return [pool[label][i] for label in sorted(pool)
            for i in sorted(rng.choice(len(pool[label]), per_class, replace=False))]


def views(pixels, share=0.8):
    import cv2

    height, width = pixels.shape[:2]
    crop_h, crop_w = round(height * share), round(width * share)
    corners = [(0, 0), (0, width - crop_w), (height - crop_h, 0), (height - crop_h, width - crop_w),
               ((height - crop_h) // 2, (width - crop_w) // 2)]
    found = [pixels] + [cv2.resize(pixels[top:top + crop_h, left:left + crop_w], (width, height),
                                   interpolation=cv2.INTER_LINEAR) for top, left in corners]
    return [view for picture in found for view in (picture, picture[:, ::-1])]


def make_rows(cache):
    from train import fresh_site, import_zip

    _, _, user = fresh_site("few-rows-")
    from datasets_app.versions import freeze, manifest_rows
    from dlsite import storage

    whole = import_zip(user, str(ROOT.parent / "shared/data/flowers-train.zip"), "flowers", test_fraction=0.2,
                       val_fraction=0.1)
    rows = [{"image_id": row["image_id"], "label": row["label"], "split": row["split"],
             "path": str(storage.local_path(row["file"]))} for row in manifest_rows(freeze(whole, user))]
    (cache / "rows.json").write_text(json.dumps(rows))


def make_features(cache, nets, looks):
    import time

    import keras

    from mlcore.builder import build_model
    from mlcore.images import load_model_input
    from mlcore.presets import preset_spec
    from mlcore.serving import predict_batch

    rows = json.loads((cache / "rows.json").read_text())
    test = [row for row in sorted(rows, key=lambda row: row["image_id"]) if row["split"] == "test"]
    pool = sorted({row["image_id"] for per_class in (5, 10, 20) for seed in range(3) for row in picks(rows, per_class, seed)})
    by_id = {row["image_id"]: row for row in rows}
    (cache / "ids.json").write_text(json.dumps({"test": [row["image_id"] for row in test], "pool": pool,
                                                "test_labels": [row["label"] for row in test]}))
    for net in nets:
        size = NETS[net]
        model = build_model(preset_spec(f"efficientnet_{net}"), (size, size, 3), 5, str(cache / "weights"))
        pooled = next(layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D))
        trunk = keras.Model(model.input, pooled.output)

        def load(row, size=size):
            return load_model_input(Path(row["path"]).read_bytes(), (size, size), 3, resize="squash")

        started = time.time()
        pool_features = predict_batch(trunk, np.stack([view for i in pool for view in views(load(by_id[i]))[:looks]]))
        print(net, "pool", round(time.time() - started, 1), "s", flush=True)
        test_features = predict_batch(trunk, np.stack([load(row) for row in test]))
        np.savez(cache / (net if looks == 12 else f"{net}-{looks}"), pool=pool_features.reshape(len(pool), looks, -1),
                 test=test_features)


def site_top(x, y, seed=1337, epochs=100, batch=16, rate=0.003, dropout=0.2, classes=5):
    """Dropout and a softmax layer, Adam along a cosine to 0: the suggested top for few photos, in numpy."""
    rng = np.random.default_rng(seed)
    limit = np.sqrt(6 / (x.shape[1] + classes))
    weights = [rng.uniform(-limit, limit, (x.shape[1], classes)).astype(np.float32), np.zeros(classes, np.float32)]
    first, second = [np.zeros_like(w) for w in weights], [np.zeros_like(w) for w in weights]
    steps = int(np.ceil(len(x) / batch))
    onehot, t = np.eye(classes, dtype=np.float32)[y], 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for step in range(steps):
            chosen = order[step * batch:(step + 1) * batch]
            xb = x[chosen] * (rng.random((len(chosen), x.shape[1])) >= dropout) / (1 - dropout)
            z = xb @ weights[0] + weights[1]
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            g = (p - onehot[chosen]) / len(chosen)
            now = rate * 0.5 * (1 + np.cos(np.pi * t / (epochs * steps)))
            t += 1
            for i, grad in enumerate((xb.T @ g, g.sum(0))):
                first[i] = 0.9 * first[i] + 0.1 * grad
                second[i] = 0.999 * second[i] + 0.001 * grad ** 2
                weights[i] -= now * (first[i] / (1 - 0.9 ** t)) / (np.sqrt(second[i] / (1 - 0.999 ** t)) + 1e-7)
    return lambda f: (f @ weights[0] + weights[1]).argmax(1)


def logreg(x, y):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=3000).fit(x, y).predict


def nearest_mean(x, y):
    def unit(f):
        return f / np.linalg.norm(f, axis=1, keepdims=True)

    means = unit(np.stack([unit(x[y == k]).mean(0) for k in sorted(set(y.tolist()))]))
    return lambda f: (unit(f) @ means.T).argmax(1)


def root_and_length(fit):
    """Tukey's square root and L2 normalisation (to a length of 10) before `fit`."""
    def change(f):
        f = np.sqrt(np.maximum(f, 0))
        return 10 * f / np.linalg.norm(f, axis=1, keepdims=True)

    def fitting(x, y):
        predict = fit(change(x), y)
        return lambda f: predict(change(f))
    return fitting


def held_out(picked, classes):
    """Training and validation as the site takes validation out of train/: one a class at 5 and 10, two at 20."""
    rng = np.random.default_rng(1337)
    train, val = [], []
    for label in classes:
        mine = [row for row in picked if row["label"] == label]
        count = max(1, round(len(mine) * 0.1))
        order = rng.permutation(len(mine))
        val += [mine[i] for i in order[:count]]
        train += [mine[i] for i in order[count:]]
    return train, val


TWO, TWELVE = [0, 1], list(range(12))
METHODS = {
    "top, train, 2 views (before)": (site_top, TWO, False),
    "top, train+val, 2 views": (site_top, TWO, True),
    "top, train, 12 views": (site_top, TWELVE, False),
    "top, train+val, 12 views (now)": (site_top, TWELVE, True),
    "logreg, train+val, 1 view": (logreg, [0], True),
    "logreg, train+val, 2 views": (logreg, TWO, True),
    "logreg, train+val, 12 views": (logreg, TWELVE, True),
    "ncm, train+val, 2 views": (nearest_mean, TWO, True),
    "ncm, train+val, 12 views": (nearest_mean, TWELVE, True),
    "sqrt-l2 logreg, train+val, 2 views": (root_and_length(logreg), TWO, True),
    "sqrt-l2 logreg, train+val, 12 views": (root_and_length(logreg), TWELVE, True),
    "sqrt-l2 top, train+val, 2 views": (root_and_length(site_top), TWO, True),
    "sqrt-l2 top, train+val, 12 views": (root_and_length(site_top), TWELVE, True),
}


def evaluate(cache, nets, words=None):
    rows = json.loads((cache / "rows.json").read_text())
    ids = json.loads((cache / "ids.json").read_text())
    classes = sorted(set(ids["test_labels"]))
    y_test = np.array([classes.index(label) for label in ids["test_labels"]])
    at = {image_id: n for n, image_id in enumerate(ids["pool"])}
    methods = {name: method for name, method in METHODS.items() if not words or any(w in name for w in words)}
    for net in nets:
        saved = np.load(cache / f"{net}.npz")
        pool, test = saved["pool"], saved["test"]
        for per_class in (5, 10, 20):
            for name, (fit, looks, with_val) in methods.items():
                if max(looks) >= pool.shape[1]:
                    continue
                found = []
                for seed in range(3):
                    train, val = held_out(picks(rows, per_class, seed), classes)
                    chosen = train + val if with_val else train
                    x = pool[[at[row["image_id"]] for row in chosen]][:, looks].reshape(-1, pool.shape[-1])
                    y = np.repeat([classes.index(row["label"]) for row in chosen], len(looks))
                    found.append(float((fit(x, y)(test) == y_test).mean()))
                print(f"{net} {per_class:>2} {name:<36} median {statistics.median(found):.3f} mean {np.mean(found):.3f} "
                      f"picks {' '.join(f'{a:.3f}' for a in found)}", flush=True)


if __name__ == "__main__":
    what, cache = sys.argv[1], Path(sys.argv[2])
    cache.mkdir(parents=True, exist_ok=True)
    if what == "rows":
        make_rows(cache)
    elif what == "features":
        make_features(cache, sys.argv[3].split(","), int(sys.argv[4]) if len(sys.argv) > 4 else 12)
    else:
        evaluate(cache, sys.argv[3].split(","), sys.argv[4].split(",") if len(sys.argv) > 4 else None)
