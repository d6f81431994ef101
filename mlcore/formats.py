"""A trained model written in the formats other programs load, each checked before it is offered:
loaded again in a fresh process by its own runtime (Keras, TensorFlow, the TensorFlow Lite
interpreter, onnxruntime, the bundle's own Flask server) and its answers on test pictures compared
with the original's.

Every format is a zip holding the model, `about.json` (the class names in the order of the outputs,
the input size, colour and resize mode) and a README saying how to load it and what it takes.
training_app/exporting.py gives this module the model, the pictures and a folder; nothing here
knows Django.
"""
from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests

from . import aspect
from .serving import ModelInfo

BUNDLE_FILES = Path(__file__).resolve().parent / "serve_bundle"
CHECK_TIMEOUT_S = 600


@dataclass(frozen=True)
class Format:
    label: str
    words: str  # what it is for, in plain words
    runtime: str  # what loads it, for the check's words
    load: str  # how to load it in Python, for the README


FORMATS = {
    "keras": Format("Keras (.keras)", "The whole model in one file, for Keras and TensorFlow programs.", "Keras",
                    "model = keras.models.load_model('model.keras')"),
    "h5": Format("Keras architecture (JSON) and weights (.h5)",
                 "The tutorials' pair: the network as JSON and its learned weights as HDF5.", "Keras",
                 "model = keras.models.model_from_json(open('architecture.json').read())\n"
                 "model.load_weights('model.weights.h5')"),
    "saved_model": Format("TensorFlow SavedModel", "For TensorFlow Serving and other TensorFlow programs.",
                          "TensorFlow", "model = tf.saved_model.load('saved_model')\n"
                                        "probabilities = model.serve(pixels)"),
    "tflite": Format("TensorFlow Lite", "For phones and small boards; gives the same answers as the site.",
                     "the TensorFlow Lite interpreter",
                     "interpreter = tf.lite.Interpreter('model.tflite')  # or ai_edge_litert's Interpreter"),
    "tflite_int8": Format(
        "TensorFlow Lite, 8-bit", "About four times smaller and quicker on phones; a little less accurate.",
        "the TensorFlow Lite interpreter",
        "interpreter = tf.lite.Interpreter('model_int8.tflite')  # takes and gives uint8: see about.json"),
    "onnx": Format("ONNX", "For onnxruntime and other runtimes, from Python, C#, C++, Java or JavaScript.",
                   "onnxruntime", "session = onnxruntime.InferenceSession('model.onnx')\n"
                                  "probabilities = session.run(None, {'pixels': pixels})[0]"),
    "flask": Format("Serve it yourself (a small Flask web app)",
                    "A web server with the model: post a picture, get its class back. Needs Python, not this site.",
                    "its own Flask server", "python app.py  # then: curl -F images=@photo.jpg "
                                            "http://127.0.0.1:5000/classify"),
}


class ExportFailed(Exception):
    """A format could not be made or did not load; the message says so in plain words."""


def without_augmentation(model, build_shell):
    """The model for export: the random-change layers only act while training, but exported graphs
    keep them (a SavedModel went on changing pictures; TensorFlow Lite refuses their random ops).
    `build_shell()` builds the same network without them (builder.build_without_weights); the
    weights are copied layer by layer, by name."""
    if not any(layer.name == "augmentation" for layer in model.layers):
        return model
    shell = build_shell()
    for layer in shell.layers:
        layer.set_weights(model.get_layer(layer.name).get_weights())
    return shell


