"""The bad-input corpus (tests/corpus.py) sent through every entry point that takes files.

For each nasty file: no server error, a plain message (the upload's report, or the
form's or the command's error), every good image of the same upload kept (unless
the whole upload is refused, as an archive that tries to write outside itself is),
no file written outside its folder, and names shown escaped. Run on SQLite and on
PostgreSQL: long names, NUL bytes and duplicate entry names must behave the same.
"""
import csv
import hashlib
import io
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from datasets_app.ingestion import ingest_upload
from datasets_app.models import Dataset, Upload
from tests import corpus
from tests.conftest import ingest_shapes, new_run, wait_for
from tests.corpus import FOLDER, IMG_TAG, IMPORT, LOOSE, PREDICT, ZIP
from tests.images import image_bytes

TRACEBACK_WORDS = ("Traceback", "Exception", "Error at", "DataError", "IntegrityError", "File \"")


@pytest.fixture
def media_root(settings, tmp_path):
    """A media folder per test: folder uploads stage under their id, and ids repeat between tests."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def sha(data):
    return hashlib.sha256(data).hexdigest()


GOOD_SHAS = {sha(data) for data in corpus.good_files().values()}


def read(upload):
    """Ingest a queued upload here, in this process, as the worker would."""
    ingest_upload(Upload.objects.claim(upload.id))
    upload.refresh_from_db()
    return upload


def assert_plain(message):
    assert message and message.strip()
    assert not any(word in message for word in TRACEBACK_WORDS), message


def assert_good_images_kept(dataset, upload):
    assert upload.status == Upload.Status.DONE, upload.error
    assert GOOD_SHAS <= set(dataset.images.values_list("sha256", flat=True))


def assert_nothing_outside(*folders):
    """No file named evil-… anywhere but inside a zip: not under the data folder, the test's
    folder, or /tmp (an absolute or climbing entry would land there)."""
    for folder in folders:
        found = [str(p) for p in Path(folder).rglob("*evil-*")]
        assert not found, found
    assert not [p for p in Path("/tmp").glob("evil-*")]
    assert not Path("/tmp/evil-absolute.png").exists()


def assert_pages_safe(client, dataset, upload):
    """The dataset's pages and the report render, with every name escaped."""
    pages = [reverse("datasets:detail", args=[dataset.pk]), reverse("datasets:report", args=[dataset.pk, upload.pk]),
             reverse("datasets:classes", args=[dataset.pk]), reverse("datasets:gallery", args=[dataset.pk])]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert "<script>alert(1)" not in html and IMG_TAG not in html, url
    if dataset.classes.filter(name__startswith="<script>").exists():
        assert "&lt;script&gt;alert(1)&lt;" in client.get(pages[2]).content.decode()
    report = client.get(pages[1]).content.decode()
    assert f">{upload.accepted}<" in report  # the counts a person reads
    rows = list(csv.reader(io.StringIO(b"".join(
        client.get(reverse("datasets:report_csv", args=[dataset.pk, upload.pk])).streaming_content).decode())))
    assert len(rows) == 1 + upload.accepted + upload.rejected + upload.duplicates
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row


# Zip upload: a new dataset from a zip, as the datasets page sends it.

@pytest.mark.parametrize("case_id", corpus.case_ids(ZIP))
def test_zip_upload(alice, user, media_root, tmp_path, case_id):
    case = corpus.case(case_id)
    response = alice.post(reverse("datasets:list"), {
        "file": SimpleUploadedFile(case.zip_name, case.zip_bytes(), "application/zip")})
    assert response.status_code < 500
    if ZIP in case.refused:
        assert response.status_code == 200
        errors = response.context["form"].errors["file"]
        assert_plain(" ".join(errors))
        assert errors[0] in response.content.decode().replace("&quot;", '"').replace("&#x27;", "'")
        assert not Dataset.objects.filter(owner=user).exists()
    else:
        assert response.status_code == 302, response.context["form"].errors
        dataset = Dataset.objects.get(owner=user)
        upload = read(dataset.uploads.get())
        assert_good_images_kept(dataset, upload)
        assert_pages_safe(alice, dataset, upload)
        check_case_details(case, dataset, upload)
    assert_nothing_outside(settings.DATA_DIR, media_root, tmp_path)


