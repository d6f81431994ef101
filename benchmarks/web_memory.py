"""How much memory the web process gains doing the predict page's and the layer builder's work:
the code of today against the plain baseline of the same page done the old way, in the same run.

    .venv/bin/python benchmarks/web_memory.py [--posts 20] [--checks 50]

Figures (one JSON line each, with `old`, `new` and `ratio` = new / old peak growth):
  predict_big_png   `posts` posts to the predict page, each of one 154 KB PNG declaring 6,300 x 6,300
                    pixels and one small PNG. Old: the whole file read and fully decoded (the page as
                    it was); new: refused from its header (MAX_PREDICT_PIXELS), the small one classified.
  predict_big_jpeg  the same with a 6,300 x 6,300 JPEG, which both classify: old decodes it whole, new
                    at 1/8 scale (Image.draft).
  builder_checks    `checks` layer-builder checks of EfficientNetB0 with a head at 224 x 224. Old:
                    mlcore.builder.validate builds the Keras model; new: mlcore.builder.summarise.

Each side runs in its own process on the Django test client against a fresh SQLite site in a
temporary DATA_DIR (a 30-image dataset and a small trained model). After the same warm-up for both
sides (TensorFlow imported, one small request), `peak_rss_growth_mb` is how far the process's peak
resident memory (VmHWM, reset after the warm-up) rose above its size then during the requests, and `held_rss_growth_mb` how much
more it holds (VmRSS) once they are done.
"""
import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BIG_SIDE = 6300


def reset_peak_rss():
    """Start the peak afresh at the current size (Linux: "5" in clear_refs resets VmHWM), so that what
    the warm-up needed for a moment (importing TensorFlow, loading the model) is not the peak."""
    Path("/proc/self/clear_refs").write_text("5")


def rss_mb(field):
    """VmHWM (peak resident memory) or VmRSS (resident now) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def big_picture(fmt):
    """A smooth 6,300 x 6,300 colour picture, a few hundred KB (the finding's PNG was 154 KB)."""
    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 255, BIG_SIDE, dtype=np.float32)
    grey = ((ramp[np.newaxis, :] + ramp[:, np.newaxis]) / 2).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey, "L").convert("RGB").save(buffer, fmt)
    return buffer.getvalue()


def django_setup():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dlsite.settings")
    import django

    django.setup()


def prepare_site():
    """A user, a 30-image dataset and a trained small network, in the DATA_DIR of the environment."""
    django_setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from tests.conftest import ingest_shapes, new_run
    from training_app.tasks import train

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench", password="bench-password-1")
    run = new_run(ingest_shapes(user))
    train(run.id)
    run.refresh_from_db()
    assert run.model_path.exists(), "the benchmark's model was not trained"
    return {"run": run.pk}


def use_old_predict_path():
    """The predict page as it was: each file read whole and decoded at full size under MAX_IMAGE_PIXELS."""
    import predict_app.views as views
    from django.conf import settings

    from mlcore.images import ImageRejected, decode_image
    from predict_app.services import preview_data_url

    def classify_one(predictor, upload):
        try:
            image = decode_image(upload.read(), settings.MAX_IMAGE_PIXELS).image
        except ImageRejected as exc:
            return {"name": upload.name, "error": f"This file could not be used: {exc}."}
        probabilities = predictor.predict_image(image)
        ranked = sorted(zip(predictor.info.class_names, probabilities.tolist()), key=lambda item: -item[1])
        return {"name": upload.name, "preview": preview_data_url(image), "label": ranked[0][0]}

    views.classify_uploads = lambda predictor, uploads: [classify_one(predictor, u) for u in uploads]


def use_old_builder_path():
    """Builder checks as they were: the Keras model built in the web process."""
    import training_app.builder_views as views

    from mlcore.builder import validate

    views.summarise = validate


