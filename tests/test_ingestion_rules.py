"""What ingestion makes of messy uploads: duplicates, label conflicts, unlabelled images,
thumbnails, the report, folders, the many-process path, and dataset versions."""
import csv
import io
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from datasets_app import folder_upload, ingestion, sources
from datasets_app.labelling import move_to_split, relabel, resplit
from datasets_app.models import Dataset, Upload
from datasets_app.tasks import ingest
from datasets_app.versions import freeze, manifest_rows
from dlsite import storage
from tests.images import image_bytes, labelled_zip, make_zip


@pytest.fixture
def dataset(user):
    return Dataset.objects.create(owner=user, name="Messy")


def ingest_zip(dataset, files, name="messy.zip"):
    upload = Upload(dataset=dataset, original_name=name)
    upload.file.save(name, ContentFile(files if isinstance(files, bytes) else make_zip(files)), save=True)
    ingest(upload.id)
    upload.refresh_from_db()
    assert upload.status == "done", upload.error
    return upload


def outcomes(upload, kind):
    return dict(upload.outcomes.filter(kind=kind).values_list("file_name", "detail"))


A, B, C = (image_bytes("spot", 16, seed=s) for s in (1, 2, 3))


def test_an_exact_duplicate_within_a_class_is_stored_once_and_reported(dataset):
    upload = ingest_zip(dataset, {"cats/a.png": A, "cats/copy of a.png": A, "dogs/b.png": B})
    assert (upload.accepted, upload.duplicates, upload.conflicts) == (2, 1, 0)
    assert outcomes(upload, "duplicate") == {"cats/copy of a.png": "the same picture as cats/a.png"}
    assert dataset.images.filter(sha256=dataset.images.get(original_name="cats/a.png").sha256).count() == 1


def test_the_same_picture_under_two_classes_is_a_label_conflict_left_out_of_training(dataset):
    upload = ingest_zip(dataset, {"cats/a.png": A, "dogs/a.png": A, "cats/b.png": B, "dogs/c.png": C})
    assert (upload.accepted, upload.conflicts, upload.duplicates) == (4, 2, 0)  # both files are listed
    assert set(dataset.images.filter(label_conflict=True).values_list("original_name", flat=True)) == {
        "cats/a.png", "dogs/a.png"}
    assert "also under “cats”" in outcomes(upload, "conflict")["dogs/a.png"]
    assert "also under “dogs”" in outcomes(upload, "conflict")["cats/a.png"]
    assert dataset.class_counts() == [("cats", 1), ("dogs", 1)]
    assert dataset.trainable_images().count() == 2
    assert any(kind == "conflict" for kind, _ in dataset.warnings())


def test_a_later_upload_is_checked_against_the_images_already_there(dataset):
    ingest_zip(dataset, {"cats/a.png": A, "dogs/b.png": B})
    second = ingest_zip(dataset, {"cats/again.png": A, "cats/new.png": C, "cats/b.png": B}, "more.zip")
    assert (second.accepted, second.duplicates, second.conflicts) == (2, 1, 1)
    assert dataset.images.filter(label_conflict=True).count() == 2  # the old dogs/b.png too


def test_loose_images_go_to_the_unlabelled_inbox(dataset):
    upload = ingest_zip(dataset, {"new1.png": A, "new2.png": B, "cats/c.png": C})
    assert (upload.accepted, upload.unlabelled) == (3, 2)
    assert dataset.unlabelled_count() == 2
    assert dataset.images.get(original_name="new1.png").image_class is None
    assert dataset.trainable_images().count() == 1
    assert any(kind == "inbox" for kind, _ in dataset.warnings())


def test_large_images_get_a_thumbnail_and_small_ones_are_their_own(dataset, settings):
    upload = ingest_zip(dataset, {"big/photo.jpg": image_bytes("spot", 400, "JPEG", "RGB"),
                                  "small/digit.png": image_bytes("spot", 28)})
    assert upload.accepted == 2
    big, small = dataset.images.get(original_name="big/photo.jpg"), dataset.images.get(original_name="small/digit.png")
    assert small.thumbnail == "" and small.thumbnail_name == small.file.name
    from PIL import Image as PILImage
    with PILImage.open(Path(settings.MEDIA_ROOT) / big.thumbnail) as thumbnail:
        assert max(thumbnail.size) <= 160 and thumbnail.format == "JPEG"


def test_the_report_page_and_its_csv_list_every_file(alice, dataset):
    upload = ingest_zip(dataset, {"cats/a.png": A, "cats/a2.png": A, "dogs/a.png": A, "dogs/b.png": B,
                                  "dogs/bad.png": image_bytes("spot", 64)[:100], "loose.png": C, "notes.txt": b"hi"})
    page = alice.get(reverse("datasets:report", args=[dataset.pk, upload.pk]))
    assert page.status_code == 200
    assert b"dogs/bad.png" in page.content and b"notes.txt" in page.content
    response = alice.get(reverse("datasets:report_csv", args=[dataset.pk, upload.pk]))
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    by_file = {row["file"]: row for row in rows}
    assert len(rows) == 7
    assert by_file["cats/a.png"]["outcome"] == "label conflict"
    assert by_file["dogs/a.png"]["outcome"] == "label conflict"
    assert by_file["cats/a2.png"]["outcome"] == "duplicate, stored once"
    assert by_file["dogs/b.png"]["outcome"] == "accepted" and by_file["dogs/b.png"]["class"] == "dogs"
    assert by_file["loose.png"]["outcome"] == "accepted, unlabelled"
    assert by_file["dogs/bad.png"]["outcome"] == "not used" and "damaged" in by_file["dogs/bad.png"]["detail"]
    assert by_file["notes.txt"]["outcome"] == "not used"