def check_case_details(case, dataset, upload, point=ZIP):
    """What each nasty file became, where that is the point of the case."""
    outcomes = dict(upload.outcomes.values_list("file_name", "detail"))
    names = set(dataset.images.values_list("original_name", flat=True))
    if case.id == "duplicate-entry-names":  # two different pictures under one name: both kept
        assert upload.duplicates == 0 and dataset.images.filter(original_name="cats/dup.png").count() == 2
    elif case.id == "duplicate-entry-names-same-bytes":  # the same picture twice: one duplicate
        assert upload.duplicates == 1 and dataset.images.filter(original_name="cats/dup.png").count() == 1
    elif case.id == "class-folder-250-chars":  # two long folders: two classes, shortened, named in the report
        long_classes = [n for n in dataset.classes.values_list("name", flat=True) if n.startswith("ccc")]
        assert len(long_classes) == 2 and all(len(n) <= 200 and "…" in n for n in long_classes)
        assert "too long" in upload.error
    elif case.id == "name-1500-chars":
        [long_name] = [n for n in names if n.startswith("cats/mmm")]
        assert len(long_name) == 1000 and long_name.endswith("mmm.png") and "…" in long_name
        assert "1,000 characters" in upload.error
    elif case.id in ("zip-name-230-chars", "zip-name-4-byte-letters"):
        assert upload.original_name == case.zip_name or point == IMPORT
    elif case.id == "control-characters":
        assert "cats/new line.png" in names and "tab class" in dataset.classes.values_list("name", flat=True)
    elif case.id == "zip-bomb":
        assert all("compressed suspiciously well" in outcomes[f"cats/evil-bomb-{i}.png"] for i in range(4))
    elif case.id == "png-30000x30000":
        assert "pixels" in outcomes["cats/huge.png"]
    elif case.id == "tiny-files-20000":
        assert upload.accepted == len(corpus.good_files()) + corpus.TINY_FILES
    elif case.id == "same-picture-two-classes":  # flagged as a label conflict, both copies kept
        assert upload.conflicts == 2 and dataset.images.filter(label_conflict=True).count() == 2
    elif case.id == "script-names":
        assert "<script>alert(1)<" in dataset.classes.values_list("name", flat=True)


def test_a_new_dataset_named_after_a_230_character_zip_fits_its_name_field(alice, user, media_root):
    case = corpus.case("zip-name-230-chars")
    response = alice.post(reverse("datasets:list"), {
        "file": SimpleUploadedFile(case.zip_name, case.zip_bytes(), "application/zip")})
    assert response.status_code == 302
    dataset = Dataset.objects.get(owner=user)
    assert len(dataset.name) == 200 and dataset.name.startswith("zzz") and "…" in dataset.name
    assert dataset.uploads.get().original_name == case.zip_name


# import_images: the same zips, from the server's disk.

@pytest.mark.parametrize("case_id", corpus.case_ids(IMPORT))
def test_import_images(user, media_root, tmp_path, case_id):
    case = corpus.case(case_id)
    path = tmp_path / case.zip_name
    path.write_bytes(case.zip_bytes())
    out = io.StringIO()
    if IMPORT in case.refused:
        with pytest.raises(CommandError) as refused:
            call_command("import_images", str(path), dataset="Corpus", user="alice", stdout=out)
        assert_plain(str(refused.value))
        assert not Dataset.objects.filter(owner=user).exists()
    else:
        call_command("import_images", str(path), dataset="Corpus", user="alice", stdout=out)
        dataset = Dataset.objects.get(owner=user)
        upload = dataset.uploads.get()
        assert_good_images_kept(dataset, upload)
        check_case_details(case, dataset, upload, IMPORT)
        assert "images added" in out.getvalue()
    assert_nothing_outside(settings.DATA_DIR, media_root, tmp_path)


def test_import_images_of_a_folder_does_not_follow_links_out_of_it(user, media_root, tmp_path):
    secret = tmp_path / "outside" / "evil-secret.png"
    secret.parent.mkdir()
    secret.write_bytes(image_bytes("spot", 12, seed=5))
    folder = tmp_path / "folder"
    for name, data in corpus.case("truncated-png").files() + corpus.case("unicode-names").files():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "cats" / "link.png").symlink_to(secret)
    (folder / "dogs" / "outside").symlink_to(secret.parent, target_is_directory=True)
    call_command("import_images", str(folder), dataset="Corpus", user="alice", stdout=io.StringIO())
    dataset = Dataset.objects.get(owner=user)
    upload = dataset.uploads.get()
    assert_good_images_kept(dataset, upload)
    assert sha(secret.read_bytes()) not in set(dataset.images.values_list("sha256", flat=True))
    assert dict(upload.outcomes.values_list("file_name", "detail"))["cats/link.png"] == "a link is not followed"


# Folder upload: the browser's start / batch / finish requests.

