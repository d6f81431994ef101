"""Folders sent from the browser in batches, over HTTP: start, batches, state, finish.

The ingestion is run by calling the task directly (the real worker is in the browser test)."""
import threading
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client, override_settings
from django.urls import reverse

from datasets_app.folder_upload import staging_folder
from datasets_app.models import Dataset, Upload
from datasets_app.tasks import ingest
from dlsite import storage
from tests.images import CLASSES, image_bytes, labelled_zip


def class_folder(per_class=4, root="", seed=0):
    """{relative path: bytes} of small, all different images in one folder per class."""
    return {f"{root}{name}/{i}.png": image_bytes(name, 8, seed=seed + c * 100 + i)
            for c, name in enumerate(CLASSES) for i in range(per_class)}


def in_batches(files, per_batch):
    items = sorted(files.items())
    return [items[i:i + per_batch] for i in range(0, len(items), per_batch)]


def start(client, url, files, per_batch, folder_name="shapes", **fields):
    data = {"folder_name": folder_name, "file_count": len(files),
            "batch_count": len(in_batches(files, per_batch)), "total_bytes": sum(map(len, files.values())), **fields}
    return client.post(url, data)


def new_dataset_url():
    return reverse("datasets:folder_start_new")


def add_url(dataset):
    return reverse("datasets:folder_start", args=[dataset.pk])


def send_batch(client, answer, index, items, paths=None):
    files = [SimpleUploadedFile(Path(path).name, data, "image/png") for path, data in items]
    paths = [path for path, _ in items] if paths is None else paths
    return client.post(f"{answer['batch_url_prefix']}{index}/", {"files": files, "paths": paths})


def finish(client, answer):
    return client.post(answer["finish_url"])


def send_whole_folder(client, url, files, per_batch=5, **fields):
    answer = start(client, url, files, per_batch, **fields).json()
    for index, items in enumerate(in_batches(files, per_batch)):
        assert send_batch(client, answer, index, items).status_code == 200
    response = finish(client, answer)
    assert response.status_code == 200, response.content
    upload = Upload.objects.get(pk=answer["upload"])
    ingest(upload.id)
    upload.refresh_from_db()
    return upload


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """A media folder per test: the staging folder of an upload is named by its id, and ids repeat between tests."""
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def dataset(user):
    return Dataset.objects.create(owner=user, name="Shapes")


def test_a_folder_sent_in_batches_gets_its_classes_from_folder_names_and_loose_files_go_to_the_inbox(alice, user):
    files = class_folder(per_class=4) | {"loose-1.png": image_bytes("spot", 8, seed=77),
                                         "loose-2.png": image_bytes("vertical", 8, seed=78)}
    upload = send_whole_folder(alice, new_dataset_url(), files, per_batch=5, name="My shapes")

    dataset = Dataset.objects.get(owner=user)
    assert dataset.name == "My shapes"
    assert (upload.kind, upload.status, upload.original_name) == ("folder", "done", "shapes")
    assert (upload.expected_files, upload.expected_batches, upload.received_batches) == (14, 3, [0, 1, 2])
    assert dataset.class_counts() == [("horizontal", 4), ("spot", 4), ("vertical", 4)]
    assert sorted(dataset.images.filter(image_class__isnull=True).values_list("original_name", flat=True)) == [
        "loose-1.png", "loose-2.png"]
    assert upload.unlabelled == 2 and upload.accepted == 14
    assert not storage.folder_exists(staging_folder(upload))


def test_train_validation_and_test_folders_set_the_split(alice, dataset):
    files = (class_folder(per_class=3, root="train/") | class_folder(per_class=2, root="validation/", seed=30)
             | class_folder(per_class=1, root="test/", seed=60))
    upload = send_whole_folder(alice, add_url(dataset), files, per_batch=4, folder_name="shapes-split")

    assert upload.accepted == 18
    assert dataset.split_counts() == {"train": 9, "val": 6, "test": 3}
    assert dataset.class_counts() == [("horizontal", 6), ("spot", 6), ("vertical", 6)]
    assert dataset.images.get(original_name="validation/spot/1.png").split == "val"


