"""How well a photo model says "I don't know" (mlcore/familiarity.py, Neighbours: far, spread, and the vote
of the nearest training photos, "unlike"): the suggested flower model is shown its test photos and pictures
of other things.

    .venv/bin/python benchmarks/dont_know_photos.py [ZIP]

ZIP defaults to ../shared/data/flowers-train.zip, imported as benchmarks/photos.py imports it (a
stratified, seeded 20 % held out as test, 10 % for validation) and trained through the worker with the
suggested settings unchanged (benchmarks/train.py's press_train). The unfamiliar pictures are made
here or ship with installed packages: random noise, stripes and checks, drawn shapes, typed text,
scikit-learn's 8 x 8 digits, MNIST digits (../shared/data/mnist-png.zip), and, kept out of all tuning
as a check, crops of scikit-learn's sample photo china.jpg (a temple). scikit-learn's flower.jpg is a
flower, though of none of the five kinds: it is reported on its own and counted nowhere.

One JSON line ("dont_know_photos"): the share of the unfamiliar pictures flagged (goal >= 0.90), of
the test flowers (goal <= 0.05) and of the model's wrong answers (goal >= 0.5), each by kind, with
the same figures for two baselines on the same model in the same run: the rules before (the
Mahalanobis distance to the nearest class mean at the 99th percentile, and the top probability under
0.5 or under twice the second: "baseline_before"), and the plain softmax rule (top probability under
0.5: "baseline_softmax"). The data folder is removed at the end, and kept when the run failed.
"""
import argparse
import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import ROOT, fresh_site, import_zip, product_run, start_worker, stop_worker  # noqa: E402  (the same harness)

DATA = ROOT.parent / "shared" / "data"
GOALS = {"unfamiliar_flagged": (">=", 0.90), "test_flagged": ("<=", 0.05), "wrong_flagged": (">=", 0.5)}
SOFTMAX_BELOW = 0.5