def send_folder(client, dataset, files):
    """Send `files` as the upload page does, 3 per batch. Returns (upload or None, refusal message or None)."""
    batches = [files[i:i + 3] for i in range(0, len(files), 3)]
    answer = client.post(reverse("datasets:folder_start", args=[dataset.pk]), {
        "folder_name": "corpus", "file_count": len(files), "batch_count": len(batches),
        "total_bytes": sum(len(data) for _, data in files)})
    assert answer.status_code == 201, answer.content
    answer = answer.json()
    for index, batch in enumerate(batches):
        response = client.post(f"{answer['batch_url_prefix']}{index}/", {
            "files": [SimpleUploadedFile(Path(name).name or "file", data) for name, data in batch],
            "paths": [name for name, _ in batch]})
        assert response.status_code < 500
        if response.status_code != 200:
            assert response.status_code == 400
            return None, response.json()["message"]
    response = client.post(answer["finish_url"])
    assert response.status_code == 200, response.content
    return read(Upload.objects.get(pk=answer["upload"])), None


@pytest.mark.parametrize("case_id", corpus.case_ids(FOLDER))
def test_folder_upload(alice, user, media_root, tmp_path, case_id):
    case = corpus.case(case_id)
    dataset = Dataset.objects.create(owner=user, name="Corpus")
    upload, refusal = send_folder(alice, dataset, case.files())
    if FOLDER in case.refused:
        assert upload is None
        assert_plain(refusal)
        assert not dataset.images.exists()
    else:
        assert refusal is None
        assert_good_images_kept(dataset, upload)
        assert_pages_safe(alice, dataset, upload)
        check_case_details(case, dataset, upload, FOLDER)
    assert_nothing_outside(settings.DATA_DIR, media_root, tmp_path)


def test_a_new_dataset_from_a_folder_with_a_250_character_name_fits_its_name_field(alice, user, media_root):
    files = list(corpus.good_files().items())
    response = alice.post(reverse("datasets:folder_start_new"), {
        "folder_name": "f" * 250, "file_count": len(files), "batch_count": 1,
        "total_bytes": sum(len(data) for _, data in files)})
    assert response.status_code == 201
    dataset = Dataset.objects.get(owner=user)
    assert len(dataset.name) == 200 and "…" in dataset.name
    assert dataset.uploads.get().original_name == "f" * 250


# Loose images: the plain form, no folders.

def test_loose_images_with_a_long_first_name_fit_the_upload_name(alice, user, media_root):
    dataset = Dataset.objects.create(owner=user, name="Corpus")
    long_name = "l" * 251 + ".png"
    files = [SimpleUploadedFile(name, data) for name, data in
             [(long_name, image_bytes("spot", 12, seed=1)), ("b.png", image_bytes("spot", 12, seed=2))]]
    response = alice.post(reverse("datasets:add_loose_images", args=[dataset.pk]), {"images": files})
    assert response.status_code == 302
    upload = read(dataset.uploads.get())
    assert len(upload.original_name) == 255 and upload.original_name.endswith(" and 1 more")
    assert upload.accepted == 2 and long_name in dataset.images.values_list("original_name", flat=True)

@pytest.mark.parametrize("case_id", corpus.case_ids(LOOSE))
def test_loose_images(alice, user, media_root, tmp_path, case_id):
    case = corpus.case(case_id)
    dataset = Dataset.objects.create(owner=user, name="Corpus")
    files = [SimpleUploadedFile(Path(name).name, data) for name, data in case.files()]
    response = alice.post(reverse("datasets:add_loose_images", args=[dataset.pk]), {"images": files})
    assert response.status_code < 500
    if LOOSE in case.refused:
        assert response.status_code == 200
        assert_plain(" ".join(response.context["images_form"].errors["images"]))
        assert not dataset.uploads.exists()
    else:
        assert response.status_code == 302, response.context and response.context["images_form"].errors
        upload = read(dataset.uploads.get())
        assert_good_images_kept(dataset, upload)
        assert_pages_safe(alice, dataset, upload)
    assert_nothing_outside(settings.DATA_DIR, media_root, tmp_path)


# Predict: a trained model, made once for these tests.

@pytest.fixture(scope="module")
def trained_run(django_db_setup, django_db_blocker):
    from training_app.tasks import train

    with django_db_blocker.unblock():
        owner = get_user_model().objects.create_user("corpus-predict")
        dataset = ingest_shapes(owner)
        run = new_run(dataset, epochs=1)
        train(run.id)
        run.refresh_from_db()
    yield run
    with django_db_blocker.unblock():  # committed outside the tests' transactions, so removed by hand
        dataset.runs.all().delete()
        dataset.versions.all().delete()
        owner.delete()