def test_test_folders_keep_their_images_and_validation_comes_out_of_training(alice, dataset):
    # As in mnist-png: train/3/10.png and test/3/11.png, with no validation folder.
    files = class_folder(per_class=10, root="train/") | class_folder(per_class=2, root="test/", seed=50)
    send_whole_folder(alice, add_url(dataset), files, per_batch=7, folder_name="mnist-png")

    test_folder = dataset.images.filter(original_name__startswith="test/")
    assert set(test_folder.values_list("split", flat=True)) == {"test"} and test_folder.count() == 6
    counts = dataset.split_counts()
    assert counts["test"] == 6 and counts["train"] + counts["val"] == 30 and counts["val"] > 0


def test_the_validation_and_test_percentages_of_a_new_dataset_decide_its_split(alice, user):
    send_whole_folder(alice, new_dataset_url(), class_folder(per_class=10), per_batch=10,
                      val_percent="20", test_percent="0")
    dataset = Dataset.objects.get(owner=user)
    assert (dataset.val_fraction, dataset.test_fraction) == (0.2, 0.0)
    assert dataset.split_counts() == {"train": 24, "val": 6, "test": 0}


def test_the_zip_form_takes_the_percentages_too(alice, user):
    alice.post(reverse("datasets:list"), {"file": SimpleUploadedFile("shapes.zip", labelled_zip(per_class=10)),
                                          "val_percent": "30", "test_percent": "10"})
    dataset = Dataset.objects.get(owner=user)
    assert (dataset.val_fraction, dataset.test_fraction) == (0.3, 0.1)
    ingest(dataset.uploads.get().id)
    assert dataset.split_counts() == {"train": 18, "val": 9, "test": 3}


@pytest.mark.parametrize("val, test, message", [
    ("50", "45", "at most 90 %"),
    ("-5", "10", "greater than or equal to 0"),
    ("ten", "10", "Enter a whole number"),
])
def test_impossible_percentages_are_refused_and_no_dataset_is_made(alice, val, test, message):
    response = start(alice, new_dataset_url(), class_folder(), 5, val_percent=val, test_percent=test)
    assert response.status_code == 400 and message in response.json()["message"]
    zip_page = alice.post(reverse("datasets:list"), {
        "file": SimpleUploadedFile("shapes.zip", labelled_zip(per_class=2)), "val_percent": val, "test_percent": test})
    assert message in zip_page.content.decode()
    assert not Dataset.objects.exists() and not Upload.objects.exists()


def test_a_resumed_folder_stores_every_image_exactly_once(alice, dataset):
    files = class_folder(per_class=4)
    batches = in_batches(files, 5)
    answer = start(alice, add_url(dataset), files, 5).json()
    assert answer["resumed"] is False and answer["received_batches"] == []
    assert send_batch(alice, answer, 0, batches[0]).json()["stored"] is True
    assert send_batch(alice, answer, 1, batches[1]).json()["stored"] is True
    # The answer to batch 1 was lost, so the browser sends it again: harmless.
    again = send_batch(alice, answer, 1, batches[1])
    assert again.status_code == 200 and again.json() == {"stored": False, "received_batches": [0, 1]}

    # The page is reloaded and the same folder picked again: the same upload, with what arrived.
    resumed = start(alice, add_url(dataset), files, 5).json()
    assert resumed["upload"] == answer["upload"] and resumed["resumed"] is True
    assert resumed["received_batches"] == [0, 1]
    assert alice.get(answer["state_url"]).json() == {"status": "receiving", "expected_batches": 3,
                                                     "received_batches": [0, 1]}
    assert send_batch(alice, resumed, 2, batches[2]).status_code == 200
    assert finish(alice, resumed).json() == {"status": "queued", "url": reverse("datasets:detail", args=[dataset.pk])}

    ingest(answer["upload"])
    names = list(dataset.images.values_list("original_name", flat=True))
    assert sorted(names) == sorted(files) and Upload.objects.get().duplicates == 0