def test_another_user_cannot_see_a_report(client, other_user, dataset):
    upload = ingest_zip(dataset, {"cats/a.png": A, "dogs/b.png": B})
    client.force_login(other_user)
    for name in ("datasets:report", "datasets:report_csv"):
        assert client.get(reverse(name, args=[dataset.pk, upload.pk])).status_code == 404


def test_many_processes_give_the_same_result_as_one(user, monkeypatch):
    monkeypatch.setattr(sources, "POOL_MIN_FILES", 4)  # so the pool is used
    files = {f"shapes/{kind}/{i}.png": image_bytes(kind, 16, seed=i) for kind in ("spot", "vertical")
             for i in range(9)}
    files.update({"shapes/spot/copy.png": files["shapes/spot/0.png"], "shapes/spot/bad.png": b"nope"})
    results = []
    for processes in (1, 2):
        dataset = Dataset.objects.create(owner=user, name=f"p{processes}")
        upload = Upload(dataset=dataset, original_name="s.zip")
        upload.file.save("s.zip", ContentFile(make_zip(files)), save=True)
        ingestion.ingest_upload(Upload.objects.claim(upload.id), processes=processes)
        upload.refresh_from_db()
        results.append((
            (upload.status, upload.accepted, upload.duplicates, upload.rejected),
            sorted(dataset.images.values_list("original_name", "image_class__name", "split", "sha256")),
        ))
    assert results[0] == results[1]
    assert results[0][0] == ("done", 18, 1, 1)


def test_a_byte_cap_reached_across_chunks_fails_and_keeps_nothing(user, monkeypatch, settings):
    monkeypatch.setattr(sources, "POOL_MIN_FILES", 3)
    dataset = Dataset.objects.create(owner=user, name="capped")
    upload = Upload(dataset=dataset, original_name="s.zip")
    upload.file.save("s.zip", ContentFile(labelled_zip(per_class=6, size=32)), save=True)
    settings.MAX_ZIP_UNPACKED_BYTES = sum(len(image_bytes(k, 32, seed=0)) for k in ("spot",)) * 8
    ingestion.ingest_upload(Upload.objects.claim(upload.id), processes=2)
    upload.refresh_from_db()
    assert upload.status == "failed" and "limit" in upload.error
    assert dataset.images.count() == 0 and dataset.classes.count() == 0


def test_a_folder_sent_in_batches_is_read_like_a_zip(dataset):
    upload = Upload.objects.create(dataset=dataset, kind=Upload.Kind.FOLDER, original_name="mnist",
                                   status=Upload.Status.QUEUED, expected_batches=2)
    first = [("train/3/1.png", SimpleUploadedFile("1.png", A)), ("test/3/2.png", SimpleUploadedFile("2.png", B))]
    assert folder_upload.save_batch(upload, 0, first) is True
    assert folder_upload.save_batch(upload, 0, first) is False  # a batch sent twice is stored once
    folder_upload.save_batch(upload, 1, [("train/7/3.png", SimpleUploadedFile("3.png", C)),
                                     ("unsorted.png", SimpleUploadedFile("4.png", image_bytes("vertical")))])
    ingest(upload.id)
    upload.refresh_from_db()
    assert (upload.status, upload.accepted, upload.unlabelled) == ("done", 4, 1)
    assert sorted(dataset.images.values_list("original_name", "image_class__name", "split", "folder_split")) == [
        ("test/3/2.png", "3", "test", "test"), ("train/3/1.png", "3", "train", "train"),
        ("train/7/3.png", "7", "train", "train"), ("unsorted.png", None, "train", "")]
    assert not storage.folder_exists(folder_upload.staging_folder(upload))  # the staged files are gone once read


