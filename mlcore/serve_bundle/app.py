"""Serve the model yourself: a small web server that classifies pictures.

    pip install -r requirements.txt
    python app.py            # or: python app.py 8080   (the port; 5000 by default)
    curl -F images=@photo.jpg http://127.0.0.1:5000/classify

POST one or more pictures in the form field "images" to /classify; the answer is JSON with each
picture's name, its class, how sure the model is, and every class's probability: the same names as the
site's own API. GET / says what the model
knows. Written by the image-classifier site, which checked this server before offering it.
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime
from flask import Flask, jsonify, request
from PIL import Image, ImageOps, UnidentifiedImageError

from model_input import centre_crop, fit_to_input, pad  # the site's own resizing code

HERE = Path(__file__).resolve().parent
ABOUT = json.loads((HERE / "about.json").read_text())
SESSION = onnxruntime.InferenceSession(str(HERE / "model.onnx"), providers=["CPUExecutionProvider"])
INPUT_NAME = SESSION.get_inputs()[0].name
TO_ASPECT = {"squash": None, "crop": centre_crop, "pad": pad}[ABOUT["resize"]]
MAX_PIXELS = 40_000_000  # refuse pictures bigger than this (a 7,000 x 6,000 photo), as the site does

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = 50 * 1024 * 1024


def model_input(file) -> np.ndarray:
    """The picture as the model takes it: turned upright, transparent parts on white, grey or colour
    as in training, and resized the way training did."""
    image = Image.open(file)
    if image.width * image.height > MAX_PIXELS:
        raise ValueError(f"the picture is {image.width} x {image.height} pixels, more than this server takes")
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    image = image.convert("L" if ABOUT["channels"] == 1 else "RGB")
    return fit_to_input(np.asarray(image, dtype=np.uint8), tuple(ABOUT["image_size"]), TO_ASPECT)


@app.get("/")
def about():
    return jsonify(ABOUT)


@app.post("/classify")
def classify():
    files = request.files.getlist("images")
    if not files:
        return jsonify(message='Send one or more pictures in the form field "images".'), 400
    try:
        pixels = np.stack([model_input(file) for file in files]).astype(np.float32)
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError) as error:
        return jsonify(message=f"A file is not a picture this server can read: {error}"), 400
    probabilities = SESSION.run(None, {INPUT_NAME: pixels})[0]
    names = ABOUT["class_names"]
    return jsonify(results=[{
        "name": file.filename,
        "class": names[int(np.argmax(row))],
        "confidence": round(float(np.max(row)), 6),
        "probabilities": {name: round(float(p), 6) for name, p in zip(names, row)},
    } for file, row in zip(files, probabilities)])


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