def test_a_different_folder_or_a_finished_one_starts_a_new_upload(alice, dataset):
    files = class_folder()
    first = start(alice, add_url(dataset), files, 5).json()
    other_name = start(alice, add_url(dataset), files, 5, folder_name="other").json()
    fewer_files = start(alice, add_url(dataset), class_folder(per_class=3), 5).json()
    assert len({first["upload"], other_name["upload"], fewer_files["upload"]}) == 3
    Upload.objects.filter(pk=first["upload"]).update(status="done")
    assert start(alice, add_url(dataset), files, 5).json()["upload"] != first["upload"]


def test_the_new_dataset_form_resumes_the_unfinished_folder_instead_of_making_a_second_dataset(alice, user):
    files = class_folder()
    first = start(alice, new_dataset_url(), files, 5, name="Shapes").json()
    second = start(alice, new_dataset_url(), files, 5, name="Shapes").json()
    assert second["upload"] == first["upload"] and second["resumed"] is True
    assert Dataset.objects.filter(owner=user).count() == 1


def test_finishing_with_batches_missing_is_refused_with_how_many(alice, dataset):
    files = class_folder()
    answer = start(alice, add_url(dataset), files, 5).json()
    send_batch(alice, answer, 1, in_batches(files, 5)[1])
    response = finish(alice, answer)
    assert response.status_code == 409
    assert response.json()["message"].startswith("2 of the 3 parts of this folder have not arrived yet")
    assert response.json()["missing_batches"] == [0, 2]
    assert Upload.objects.get().status == "receiving"


def test_finishing_twice_queues_the_ingestion_once(alice, dataset, django_capture_on_commit_callbacks):
    files = class_folder(per_class=1)
    answer = start(alice, add_url(dataset), files, 5).json()
    send_batch(alice, answer, 0, in_batches(files, 5)[0])
    with django_capture_on_commit_callbacks() as callbacks:
        assert finish(alice, answer).status_code == 200
        assert finish(alice, answer).status_code == 200
    assert len(callbacks) == 1


def refusal(response, status):
    assert response.status_code == status, response.content
    return response.json()["message"]


def test_more_than_100_files_in_one_batch_are_refused(alice, dataset):
    files = {f"spot/{i}.png": image_bytes("spot", 4, seed=i) for i in range(101)}
    answer = start(alice, add_url(dataset), files, 101, batch_count=2).json()
    message = refusal(send_batch(alice, answer, 0, in_batches(files, 101)[0]), 400)
    assert message == "Send at most 100 files at a time."
    assert Upload.objects.get().received_batches == [] and not storage.folder_exists(staging_folder(Upload.objects.get()))


def test_too_many_files_get_the_message_with_csrf_checks_on_too(user, dataset):
    # A browser's request goes through the CSRF check, which reads the body first.
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    token = client.get(reverse("datasets:add", args=[dataset.pk])).context["csrf_token"]
    token = str(token)
    files = {f"spot/{i}.png": image_bytes("spot", 4, seed=i) for i in range(101)}
    answer = client.post(add_url(dataset), {"folder_name": "spots", "file_count": 101, "batch_count": 2,
                                            "total_bytes": 1000}, HTTP_X_CSRFTOKEN=token).json()
    uploads = [SimpleUploadedFile(f"{i}.png", data) for i, data in enumerate(files.values())]
    url = f"{answer['batch_url_prefix']}0/"
    response = client.post(url, {"files": uploads, "paths": list(files)}, HTTP_X_CSRFTOKEN=token)
    assert refusal(response, 400) == "Send at most 100 files at a time."
    # And the CSRF check still happens for a batch that Django can read.
    forged = client.post(url, {"files": uploads[:1], "paths": ["spot/0.png"]})
    assert forged.status_code == 403 and Upload.objects.get().received_batches == []