def test_import_images_reads_a_folder_on_the_server(user, tmp_path, capsys):
    for name, data in {"cats/a.png": A, "dogs/b.png": B, "dogs/c.png": C, "readme.txt": b"x"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    call_command("import_images", str(tmp_path), "--dataset", "Pets", "--user", user.username)
    dataset = Dataset.objects.get(owner=user, name="Pets")
    assert dataset.class_counts() == [("cats", 1), ("dogs", 2)]
    output = capsys.readouterr().out
    assert "3/3 images" in output and "3 images added" in output and "1 files not used" in output
    upload = dataset.uploads.get()
    assert (upload.kind, upload.status, upload.rejected) == ("server", "done", 1)


def test_import_images_adds_a_zip_to_an_existing_dataset(user, tmp_path):
    archive = tmp_path / "more.zip"
    archive.write_bytes(make_zip({"cats/a.png": A, "cats/d.png": image_bytes("vertical", seed=9)}))
    Dataset.objects.create(owner=user, name="Pets")
    call_command("import_images", str(archive), "--dataset", "Pets", "--user", user.username)
    assert Dataset.objects.get(name="Pets").class_counts() == [("cats", 2)]


@pytest.mark.parametrize("args, message", [
    (["/no/such/place", "--user", "alice"], "There is no file or folder"),
    ([__file__, "--user", "alice"], "not a .zip file"),
    (["{tmp}", "--user", "nobody"], "no user called"),
])
def test_import_images_says_what_is_wrong(user, tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    args[2] = args[2] if args[2] != "alice" else user.username
    with pytest.raises(CommandError, match=message):
        call_command("import_images", args[0], "--dataset", "X", "--user", args[2])


def test_a_version_freezes_labels_and_later_edits_make_a_new_one(shapes, user):
    first = freeze(shapes, user)
    assert (first.number, first.image_count, first.class_names) == (1, 30, ["horizontal", "spot", "vertical"])
    assert freeze(shapes, user).id == first.id  # nothing changed: the same version
    image = shapes.images.filter(image_class__name="spot").first()
    relabel(shapes, [image.id], shapes.classes.get(name="vertical"), user)
    second = freeze(shapes, user)
    assert second.number == 2
    frozen = {row["image_id"]: row["label"] for row in manifest_rows(first)}
    assert frozen[image.id] == "spot"  # the first version still says what it said
    assert {row["image_id"]: row["label"] for row in manifest_rows(second)}[image.id] == "vertical"


def test_new_split_percentages_resplit_stratified_and_seeded(dataset, user):
    ingest_zip(dataset, {**{f"c/{i}.png": image_bytes("spot", seed=i) for i in range(20)},
                         **{f"d/{i}.png": image_bytes("vertical", seed=i) for i in range(40)}})
    moved = dataset.images.get(original_name="c/0.png")
    move_to_split(dataset, [moved.id], "test")
    resplit(dataset, 0.25, 0.25)
    table = dataset.split_counts_by_class()
    assert table["d"] == {"train": 20, "val": 10, "test": 10}
    assert table["c"]["val"] == 5 and table["c"]["test"] in (5, 6)
    moved.refresh_from_db()
    assert moved.split == "test"  # moved by hand, so it stays


def test_a_resplit_keeps_test_folders_and_takes_validation_from_the_train_folder(dataset):
    ingest_zip(dataset, {**{f"mnist/test/d/{i}.png": image_bytes("vertical", seed=i) for i in range(5)},
                         **{f"mnist/train/d/{i}.png": image_bytes("vertical", seed=100 + i) for i in range(15)}})
    resplit(dataset, 0.25, 0.25)
    assert dataset.split_counts_by_class()["d"] == {"train": 10, "val": 5, "test": 5}


def test_the_dataset_page_warns_about_small_unequal_and_mixed_classes(alice, user):
    dataset = Dataset.objects.create(owner=user, name="Uneven")
    files = {f"many/{i}.png": image_bytes("spot", seed=i) for i in range(60)}
    files.update({f"few/{i}.png": image_bytes("vertical", fmt="PNG", mode="RGB", seed=i) for i in range(4)})
    ingest_zip(dataset, files)
    kinds = [kind for kind, _ in dataset.warnings()]
    assert kinds == ["few", "imbalance", "colour"]
    page = alice.get(reverse("datasets:detail", args=[dataset.pk])).content.decode()
    assert "only 4 images" in page and "very unequal" in page and "grayscale and some are in colour" in page
    assert page.count('<figure><img src="/datasets/') == 25  # the 5 x 5 first look


def test_a_dataset_of_one_class_says_it_needs_another(alice, user):
    dataset = Dataset.objects.create(owner=user, name="Lonely")
    ingest_zip(dataset, {f"cats/{i}.png": image_bytes("spot", seed=i) for i in range(12)})
    assert [kind for kind, _ in dataset.warnings()] == ["classes"]
    page = alice.get(reverse("datasets:detail", args=[dataset.pk])).content.decode()
    assert "at least two classes" in page and 'id="train-button"' not in page


def test_settling_a_conflict_by_a_merge_keeps_one_copy_of_the_picture(dataset, user):
    from datasets_app.labelling import merge_classes

    ingest_zip(dataset, {"cats/a.png": A, "dogs/a.png": A, "cats/b.png": B, "dogs/c.png": C})
    sha = dataset.images.get(original_name="cats/a.png").sha256
    merge_classes(dataset.classes.get(name="cats"), dataset.classes.get(name="dogs"), user)
    assert dataset.trainable_images().filter(sha256=sha).count() == 1
    assert dataset.images.filter(label_conflict=True).count() == 0
    assert dataset.label_changes.filter(action="copy removed", image_name="dogs/a.png").exists()