def made_pictures(seed=0):
    """(kind, picture) for pictures of other things, as Pillow images or uint8 arrays of any size."""
    import cv2
    from PIL import Image, ImageDraw
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    side = 224
    made = []
    for _ in range(30):
        made.append(("noise", rng.integers(0, 256, (side, side, 3), dtype=np.uint8)))
    for _ in range(20):  # smooth noise: blobs of colour
        small = rng.normal(128, 60, (56, 56, 3)).clip(0, 255).astype(np.uint8)
        made.append(("noise", cv2.resize(small, (side, side), interpolation=cv2.INTER_CUBIC)))
    across, down = np.mgrid[:side, :side]
    for i in range(40):  # stripes, checks and rings of two colours
        period, angle = rng.integers(6, 40), rng.uniform(0, np.pi)
        first, second = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        if i % 3 == 0:
            mask = np.sin((down * np.cos(angle) + across * np.sin(angle)) * 2 * np.pi / period) > 0
        elif i % 3 == 1:
            mask = (down // period + across // period) % 2 == 0
        else:
            mask = (np.hypot(down - side / 2, across - side / 2) // period) % 2 == 0
        picture = np.empty((side, side, 3), np.uint8)
        picture[mask], picture[~mask] = first, second
        made.append(("texture", picture))
    ramp = np.linspace(0, 1, side)
    for _ in range(10):  # gradients between two colours
        made.append(("texture", (ramp[None, :, None] * rng.integers(0, 256, 3)
                                 + (1 - ramp)[:, None, None] * rng.integers(0, 256, 3)).astype(np.uint8)))
    for i in range(60):  # drawings: a few shapes and lines
        background = tuple(int(v) for v in rng.integers(180, 256, 3)) if i % 2 else (255, 255, 255)
        image = Image.new("RGB", (side, side), background)
        draw = ImageDraw.Draw(image)
        for _ in range(rng.integers(1, 6)):
            colour = tuple(int(v) for v in rng.integers(0, 200, 3))
            x0, y0 = (int(v) for v in rng.integers(0, 180, 2))
            box = [x0, y0, x0 + int(rng.integers(20, 120)), y0 + int(rng.integers(20, 120))]
            fill = colour if rng.random() < 0.5 else None
            shape = rng.integers(0, 4)
            if shape == 0:
                draw.ellipse(box, outline=colour, width=int(rng.integers(1, 6)), fill=fill)
            elif shape == 1:
                draw.rectangle(box, outline=colour, width=int(rng.integers(1, 6)), fill=fill)
            elif shape == 2:
                draw.line([tuple(int(v) for v in rng.integers(0, side, 2)) for _ in range(5)], fill=colour,
                          width=int(rng.integers(1, 8)))
            else:
                draw.polygon([tuple(int(v) for v in rng.integers(0, side, 2)) for _ in range(3)], outline=colour,
                             fill=fill)
        made.append(("drawing", image))
    words = ["Hello", "INVOICE", "2026", "Total: 42", "flower", "Dear Sir", "cat", "A B C"]
    for _ in range(20):  # typed text
        page = np.full((side, side, 3), 255, np.uint8)
        for _ in range(rng.integers(1, 5)):
            cv2.putText(page, str(rng.choice(words)), (int(rng.integers(0, 120)), int(rng.integers(30, 220))),
                        int(rng.integers(0, 8)), float(rng.uniform(0.6, 2)),
                        tuple(int(v) for v in rng.integers(0, 150, 3)), int(rng.integers(1, 4)))
        made.append(("text", page))
    digits = load_digits().images
    for i in range(40):  # dark digits on white, as a scan would be
        digit = (255 - digits[i * 7] * 16).clip(0, 255).astype(np.uint8)
        made.append(("digits", np.repeat(cv2.resize(digit, (side, side), interpolation=cv2.INTER_NEAREST)[:, :, None],
                                         3, axis=2)))
    mnist_zip = DATA / "mnist-png.zip"
    if mnist_zip.is_file():
        from mlcore.images import decode_image

        with zipfile.ZipFile(mnist_zip) as mnist:
            names = [name for name in mnist.namelist() if name.endswith(".png") and "/test/" in name][:4000:100]
            made += [("mnist", decode_image(mnist.read(name)).image.convert("RGB")) for name in names]
    return made


def check_photos():
    """Real photos kept out of all tuning: china.jpg whole, in nine crops and in four quarters."""
    from sklearn.datasets import load_sample_image

    china = load_sample_image("china.jpg")
    height, width = china.shape[:2]
    photos = [china]
    for parts in (3, 2):
        photos += [china[r * height // parts:(r + 1) * height // parts, c * width // parts:(c + 1) * width // parts]
                   for r in range(parts) for c in range(parts)]
    return photos


def as_inputs(pictures, info):
    from PIL import Image

    from mlcore.images import image_to_array

    return [image_to_array(p if isinstance(p, Image.Image) else Image.fromarray(p), info.image_size, info.channels,
                           info.resize) for p in pictures]


def rules_before(model, x_train, y_train, x_val, seed):
    """The familiarity every model got before Neighbours: the Mahalanobis distance (Familiarity)."""
    from mlcore.familiarity import FIT_PIXELS, MAX_FIT_IMAGES, Familiarity, features_and_probabilities
    from mlcore.serving import predict_batch

    fits = max(1, min(MAX_FIT_IMAGES, FIT_PIXELS // int(np.prod(x_train.shape[1:3]))))
    picked = np.sort(np.random.default_rng(seed).permutation(len(x_train))[:fits])
    both = features_and_probabilities(model)
    return Familiarity.fit(predict_batch(both, x_train[picked], output=0), y_train[picked],
                           predict_batch(both, x_val, output=0)), both


def share(flags) -> float | None:
    return round(float(np.mean(flags)), 3) if len(flags) else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("zip", nargs="?", default=str(DATA / "flowers-train.zip"))
    parser.add_argument("--scores", help="also save every picture's features and probabilities (and the "
                                         "validation photos') to this .npz, to try other rules offline")
    args = parser.parse_args()
    if not Path(args.zip).is_file():
        raise SystemExit(f"No zip at {args.zip}; pass the path of a zip of class folders.")
    data_dir, env, user = fresh_site("bench-dont-know-photos-")
    dataset = import_zip(user, args.zip, "flowers", test_fraction=0.2, val_fraction=0.1)
    worker = start_worker(env, Path(data_dir) / "worker.log")
    try:
        run_figures = product_run(dataset, user, {})
    finally:
        stop_worker(worker)

    from mlcore.familiarity import judge
    from mlcore.packing import load_pack
    from mlcore.serving import predict_batch
    from predict_app.services import predictor_for
    from training_app.models import TrainingRun

    run = TrainingRun.objects.filter(dataset=dataset).latest("id")
    predictor = predictor_for(run)
    pack = load_pack(run_figures["pack"])
    (x_train, y_train, _), (x_val, _, _), (x_test, y_test, _) = pack["train"], pack["val"], pack["test"]
    made = made_pictures()
    groups = {"test": list(x_test)}
    for kind, picture in made:
        groups.setdefault(kind, []).append(picture)
    groups = {kind: (pictures if kind == "test" else as_inputs(pictures, predictor.info))
              for kind, pictures in groups.items()}
    groups["real_photos"] = as_inputs(check_photos(), predictor.info)
    from sklearn.datasets import load_sample_image
    groups["flower_jpg"] = as_inputs([load_sample_image("flower.jpg")], predictor.info)

    before, both = rules_before(predictor.model, x_train, y_train, x_val, run.seed)
    flags = {"product": {}, "before": {}, "softmax": {}}
    answers = {}
    for kind, inputs in groups.items():
        probabilities, judgements = predictor.judge_arrays(inputs)
        flags["product"][kind] = np.array([bool(j.doubt) for j in judgements])
        flags["product"][f"{kind}_far"] = np.array([j.doubt == "far" for j in judgements])
        flags["product"][f"{kind}_doubts"] = np.array([j.doubt for j in judgements])
        features = predict_batch(both, np.stack(inputs), output=0)
        flags["before"][kind] = np.array([bool(j.doubt) for j in judge(probabilities, before.distances(features),
                                                                        before)])
        flags["softmax"][kind] = probabilities.max(axis=1) < SOFTMAX_BELOW
        answers[kind] = probabilities.argmax(axis=1)
    wrong = answers["test"] != y_test
    if args.scores:
        groups["val"], groups["train"] = list(x_val), list(x_train)
        kept = {}
        for kind, inputs in groups.items():
            kept[f"{kind}_features"] = predict_batch(both, np.stack(inputs), output=0)
            kept[f"{kind}_probabilities"] = predict_batch(both, np.stack(inputs), output=1)
            if kind in ("train", "val", "test"):  # and their mirror images (left-right), to try those too
                mirrored = np.stack(inputs)[:, :, ::-1]
                kept[f"{kind}_mirror_features"] = predict_batch(both, mirrored, output=0)
                kept[f"{kind}_mirror_probabilities"] = predict_batch(both, mirrored, output=1)
        np.savez(args.scores, test_labels=y_test, val_labels=pack["val"][1], train_labels=y_train,
                 kinds=np.array([kind for kind in groups]), **kept)
        del groups["val"], groups["train"]
    unfamiliar = [kind for kind in groups if kind not in ("test", "flower_jpg")]

    def figures(rule):
        found = flags[rule]
        every = np.concatenate([found[kind] for kind in unfamiliar])
        return {"unfamiliar_flagged": share(every), "test_flagged": share(found["test"]),
                "wrong_flagged": share(found["test"][wrong]),
                "by_kind": {kind: share(found[kind]) for kind in unfamiliar},
                "flower_jpg_flagged": bool(found["flower_jpg"][0])}

    product = figures("product")
    far = flags["product"]
    product["far_only"] = {"unfamiliar": share(np.concatenate([far[f"{kind}_far"] for kind in unfamiliar])),
                           "test": share(far["test_far"])}
    # Which rule flagged the wrong answers and the test flowers: far, spread, or the vote ("unlike").
    product["by_doubt"] = {group: {doubt: int((doubts == doubt).sum()) for doubt in ("far", "spread", "unlike")}
                           for group, doubts in (("wrong", far["test_doubts"][wrong]), ("test", far["test_doubts"]))}
    met = {name: (product[name] >= goal) if sign == ">=" else (product[name] <= goal)
           for name, (sign, goal) in GOALS.items()}
    familiarity = predictor.familiarity
    print(json.dumps({
        "name": "dont_know_photos", "zip": Path(args.zip).name, "test_photos": len(x_test),
        "test_accuracy": round(float(1 - wrong.mean()), 4), "wrong_answers": int(wrong.sum()),
        "unfamiliar_pictures": sum(len(groups[kind]) for kind in unfamiliar),
        "familiarity": type(familiarity).__name__ if familiarity else None,
        "far_above": round(familiarity.far_above, 4) if familiarity else None,
        "spread_below": round(getattr(familiarity, "spread_below", None) or 0, 4) or None,
        "vote_above": (round(familiarity.vote_above, 4) if np.isfinite(getattr(familiarity, "vote_above", np.inf))
                       else None),
        **product, "baseline_before": figures("before"), "baseline_softmax": figures("softmax"),
        "goal": {name: f"{sign} {goal}" for name, (sign, goal) in GOALS.items()}, "met": met,
        "train_seconds": round(run_figures["seconds"], 1),
    }), flush=True)
    shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