@pytest.mark.django_db  # also makes the test database exist for `trained_run`
@pytest.mark.parametrize("case_id", corpus.case_ids(PREDICT))
def test_predict(client, trained_run, case_id):
    case = corpus.case(case_id)
    client.force_login(trained_run.owner)
    files = [SimpleUploadedFile(Path(name).name, data) for name, data in case.files()]
    response = client.post(reverse("predict:index"), {"run": trained_run.pk, "images": files})
    assert response.status_code == 200
    if PREDICT in case.refused:
        assert_plain(" ".join(response.context["form"].errors["images"]))
        return
    results = response.context["results"]
    assert len(results) == len(files)
    for result in results:
        if result["name"].startswith("good-"):
            assert result["label"] in {"horizontal", "vertical", "spot"}
        else:
            assert result.get("label") or result.get("error"), result
            if "error" in result:
                assert_plain(result["error"])
    if case_id == "empty-png":
        assert {"name": "empty.png", "error": "This file is empty."} in results
    html = response.content.decode()
    assert "<script>alert(1)" not in html and IMG_TAG not in html


# Class names typed by a person.

@pytest.mark.parametrize("name, expected", [
    ("cats\x00", "cats"),
    ("c\x00a\x01t\x7fs", "cats"),
    ("two\tcats\nhere", "two cats here"),
])
def test_a_class_rename_with_control_characters_keeps_the_name_without_them(alice, shapes, name, expected):
    image_class = shapes.classes.get(name="spot")
    response = alice.post(reverse("datasets:class_rename", args=[shapes.pk, image_class.pk]), {"name": name})
    assert response.status_code == 302
    image_class.refresh_from_db()
    assert image_class.name == expected


def test_a_class_created_with_a_nul_character_has_a_name_without_it(alice, shapes):
    response = alice.post(reverse("datasets:class_create", args=[shapes.pk]), {"name": "bir\x00ds"})
    assert response.status_code == 302
    assert shapes.classes.filter(name="birds").exists()


# The report's CSV in a spreadsheet program.

def test_the_report_csv_never_starts_a_cell_with_a_formula(alice, user, media_root):
    case = corpus.case("formula-names")
    alice.post(reverse("datasets:list"), {"file": SimpleUploadedFile("f.zip", case.zip_bytes(), "application/zip")})
    dataset = Dataset.objects.get(owner=user)
    upload = read(dataset.uploads.get())
    body = b"".join(alice.get(reverse("datasets:report_csv", args=[dataset.pk, upload.pk])).streaming_content)
    rows = {row[0]: row for row in csv.reader(io.StringIO(body.decode()))}
    assert rows["'=1+2/a.png"][3] == "'=1+2"
    assert "'cats/+cmd.png" not in rows and "cats/+cmd.png" in rows  # only the first character counts
    for name in ("'cats/-2+3.png", "'cats/@SUM(A1).png"):
        assert name not in rows


@pytest.mark.parametrize("cell, written", [
    ("=1+2", "'=1+2"), ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"), ("-2+3", "'-2+3"), ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("cats/=1.png", "cats/=1.png"), ("plain", "plain"), (12, 12),
])
def test_cells_a_spreadsheet_would_run_are_quoted(cell, written):
    from dlsite.spreadsheets import spreadsheet_safe

    assert spreadsheet_safe(cell) == written


def test_report_csv_quotes_names_that_start_a_formula(alice, user, media_root):
    names = {"=1+2.png": "spot", "+cmd.png": "horizontal", "-2+3.png": "vertical", "@SUM(A1).png": "spot"}
    files = [SimpleUploadedFile(name, image_bytes(kind, 12, seed=i)) for i, (name, kind) in enumerate(names.items())]
    dataset = Dataset.objects.create(owner=user, name="Corpus")
    alice.post(reverse("datasets:add_loose_images", args=[dataset.pk]), {"images": files})
    upload = read(dataset.uploads.get())
    body = b"".join(alice.get(reverse("datasets:report_csv", args=[dataset.pk, upload.pk])).streaming_content)
    first_cells = [row[0] for row in csv.reader(io.StringIO(body.decode()))][1:]
    assert sorted(first_cells) == sorted("'" + name for name in names)


# The corpus zip through the real worker.

@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("case_id", ["zip-bomb", "name-1500-chars", "class-folder-250-chars", "png-30000x30000",
                                     "duplicate-entry-names", "script-names"])
def test_the_worker_reads_the_nasty_zips_and_stays_alive(celery_workers, alice, user, case_id):
    case = corpus.case(case_id)
    response = alice.post(reverse("datasets:list"), {
        "name": case_id, "file": SimpleUploadedFile(case.zip_name, case.zip_bytes(), "application/zip")})
    assert response.status_code == 302
    dataset = Dataset.objects.get(owner=user, name=case_id)
    upload = wait_for(lambda: dataset.uploads.filter(status__in=["done", "failed"]).first(), timeout=60,
                      what="ingestion")
    assert_good_images_kept(dataset, upload)
    check_case_details(case, dataset, upload)
    assert celery_workers.alive(), celery_workers.log("default")
