"""The fine-tuning phase of the "photos_15min" plan tried offline, on activations read once.

    .venv/bin/python benchmarks/photos_15min_offline.py cache FOLDER      # read the photos once (minutes)
    .venv/bin/python benchmarks/photos_15min_offline.py try FOLDER [--variant NAME ...]

`cache` imports the flower photos as benchmarks/photos.py does (the same seeded split), builds the model
the 15-minute plan suggests, and keeps what its PartialTrunk makes of each training photo and its mirror
image, each validation and each test photo (float16, FOLDER/activations.npz). `try` then trains the new
top on the frozen features as the worker does, and fine-tunes the tail with each variant; one JSON line a
variant and epoch (validation and test accuracy, seconds), then a summary. Validation chooses; the test figure
only reports. The first phase here is Keras' EarlyStopping rather than the worker's loop, and TensorFlow's
threads are not deterministic, so the top's figures differ from run to run by a photo or two.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import ROOT, django_setup, fresh_site, import_zip  # noqa: E402

ZIP = ROOT.parent / "shared" / "data" / "flowers-train.zip"


def plan_config(num_classes):
    from mlcore.defaults import DatasetFacts, suggest
    from mlcore.training import TrainingConfig
    from pretrained_app.weights import weights_folder_for

    # The flower photos' facts, roughly: all the plan reads of them is that they are many colour photos.
    facts = DatasetFacts(images=2934, classes=5, typical_side=240, channels=3, largest_class=700,
                         smallest_class=500, training_images=2054)
    s = suggest(facts, budget_s=900)
    return TrainingConfig(spec=s["model_spec"], image_size=(s["image_size"],) * 2, channels=3,
                          num_classes=num_classes, epochs=s["epochs"], batch_size=s["batch_size"],
                          optimizer=s["optimizer"], learning_rate=s["learning_rate"], lr_schedule=s["lr_schedule"],
                          early_stopping_patience=s["early_stopping_patience"], label_smoothing=0.0,
                          augmentation=s["augmentation"], fine_tune_epochs=s["fine_tune_epochs"],
                          fine_tune_learning_rate=s["fine_tune_learning_rate"], seed=1337,
                          weights_dir=weights_folder_for(s["model_spec"]))


def trunks(config):
    from mlcore.builder import build_model
    from mlcore.training import FrozenTrunk, PartialTrunk

    model = build_model(config.spec, (*config.image_size, 3), config.num_classes, config.weights_dir,
                        augmentation=config.augmentation, seed=config.seed)
    frozen = FrozenTrunk.of(model, config)
    return model, frozen, PartialTrunk.of(model, config, frozen)


def cache(folder: Path):
    data_dir, env, user = fresh_site("bench-photos15-")
    from datasets_app.versions import freeze
    from mlcore.serving import predict_batch
    from training_app.runner import load_arrays

    dataset = import_zip(user, ZIP, "flowers", test_fraction=0.2, val_fraction=0.1)
    version = freeze(dataset, user)

    class Size:
        image_size, channels, resize_mode = 260, 3, "squash"

        @staticmethod
        def record_phase(*args):
            pass
    Size.version = version
    _, pack = load_arrays(Size)
    (x, y, _), (xv, yv, _), (xt, yt, _) = pack["train"], pack["val"], pack["test"]
    config = plan_config(int(y.max()) + 1)
    model, frozen, partial = trunks(config)
    started = time.monotonic()
    cut_train, cut_val = partial.features(x, xv, mirrored=True)
    cut_test = predict_batch(partial.lower, xt).astype("float16")
    np.savez(folder / "activations.npz", train=cut_train, val=cut_val, test=cut_test,
             y_train=np.concatenate([y, y]), y_val=yv, y_test=yt)
    print(json.dumps({"cached": len(cut_train) + len(cut_val) + len(cut_test), "shape": cut_train.shape[1:],
                      "seconds": round(time.monotonic() - started, 1)}))


# name -> fine-tuning epochs, peak learning rate, label smoothing, warm-up epochs (0: a plain cosine from the peak)
VARIANTS = {
    "plan_10ep_1e-4": (10, 1e-4, 0.0, 0),
    "20ep_1e-4": (20, 1e-4, 0.0, 0),
    "20ep_3e-4": (20, 3e-4, 0.0, 0),
    "20ep_3e-4_warm2": (20, 3e-4, 0.0, 2),
    "20ep_3e-4_ls0.1": (20, 3e-4, 0.1, 0),
    "20ep_2e-4": (20, 2e-4, 0.0, 0),
    "15ep_3e-4": (15, 3e-4, 0.0, 0),
    "12ep_3e-4_ls0.1": (12, 3e-4, 0.1, 0),
}


def run_variants(folder: Path, names):
    import keras

    from mlcore.builder import unfreeze_top
    from mlcore.training import make_dataset

    data = np.load(folder / "activations.npz")
    y, yv, yt = data["y_train"], data["y_val"], data["y_test"]
    config = plan_config(int(y.max()) + 1)
    keras.utils.set_random_seed(config.seed)
    model, frozen, partial = trunks(config)
    # The first phase as the worker runs it: the new top on the frozen features (40 epochs of Adam at 0.001
    # along a cosine, patience 8 on the validation loss, the best epoch kept).
    feats, feats_val = partial.pooled(data["train"]), partial.pooled(data["val"])
    steps = int(np.ceil(len(feats) / config.batch_size))
    frozen.head.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
        config.learning_rate, config.epochs * steps, alpha=0.01)),
        loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    frozen.head.fit(make_dataset(feats, y, config.batch_size, training=True, seed=config.seed), epochs=config.epochs,
                    validation_data=(feats_val, yv), verbose=0, callbacks=[keras.callbacks.EarlyStopping(
                        patience=config.early_stopping_patience, restore_best_weights=True)])
    top = model.get_weights()
    top_val = frozen.head.evaluate(feats_val, yv, verbose=0)
    top_test = frozen.head.evaluate(partial.pooled(data["test"]), yt, verbose=0)
    print(json.dumps({"variant": "top", "val_accuracy": round(top_val[1], 4), "val_loss": round(top_val[0], 4),
                      "test_accuracy": round(top_test[1], 4)}), flush=True)
    unfreeze_top(model, config.spec["base"]["fine_tune_layers"])
    for name in names:
        epochs, rate, smoothing, warm = VARIANTS[name]
        model.set_weights(top)
        keras.utils.set_random_seed(config.seed)
        classes = config.num_classes
        if warm:
            schedule = keras.optimizers.schedules.CosineDecay(0.0, (epochs - warm) * steps, alpha=0.01,
                                                              warmup_target=rate, warmup_steps=warm * steps)
        else:
            schedule = keras.optimizers.schedules.CosineDecay(rate, epochs * steps, alpha=0.01)
        partial.tail.compile(optimizer=keras.optimizers.Adam(schedule), metrics=["accuracy"],
                             loss=keras.losses.CategoricalCrossentropy(label_smoothing=smoothing))
        onehot = lambda labels: np.eye(classes, dtype="float32")[labels]  # noqa: E731
        curve = []

        class Curve(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.started = time.monotonic()

            def on_epoch_end(self, epoch, logs=None):
                seconds = time.monotonic() - self.started
                test = self.model.evaluate(data["test"], onehot(yt), batch_size=64, verbose=0)
                curve.append({"epoch": epoch + 1, "val_accuracy": round(logs["val_accuracy"], 4),
                              "val_loss": round(logs["val_loss"], 4), "test_accuracy": round(test[1], 4),
                              "seconds": round(seconds, 1)})
                print(json.dumps({"variant": name, **curve[-1]}), flush=True)

        partial.tail.fit(make_dataset(data["train"], y, config.batch_size, training=True, seed=config.seed,
                                      num_classes=classes), epochs=epochs,
                         validation_data=(data["val"], onehot(yv)), verbose=0, callbacks=[Curve()])
        by_acc = max(curve, key=lambda row: (row["val_accuracy"], -row["val_loss"]))
        by_loss = min(curve, key=lambda row: row["val_loss"])
        print(json.dumps({"variant": name, "summary": True, "last": curve[-1], "best_val_accuracy": by_acc,
                          "best_val_loss": by_loss, "train_seconds": round(sum(r["seconds"] for r in curve), 1)}),
              flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["cache", "try"])
    parser.add_argument("folder")
    parser.add_argument("--variant", action="append")
    args = parser.parse_args()
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    if args.action == "cache":
        cache(folder)
    else:
        django_setup()
        run_variants(folder, args.variant or list(VARIANTS))