@pytest.mark.parametrize("paths, message", [
    (["spot/0.png"], "2 files but 1 file paths"),
    (["../../etc/0.png", "spot/1.png"], "points outside the archive"),
    (["/etc/0.png", "spot/1.png"], "has an absolute path"),
    (["C:/Users/0.png", "spot/1.png"], "has an absolute path"),
    (["spot\\0.png", "spot/1.png"], "backslash or a null character"),
    (["spot/0\x00.png", "spot/1.png"], "backslash or a null character"),
    (["", "spot/1.png"], "is empty, too long or has an empty folder name"),
])
def test_bad_paths_are_refused_and_nothing_is_stored(alice, dataset, paths, message):
    files = {"spot/0.png": image_bytes("spot", 4), "spot/1.png": image_bytes("spot", 4, seed=1)}
    answer = start(alice, add_url(dataset), files, 2).json()
    response = send_batch(alice, answer, 0, list(files.items()), paths=paths)
    assert message in refusal(response, 400)
    upload = Upload.objects.get()
    assert upload.received_batches == [] and not storage.folder_exists(staging_folder(upload))


def test_a_batch_outside_the_announced_ones_is_refused(alice, dataset):
    files = class_folder(per_class=1)
    answer = start(alice, add_url(dataset), files, 5).json()
    assert "part 2 is not one of them" in refusal(send_batch(alice, answer, 1, list(files.items())), 400)


def test_a_batch_after_finish_is_refused(alice, dataset):
    files = class_folder(per_class=2)
    answer = start(alice, add_url(dataset), files, 3).json()
    for index, items in enumerate(in_batches(files, 3)):
        send_batch(alice, answer, index, items)
    finish(alice, answer)
    late = send_batch(alice, answer, 0, [("spot/9.png", image_bytes("spot", 4, seed=9))])
    assert "has been sent completely already" in refusal(late, 409)
    ingest(answer["upload"])
    assert dataset.images.count() == 6


@override_settings(MAX_UPLOAD_BYTES=1000)
def test_a_folder_larger_than_the_upload_limit_is_refused_before_anything_is_sent(alice, user):
    response = start(alice, new_dataset_url(), {"spot/0.png": b"x" * 1001}, 1)
    message = refusal(response, 413)
    assert "the limit is 1000 bytes" in message and "in parts" in message
    assert not Dataset.objects.exists() and not Upload.objects.exists()


@pytest.mark.parametrize("fields, message", [
    ({"file_count": "0"}, "greater than or equal to 1"),
    ({"batch_count": "1", "file_count": "250"}, "250 files cannot be sent in 1 parts"),
    ({"folder_name": ""}, "This field is required"),
])
def test_an_impossible_announcement_is_refused(alice, dataset, fields, message):
    data = {"folder_name": "shapes", "file_count": "3", "batch_count": "1", "total_bytes": "300"} | fields
    assert message in refusal(alice.post(add_url(dataset), data), 400)
    assert not Upload.objects.exists()


def test_another_users_dataset_and_upload_are_404(client, alice, dataset, other_user):
    files = class_folder(per_class=1)
    answer = start(alice, add_url(dataset), files, 5).json()
    client.force_login(other_user)
    assert start(client, add_url(dataset), files, 5).status_code == 404
    assert send_batch(client, answer, 0, list(files.items())).status_code == 404
    assert client.get(answer["state_url"]).status_code == 404
    assert finish(client, answer).status_code == 404
    assert client.get(reverse("datasets:add", args=[dataset.pk])).status_code == 404
    images = [SimpleUploadedFile("a.png", image_bytes("spot", 4))]
    assert client.post(reverse("datasets:add_loose_images", args=[dataset.pk]), {"images": images}).status_code == 404
    upload = Upload.objects.get()
    assert upload.received_batches == [] and upload.status == "receiving"


def test_a_zip_can_be_added_to_an_existing_dataset(alice, dataset):
    page = alice.get(reverse("datasets:add", args=[dataset.pk]))
    assert page.status_code == 200 and b"webkitdirectory" in page.content
    response = alice.post(reverse("datasets:add", args=[dataset.pk]),
                          {"file": SimpleUploadedFile("more.zip", labelled_zip(per_class=2))})
    assert response.status_code == 302 and response["Location"] == reverse("datasets:detail", args=[dataset.pk])
    ingest(dataset.uploads.get().id)
    assert dataset.images.count() == 6


def test_a_bad_zip_added_to_a_dataset_gets_a_message(alice, dataset):
    response = alice.post(reverse("datasets:add", args=[dataset.pk]),
                          {"file": SimpleUploadedFile("more.zip", b"not a zip")})
    assert response.status_code == 200 and "not a zip archive" in response.content.decode()
    assert not Upload.objects.exists()