def measure(figure, side, count, run_pk):
    django_setup()
    import keras  # noqa: F401  (imported by both sides before measuring: the page loads models anyway)
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.urls import reverse

    from mlcore.presets import preset_spec
    from tests.images import image_bytes

    setup_test_environment()  # so that responses carry their template context
    client = Client(HTTP_HOST="localhost")
    client.force_login(get_user_model().objects.get(username="bench"))
    if figure.startswith("predict"):
        if side == "old":
            use_old_predict_path()
        fmt = "PNG" if figure == "predict_big_png" else "JPEG"
        big = big_picture(fmt)

        def request(warm_up=False):
            files = [SimpleUploadedFile("small.png", image_bytes("spot", 16), "image/png")]
            if not warm_up:
                files.insert(0, SimpleUploadedFile(f"big.{fmt.lower()}", big, f"image/{fmt.lower()}"))
            response = client.post(reverse("predict:index"), {"run": run_pk, "images": files})
            assert response.status_code == 200, (response.status_code, response.content[:300])
            return response.context["results"]
    else:
        if side == "old":
            use_old_builder_path()
        large = preset_spec("efficientnetb0")
        large["layers"] += [{"type": "Dense", "units": 512}, {"type": "Dropout"}]
        large["base"]["fine_tune_layers"] = 100

        def request(warm_up=False):
            body = {"spec": preset_spec("small_cnn") if warm_up else large, "image_size": 32 if warm_up else 224,
                    "channels": 3}
            response = client.post(reverse("training:builder_check"), json.dumps(body), content_type="application/json")
            assert response.status_code == 200 and response.json()["ok"], response.content[:300]
            return response.json()

    request(warm_up=True)
    reset_peak_rss()
    peak_before, held_before = rss_mb("VmHWM"), rss_mb("VmRSS")
    started = time.perf_counter()
    last = None
    for _ in range(count):
        last = request()
    seconds = time.perf_counter() - started
    if figure.startswith("predict"):
        outcome = last[0].get("error") or f"classified as {last[0]['label']}"
    else:
        outcome = f"{last['total_params']:,} parameters"
    return {"peak_rss_growth_mb": round(rss_mb("VmHWM") - peak_before, 1),
            "held_rss_growth_mb": round(rss_mb("VmRSS") - held_before, 1),
            "seconds_per_request": round(seconds / count, 3), "outcome": outcome}


def run_side(arguments, env):
    result = subprocess.run([sys.executable, __file__, *arguments], env=env, capture_output=True, text=True)
    if result.returncode:
        sys.stderr.write(result.stderr[-4000:])
        raise SystemExit(f"{' '.join(arguments)} failed")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=20)
    parser.add_argument("--checks", type=int, default=50)
    parser.add_argument("--figures", default="predict_big_png,predict_big_jpeg,builder_checks")
    parser.add_argument("--side", help=argparse.SUPPRESS)  # internal: one side of one figure
    parser.add_argument("--figure", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--run", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        print(json.dumps(prepare_site()))
        return
    if args.side:
        print(json.dumps(measure(args.figure, args.side, args.count, args.run)))
        return

    with tempfile.TemporaryDirectory(prefix="web-memory-") as data_dir:
        env = dict(os.environ, DATA_DIR=data_dir, DATABASE_URL="", CELERY_BROKER_URL="",
                   TF_CPP_MIN_LOG_LEVEL="3", ALLOWED_HOSTS="localhost")
        run_pk = run_side(["--prepare"], env)["run"]
        for figure in args.figures.split(","):
            count = args.checks if figure == "builder_checks" else args.posts
            sides = {side: run_side(["--figure", figure, "--side", side, "--count", str(count), "--run", str(run_pk)],
                                    env) for side in ("old", "new")}
            old, new = sides["old"]["peak_rss_growth_mb"], sides["new"]["peak_rss_growth_mb"]
            print(json.dumps({"name": "web_memory", "figure": figure, "requests": count, **sides,
                              "ratio": round(new / old, 4) if old > 0 else None}), flush=True)


if __name__ == "__main__":
    main()