def write(kind: str, model, info: ModelInfo, folder: Path, representative: np.ndarray) -> Path:
    """Write format `kind` of `model` into `folder` (emptied first) and return its zip beside it.
    `representative`: uint8 training pictures, which the 8-bit format uses to choose its scales."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    about = {**json.loads(info.to_json()), "format": kind,
             "input": f"float32 pixels 0 to 255, shaped (pictures, {info.image_size[0]}, {info.image_size[1]}, "
                      f"{info.channels}); resize each picture as '{info.resize}' says (see README.md)",
             "output": "one probability per class, in the order of class_names"}
    try:
        model(np.zeros((1, *model.input_shape[1:]), np.float32), training=False)  # the ONNX exporter wants a model that ran
        about.update(_WRITERS[kind](model, folder, representative) or {})
    except Exception as error:  # a converter's own errors are many and unlisted
        raise ExportFailed(f"{FORMATS[kind].label} could not be made from this model: "
                           f"{type(error).__name__}: {str(error)[:300]}") from error
    (folder / "about.json").write_text(json.dumps(about, indent=2))
    if kind != "flask":
        (folder / "README.md").write_text(_readme(kind, info))
    archive = folder.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                out.write(path, path.relative_to(folder))
    return archive


def _write_keras(model, folder, _):
    model.save(folder / "model.keras")


def _write_h5(model, folder, _):
    (folder / "architecture.json").write_text(model.to_json())
    model.save_weights(folder / "model.weights.h5")  # Keras 3 wants the .weights.h5 ending


def _write_saved_model(model, folder, _):
    model.export(str(folder / "saved_model"), format="tf_saved_model", verbose=False)


def _tflite_converter(model, folder):
    import tensorflow as tf

    saved = folder / "_saved_model"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    return tf.lite.TFLiteConverter.from_saved_model(str(saved)), saved


def _write_tflite(model, folder, _):
    converter, saved = _tflite_converter(model, folder)
    (folder / "model.tflite").write_bytes(converter.convert())
    shutil.rmtree(saved)


def _write_tflite_int8(model, folder, representative):
    import tensorflow as tf

    converter, saved = _tflite_converter(model, folder)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    # The scales of every layer are chosen from what these training pictures make them compute.
    converter.representative_dataset = lambda: ([picture[np.newaxis].astype(np.float32)] for picture in representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    (folder / "model_int8.tflite").write_bytes(converter.convert())
    shutil.rmtree(saved)
    interpreter = tf.lite.Interpreter(model_path=str(folder / "model_int8.tflite"))
    (in_scale, in_zero), (out_scale, out_zero) = (interpreter.get_input_details()[0]["quantization"],
                                                  interpreter.get_output_details()[0]["quantization"])
    return {"input": f"uint8 pixels shaped (pictures, {', '.join(map(str, representative.shape[1:]))}); "
                     f"as stored: pixel / {in_scale:g} + {in_zero}",
            "output": f"uint8, one per class: probability = (value - {out_zero}) * {out_scale:g}",
            "quantization": {"input": [in_scale, in_zero], "output": [out_scale, out_zero]}}


def _write_onnx(model, folder, _):
    model.export(str(folder / "model.onnx"), format="onnx", verbose=False)


def _write_flask(model, folder, representative):
    _write_onnx(model, folder, representative)
    shutil.copy(BUNDLE_FILES / "app.py", folder / "app.py")
    shutil.copy(BUNDLE_FILES / "README.md", folder / "README.md")
    # The site's own resizing code, so that the server sees pictures exactly as training did.
    shutil.copy(aspect.__file__, folder / "model_input.py")
    (folder / "requirements.txt").write_text(
        "flask>=3.0\nonnxruntime>=1.17\nnumpy>=1.26\npillow>=10.0\nopencv-python-headless>=4.8\n")


_WRITERS = {"keras": _write_keras, "h5": _write_h5, "saved_model": _write_saved_model, "tflite": _write_tflite,
            "tflite_int8": _write_tflite_int8, "onnx": _write_onnx, "flask": _write_flask}
assert set(_WRITERS) == set(FORMATS)


def _readme(kind: str, info: ModelInfo) -> str:
    height, width = info.image_size
    colour = "grayscale (1 channel)" if info.channels == 1 else "colour (3 channels, RGB)"
    return (f"# {FORMATS[kind].label}\n\n{FORMATS[kind].words}\n\n"
            f"Classes, in the order of the outputs: {', '.join(info.class_names)} (also in about.json).\n\n"
            f"Input: {colour} pictures of {width} x {height} pixels, values 0 to 255 (not scaled to 0 to 1: "
            f"the model does that), shaped (pictures, {height}, {width}, {info.channels}). Pictures of another "
            f"shape were made square the '{info.resize}' way in training: {_RESIZE_WORDS[info.resize]}\n\n"
            f"Load it:\n\n```python\n{FORMATS[kind].load}\n```\n")


_RESIZE_WORDS = {"squash": "stretched to the square.", "crop": "the middle square cut out, then resized.",
                 "pad": "fitted inside the square on black, then resized."}


# ---------------------------------------------------------------------------------------------
# Checking: each format loaded in a fresh process by its own runtime (python -m mlcore.export_check)


def check_in_fresh_process(kind: str, folder: Path, pixels: np.ndarray) -> np.ndarray:
    """The probabilities the format in `folder` gives for uint8 `pixels`, computed in a new Python
    process that loads it as its users would."""
    if kind == "flask":
        return _ask_the_bundle(folder, pixels)
    with tempfile.TemporaryDirectory() as scratch:
        inputs, outputs = Path(scratch) / "inputs.npy", Path(scratch) / "outputs.npy"
        np.save(inputs, pixels)
        done = subprocess.run([sys.executable, "-m", "mlcore.export_check", kind, str(folder), str(inputs),
                               str(outputs)], cwd=Path(__file__).resolve().parent.parent, capture_output=True,
                              text=True, timeout=CHECK_TIMEOUT_S)
        if done.returncode != 0:
            raise ExportFailed(f"{FORMATS[kind].label} was made but {FORMATS[kind].runtime} could not load it: "
                               f"{_last_line(done.stderr)}")
        return np.load(outputs)


def load_and_predict(kind: str, folder: Path, pixels: np.ndarray) -> np.ndarray:
    """Probabilities from format `kind` in `folder`, loaded by its own runtime (run in the fresh process)."""
    if kind in ("keras", "h5"):
        import keras

        if kind == "keras":
            model = keras.models.load_model(folder / "model.keras", compile=False)
        else:
            model = keras.models.model_from_json((folder / "architecture.json").read_text())
            model.load_weights(folder / "model.weights.h5")
        return np.asarray(model(pixels.astype(np.float32), training=False))
    if kind == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(folder / "saved_model"))
        return np.asarray(loaded.serve(pixels.astype(np.float32)))
    if kind in ("tflite", "tflite_int8"):
        return _run_tflite(folder / ("model.tflite" if kind == "tflite" else "model_int8.tflite"), pixels)
    if kind == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: pixels.astype(np.float32)})[0]
    raise ValueError(f"unknown format {kind!r}")


def _run_tflite(path: Path, pixels: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path))
    given, taken = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(given["index"], pixels.shape)
    interpreter.allocate_tensors()
    if given["dtype"] == np.uint8:
        scale, zero = given["quantization"]
        interpreter.set_tensor(given["index"], np.clip(np.round(pixels / scale + zero), 0, 255).astype(np.uint8))
    else:
        interpreter.set_tensor(given["index"], pixels.astype(np.float32))
    interpreter.invoke()
    result = interpreter.get_tensor(taken["index"])
    if taken["dtype"] == np.uint8:
        scale, zero = taken["quantization"]
        return (result.astype(np.float32) - zero) * scale
    return result


def _ask_the_bundle(folder: Path, pixels: np.ndarray) -> np.ndarray:
    """Start the bundle's server as its README says and post each picture to it as a PNG file."""
    from PIL import Image

    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "app.py", str(port)], cwd=folder, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        about = _wait_for_server(server, f"http://127.0.0.1:{port}/")
        results = []
        for picture in pixels:
            image = Image.fromarray(picture[:, :, 0] if picture.shape[2] == 1 else picture)
            answer = post_picture(f"http://127.0.0.1:{port}/classify", image)
            results.append([answer["results"][0]["probabilities"][name] for name in about["class_names"]])
        return np.asarray(results, np.float32)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def _wait_for_server(server, url, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise ExportFailed(f"The bundle's server did not start: {_last_line(server.stderr.read())}")
        try:
            return requests.get(url, timeout=5).json()
        except requests.ConnectionError:
            time.sleep(0.25)
    raise ExportFailed("The bundle's server did not answer within two minutes.")


def post_picture(url: str, image) -> dict:
    """POST `image` (a Pillow image) as a PNG in the multipart form field "images", as curl -F does."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    answer = requests.post(url, files={"images": ("picture.png", buffer.getvalue(), "image/png")}, timeout=60)
    answer.raise_for_status()
    return answer.json()


def _last_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no message"
