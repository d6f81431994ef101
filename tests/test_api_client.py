"""A program written against the schema alone: a client generated from /api/v1/schema/ (as the site
serves it) by openapi-python-client, offline, drives an upload, a training run and predictions through
the running site and its real Celery workers, reading every answer through the generated models."""
import importlib
import io
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from api_app.models import ApiToken
from tests.images import CLASSES, image_bytes, labelled_zip, make_zip

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

CONFIG = """\
project_name_override: generated_api_client
package_name_override: generated_api_client
post_hooks: []
content_type_overrides:
  application/zip: application/octet-stream
"""


def generated_client(schema_text, folder: Path):
    (folder / "schema.json").write_text(schema_text)
    (folder / "config.yaml").write_text(CONFIG)
    made = subprocess.run([str(Path(sys.executable).parent / "openapi-python-client"), "generate", "--path",
                           "schema.json", "--config", "config.yaml", "--meta", "none", "--output-path",
                           "generated_api_client", "--fail-on-warning"],
                          cwd=folder, capture_output=True, text=True, timeout=120, check=False)
    assert made.returncode == 0, made.stdout + made.stderr
    # openapi-python-client 0.29.1 annotates a required body that has several content types (classify:
    # multipart or JSON) with `| Unset` without importing it; the client is otherwise whole.
    for module in (folder / "generated_api_client" / "api").rglob("*.py"):
        code = module.read_text()
        if "| Unset" in code and "import UNSET, Unset" not in code:
            module.write_text(code.replace("from ...types import Response, UNSET",
                                           "from ...types import Response, UNSET, Unset"))
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("generated_api_client")
    finally:
        sys.path.remove(str(folder))


def until(ask, done, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = ask()
        if done(answer):
            return answer
        time.sleep(0.5)
    raise AssertionError(f"timed out; the last answer was {answer}")


def test_a_client_generated_from_the_schema_uploads_trains_and_classifies(celery_workers, live_server, user,
                                                                        tmp_path):
    schema = requests.get(f"{live_server.url}/api/v1/schema/?format=json", timeout=30)  # public: no token
    assert schema.status_code == 200
    api = generated_client(schema.text, tmp_path)
    try:
        from generated_api_client.api.classifications import classification_read, classification_results
        from generated_api_client.api.datasets import dataset_create, dataset_read, run_start
        from generated_api_client.api.models import classification_start, classify, models_list
        from generated_api_client.api.runs import run_read
        from generated_api_client.models import (Dataset, NewDatasetRequest, NewRunRequest, PicturesMultipartRequest,
                                                 PresetEnum, Run, ZipRequest)
        from generated_api_client.types import File

        key = ApiToken.objects.create_for(user, "generated client")[1]
        client = api.AuthenticatedClient(base_url=live_server.url, token=key, raise_on_unexpected_status=True,
                                         timeout=60)

        archive = File(payload=io.BytesIO(labelled_zip(per_class=12)), file_name="shapes.zip")
        dataset = dataset_create.sync(client=client, body=NewDatasetRequest(file=archive, name="Generated"))
        assert isinstance(dataset, Dataset) and dataset.name == "Generated"
        dataset = until(lambda: dataset_read.sync(dataset.id, client=client),
                        lambda d: d.last_upload and d.last_upload.status in ("done", "failed"), timeout=90)
        assert dataset.last_upload.status == "done" and dataset.images == 36

        run = run_start.sync(dataset.id, client=client, body=NewRunRequest(preset=PresetEnum.SMALL_CNN, image_size=16,
                                                                            epochs=2, batch_size=8))
        assert isinstance(run, Run), run
        run = until(lambda: run_read.sync(run.id, client=client), lambda r: r.is_final)
        assert run.status == "succeeded", run.error + celery_workers.log("training")
        assert [epoch.epoch for epoch in run.metrics] == [1, 2], run.settings.to_dict()
        assert run.classes == sorted(CLASSES)
        assert sum(map(sum, run.confusion)) == 3 and run.settings.epochs == 2

        assert [model.id for model in models_list.sync(client=client).models] == [run.id]
        pictures = [File(payload=io.BytesIO(image_bytes(kind, 16, seed=7)), file_name=f"{kind}.png",
                         mime_type="image/png") for kind in ("horizontal", "vertical")]
        answer = classify.sync(run.id, client=client, body=PicturesMultipartRequest(images=pictures))
        assert [result.name for result in answer.results] == ["horizontal.png", "vertical.png"]
        assert all(result.class_ in CLASSES and set(result.probabilities.to_dict()) == set(CLASSES)
                   for result in answer.results)

        many = File(payload=io.BytesIO(make_zip({f"{i}.png": image_bytes(CLASSES[i % 3], 16, seed=i)
                                                 for i in range(4)})), file_name="many.zip")
        job = classification_start.sync(run.id, client=client, body=ZipRequest(file=many))
        job = until(lambda: classification_read.sync(job.id, client=client),
                    lambda j: j.status in ("done", "failed"), timeout=90)
        assert (job.status, job.done) == ("done", 4), job.error + celery_workers.log("default")
        page = classification_results.sync(job.id, client=client, limit=3)
        cursor = parse_qs(urlsplit(page.next_).query)["cursor"][0]
        rest = classification_results.sync(job.id, client=client, cursor=cursor, limit=3)
        assert sorted(p.name for p in page.pictures + rest.pictures) == [f"{i}.png" for i in range(4)]
    finally:
        for name in [name for name in sys.modules if name.startswith("generated_api_client")]:
            del sys.modules[name]
