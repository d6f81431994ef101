"""The sample digits (scikit-learn's 1,797 handwritten digits, 8 x 8 pixels, the site's "Add the sample
digits" button) trained with the suggested settings, against plain Keras on the same split.

    .venv/bin/python benchmarks/digits.py

One JSON line, "digits": the product's test accuracy and seconds from the button to the saved model
(through a real training worker, as benchmarks/train.py runs it), and the baseline's: the Keras MNIST
example's network (two convolution and pooling blocks, Dropout 0.5; "same" padding, as 8 x 8 pictures
need) with Adam at 0.001, 15 epochs of 32, trained in its own process with plain `model.fit` on the
run's training pictures and tested on its test pictures.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import django_setup, fresh_site, import_zip, product_run, start_worker, stop_worker  # noqa: E402  (the same harness)


def baseline(pack_folder):
    """Plain Keras on the run's own pack (a child process)."""
    django_setup()
    import keras
    from keras import layers

    from mlcore.packing import load_pack

    pack = load_pack(pack_folder)
    (x, y, _), (xv, yv, _), (xt, yt, _) = pack["train"], pack["val"], pack["test"]
    keras.utils.set_random_seed(1337)
    model = keras.Sequential([
        keras.Input(x.shape[1:]), layers.Rescaling(1.0 / 255),
        layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(64, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
        layers.Flatten(), layers.Dropout(0.5), layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.001), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    model.fit(x.astype("float32"), y, batch_size=32, epochs=15, validation_data=(xv.astype("float32"), yv), verbose=0)
    _, accuracy = model.evaluate(xt.astype("float32"), yt, verbose=0)
    return {"test_accuracy": float(accuracy), "seconds": time.perf_counter() - started}


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--baseline-pack":
        print(json.dumps(baseline(sys.argv[2])))
        return
    data_dir, env, user = fresh_site("bench-digits-")
    from datasets_app.sample_data import sample_digits_zip

    digits_zip = Path(data_dir) / "digits.zip"
    digits_zip.write_bytes(sample_digits_zip())
    dataset = import_zip(user, digits_zip, "digits")

    worker = start_worker(env, Path(data_dir) / "worker.log")
    try:
        run = product_run(dataset, user, {})
    finally:
        stop_worker(worker)
    done = subprocess.run([sys.executable, __file__, "--baseline-pack", run["pack"]], env=env, capture_output=True,
                          text=True, check=False)
    if done.returncode:
        raise SystemExit(f"baseline failed:\n{done.stderr[-3000:]}")
    base = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({
        "name": "digits", "test_accuracy": round(run["test_accuracy"], 4), "seconds": round(run["seconds"], 1),
        "baseline_test_accuracy": round(base["test_accuracy"], 4), "baseline_seconds": round(base["seconds"], 1),
        "train_images": run["train_images"], "epochs_run": len(run["epoch_seconds"]), "settings": run["settings"],
    }))


if __name__ == "__main__":
    main()