def test_loose_images_without_javascript_go_to_the_inbox(alice, dataset):
    images = [SimpleUploadedFile(f"photo-{i}.png", image_bytes("spot", 8, seed=i), "image/png") for i in range(3)]
    response = alice.post(reverse("datasets:add_loose_images", args=[dataset.pk]), {"images": images})
    assert response.status_code == 302
    upload = Upload.objects.get()
    assert (upload.kind, upload.status, upload.original_name) == ("folder", "queued", "photo-0.png and 2 more")
    ingest(upload.id)
    assert dataset.unlabelled_count() == 3 and dataset.classes.count() == 0


def test_the_add_page_tells_of_a_folder_that_did_not_finish_sending(alice, dataset):
    files = class_folder()
    answer = start(alice, add_url(dataset), files, 5).json()
    send_batch(alice, answer, 0, in_batches(files, 5)[0])
    page = alice.get(reverse("datasets:add", args=[dataset.pk])).content.decode()
    assert "The folder “shapes” did not finish sending" in page and "1 of 3 parts arrived" in page


@pytest.mark.django_db(transaction=True)
def test_two_copies_of_one_batch_at_the_same_moment_are_stored_once(user):
    dataset = Dataset.objects.create(owner=user, name="Race")
    files = class_folder(per_class=10)
    items = in_batches(files, 30)[0]
    owner = Client()
    owner.force_login(user)
    answer = start(owner, add_url(dataset), files, 30).json()
    clients = [Client(), Client()]
    for client in clients:
        client.force_login(user)
    ready, answers = threading.Barrier(2), []

    def send(client):
        try:
            ready.wait()
            answers.append(send_batch(client, answer, 0, items).json())
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a["stored"] for a in answers) == [False, True]
    assert Upload.objects.get().received_batches == [0]
    finish(owner, answer)
    ingest(answer["upload"])
    assert dataset.images.count() == 30 and Upload.objects.get().duplicates == 0


def test_a_folder_that_sends_more_bytes_than_it_announced_is_refused(alice, dataset):
    files = class_folder()
    batches = in_batches(files, 5)
    answer = start(alice, add_url(dataset), files, 5, total_bytes=sum(len(d) for _, d in batches[0])).json()
    assert send_batch(alice, answer, 0, batches[0]).status_code == 200
    refused = send_batch(alice, answer, 1, batches[1])
    assert refused.status_code == 413 and "more bytes than it announced" in refused.json()["message"]
    upload = Upload.objects.get()
    assert upload.received_batches == [0] and upload.received_bytes == sum(len(d) for _, d in batches[0])


def test_another_folder_with_the_same_name_and_count_is_not_taken_for_the_unfinished_one(alice, dataset):
    files = class_folder()
    first = start(alice, add_url(dataset), files, 5, fingerprint="aaaa").json()
    same = start(alice, add_url(dataset), files, 5, fingerprint="aaaa").json()
    other = start(alice, add_url(dataset), files, 5, fingerprint="bbbb").json()
    assert same["upload"] == first["upload"] and other["upload"] != first["upload"]


def test_an_unfinished_folder_can_be_stopped_and_its_files_removed(alice, dataset):
    from datasets_app.folder_upload import staging_folder

    files = class_folder()
    answer = start(alice, add_url(dataset), files, 5).json()
    send_batch(alice, answer, 0, in_batches(files, 5)[0])
    upload = Upload.objects.get()
    assert storage.folder_exists(staging_folder(upload))
    page = alice.get(reverse("datasets:detail", args=[dataset.pk])).content.decode()
    assert "1 of\n      3 parts arrived" in page
    response = alice.post(reverse("datasets:folder_discard", args=[dataset.pk, upload.pk]), follow=True)
    assert "nothing from it was added" in response.content.decode()
    upload.refresh_from_db()
    assert upload.status == "failed" and not storage.folder_exists(staging_folder(upload))
    assert send_batch(alice, answer, 1, in_batches(files, 5)[1]).status_code == 409
