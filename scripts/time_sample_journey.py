"""Time the sample-data journey against a running `make run`, as a person would click it.

    make run                                   # in one terminal
    .venv/bin/python scripts/time_sample_journey.py [--zip PATH] [--url http://127.0.0.1:8000]

Signs up a fresh user, creates the sample dataset (or uploads --zip), trains with the
default settings and prints one JSON line: seconds to "dataset ready", seconds from
"Start training" to a finished run, and the test accuracy.
"""
import argparse
import json
import re
import time

import requests


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--zip", help="upload this zip instead of using the sample data")
    args = parser.parse_args()
    base, session = args.url.rstrip("/"), requests.Session()

    def csrf(path):
        page = session.get(base + path).text
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    password = "timing-password-1234"
    session.post(base + "/accounts/signup/", data={
        "csrfmiddlewaretoken": csrf("/accounts/signup/"), "username": f"timing{time.time_ns()}",
        "password1": password, "password2": password})

    started = time.monotonic()
    if args.zip:
        with open(args.zip, "rb") as archive:
            response = session.post(base + "/datasets/", data={"csrfmiddlewaretoken": csrf("/datasets/")},
                                    files={"file": archive})
    else:
        response = session.post(base + "/datasets/sample/", data={"csrfmiddlewaretoken": csrf("/datasets/")})
    dataset = int(re.search(r"/datasets/(\d+)/", response.url).group(1))
    while any(u["status"] in ("queued", "running") for u in session.get(f"{base}/datasets/{dataset}/progress/").json()["uploads"]):
        time.sleep(0.2)
    ready_s = time.monotonic() - started

    form = session.get(f"{base}/runs/new/{dataset}/").text
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form))
    fields["preset"] = re.search(r'name="preset" value="(\w+)"[^>]*checked', form).group(1)
    started = time.monotonic()
    run = int(re.search(r"/runs/(\d+)/", session.post(f"{base}/runs/new/{dataset}/", data=fields).url).group(1))
    while not (status := session.get(f"{base}/runs/{run}/status/").json())["is_final"]:
        time.sleep(0.5)
    train_s = time.monotonic() - started
    page = session.get(f"{base}/runs/{run}/").text
    accuracy = re.search(r'id="test-accuracy">([^<]+)<', page)
    print(json.dumps({"name": "sample_journey", "dataset_ready_s": round(ready_s, 2), "training_s": round(train_s, 1),
                      "status": status["status"], "test_accuracy": accuracy.group(1) if accuracy else None,
                      "settings": {k: v for k, v in fields.items() if k != "csrfmiddlewaretoken"}}))


if __name__ == "__main__":
    main()
