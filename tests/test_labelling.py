"""Labelling: the domain functions of labelling.py, and the inbox, classes, conflicts and history pages."""
import json

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from datasets_app.ingestion import ingest_upload
from datasets_app.labelling import (
    LabelError,
    create_class,
    delete_class,
    merge_classes,
    refresh_conflicts,
    relabel,
    rename_class,
    resolve_conflict,
)
from datasets_app.models import Dataset, Image, ImageClass, LabelChange, Upload
from tests.images import image_bytes, make_zip

LOOSE = 4  # unlabelled pictures at the zip's root


def ingest(owner, files, name="Pets"):
    """A dataset made from a zip of `files` by the real ingestion code, as an upload makes it."""
    dataset = Dataset.objects.create(owner=owner, name=name)
    upload = Upload(dataset=dataset, original_name="pets.zip")
    upload.file.save("pets.zip", ContentFile(make_zip(files)), save=True)
    ingest_upload(Upload.objects.claim(upload.id))
    upload.refresh_from_db()
    assert upload.status == Upload.Status.DONE, upload.error
    return dataset


def pets_files(conflicts=1, seed=0):
    """Cats and dogs, `conflicts` pictures filed under both, and loose pictures for the inbox."""
    files = {}
    for i in range(3):
        files[f"cats/{i}.png"] = image_bytes("horizontal", 16, seed=seed + i)
        files[f"dogs/{i}.png"] = image_bytes("vertical", 16, seed=seed + i)
    for i in range(conflicts):
        same = image_bytes("spot", 16, seed=seed + 500 + i)
        files[f"cats/same-{i}.png"] = same
        files[f"dogs/same-{i}-copy.png"] = same
    for i in range(LOOSE):
        files[f"loose-{i}.png"] = image_bytes("spot", 16, seed=seed + 100 + i)
    return files


@pytest.fixture
def pets(user):
    return ingest(user, pets_files())


def cls(dataset, name):
    return dataset.classes.get(name=name)


def unlabelled_ids(dataset):
    return list(dataset.images.filter(image_class__isnull=True).order_by("id").values_list("id", flat=True))


def conflicted_sha(dataset):
    return dataset.images.filter(label_conflict=True).values_list("sha256", flat=True).first()


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


# The domain functions

def test_ingesting_the_same_picture_under_two_classes_flags_a_conflict(pets):
    copies = pets.images.filter(label_conflict=True)
    assert sorted(copies.values_list("image_class__name", flat=True)) == ["cats", "dogs"]
    assert len(set(copies.values_list("sha256", flat=True))) == 1
    assert pets.unlabelled_count() == LOOSE


def test_relabel_records_who_when_from_and_to(pets, user):
    image = cls(pets, "cats").images.filter(label_conflict=False).first()
    assert relabel(pets, [image.id], cls(pets, "dogs"), user, action="moved") == 1
    image.refresh_from_db()
    assert image.label == "dogs"
    change = LabelChange.objects.get(image=image)
    assert (change.user, change.from_label, change.to_label, change.action) == (user, "cats", "dogs", "moved")
    assert change.image_name == "cats/0.png" and change.at is not None
    # Filing it where it already is changes nothing and records nothing.
    assert relabel(pets, [image.id], cls(pets, "dogs"), user) == 0
    assert LabelChange.objects.filter(image=image).count() == 1


def test_relabel_refuses_a_class_of_another_dataset(pets, user):
    other = ingest(user, {"birds/1.png": image_bytes("spot", 16, seed=7)}, name="Birds")
    with pytest.raises(LabelError, match="another dataset"):
        relabel(pets, unlabelled_ids(pets)[:1], cls(other, "birds"), user)
    assert pets.unlabelled_count() == LOOSE


def test_create_class_refuses_empty_duplicate_and_slashed_names(pets):
    for name, message in [("  ", "Give the class a name"), ("CATS", "already a class"), ("a/b", "cannot contain")]:
        with pytest.raises(LabelError, match=message):
            create_class(pets, name)
    assert create_class(pets, "  fluffy   birds ").name == "fluffy birds"


def test_merge_moves_every_image_and_removes_the_class(pets, user):
    cats, dogs = cls(pets, "cats"), cls(pets, "dogs")
    cat_ids = set(cats.images.values_list("id", flat=True))
    assert merge_classes(cats, dogs, user) == len(cat_ids)
    assert not ImageClass.objects.filter(pk=cats.pk).exists()
    assert set(dogs.images.values_list("id", flat=True)) >= cat_ids
    assert LabelChange.objects.filter(action="classes merged", from_label="cats", to_label="dogs").count() == len(cat_ids)
    # The conflict was cats against dogs; now both copies are dogs, so the flag is gone.
    assert pets.conflict_count() == 0


def test_merge_into_itself_is_refused(pets, user):
    cats = cls(pets, "cats")
    with pytest.raises(LabelError, match="different class"):
        merge_classes(cats, cats, user)


def test_deleting_a_class_sends_its_images_to_the_inbox(pets, user):
    cats = cls(pets, "cats")
    cat_ids = list(cats.images.values_list("id", flat=True))
    images_before = pets.images.count()
    assert delete_class(cats, user) == len(cat_ids)
    assert pets.images.count() == images_before
    assert set(unlabelled_ids(pets)) >= set(cat_ids)
    assert not pets.classes.filter(name="cats").exists()
    assert LabelChange.objects.filter(action="class deleted", from_label="cats", to_label="").count() == len(cat_ids)


def test_rename_refuses_an_existing_name_and_records_a_rename(pets, user):
    cats = cls(pets, "cats")
    with pytest.raises(LabelError, match="already a class"):
        rename_class(cats, "Dogs", user)
    assert cls(pets, "cats").pk == cats.pk
    rename_class(cats, "kittens", user)
    assert pets.classes.filter(name="kittens").exists()
    change = LabelChange.objects.get(action="class renamed")
    assert (change.from_label, change.to_label, change.image) == ("cats", "kittens", None)


def test_resolve_conflict_keeps_one_copy_in_the_chosen_class(pets, user):
    sha = conflicted_sha(pets)
    resolve_conflict(pets, sha, cls(pets, "dogs"), user)
    copies = pets.images.filter(sha256=sha)
    assert copies.count() == 1
    assert copies.get().label == "dogs" and not copies.get().label_conflict
    assert pets.conflict_count() == 0
    assert LabelChange.objects.filter(action="deleted", from_label="cats").count() == 1


def test_resolve_conflict_can_remove_every_copy(pets, user):
    sha = conflicted_sha(pets)
    images_before = pets.images.count()
    resolve_conflict(pets, sha, None, user)
    assert not pets.images.filter(sha256=sha).exists()
    assert pets.images.count() == images_before - 2
    with pytest.raises(LabelError, match="no longer in the dataset"):
        resolve_conflict(pets, sha, None, user)


def test_a_relabel_that_settles_a_conflict_clears_the_flag(pets, user):
    sha = conflicted_sha(pets)
    cat_copy = pets.images.get(sha256=sha, image_class__name="cats")
    relabel(pets, [cat_copy.id], cls(pets, "dogs"), user)
    assert not pets.images.filter(sha256=sha, label_conflict=True).exists()
    # Both copies are now "dogs": they are one image, the oldest stays, and the history says so.
    remaining = pets.images.get(sha256=sha)
    assert remaining.id == min(cat_copy.id, remaining.id) and remaining.image_class.name == "dogs"
    assert pets.label_changes.filter(action="copy removed").count() == 1
    # refresh_conflicts on its own finds a conflict made behind its back.
    other = Image.objects.create(dataset=pets, image_class=cls(pets, "cats"), file=remaining.file.name,
                                 original_name="again.png", width=16, height=16, channels=1, sha256=sha)
    refresh_conflicts(pets, {sha})
    assert set(pets.images.filter(sha256=sha, label_conflict=True).values_list("id", flat=True)) == {
        remaining.id, other.id}


# The inbox

def inbox_url(dataset, name, *args):
    return reverse(f"datasets:{name}", args=[dataset.pk, *args])


def test_the_inbox_page_holds_the_first_unlabelled_images_and_the_classes(alice, pets):
    response = alice.get(inbox_url(pets, "inbox"))
    assert response.status_code == 200
    # The page hands the JavaScript its data as JSON in a script element.
    script = response.content.decode().split('<script id="inbox-data" type="application/json">')[1]
    data = json.loads(script.split("</script>")[0])
    assert [image["id"] for image in data["queue"]] == unlabelled_ids(pets)
    assert data["remaining"] == LOOSE
    assert [c["name"] for c in data["classes"]] == ["cats", "dogs"]
    first = data["queue"][0]
    assert first["url"] == reverse("datasets:image", args=[pets.pk, first["id"]])
    assert first["labelUrl"] == inbox_url(pets, "inbox_label", first["id"])
    assert (first["width"], first["height"], first["name"]) == (16, 16, "loose-0.png")
    assert b"js/inbox.js" in response.content and b"csrfmiddlewaretoken" in response.content


def test_labelling_in_the_inbox_and_undoing_it(alice, pets, user):
    image_id = unlabelled_ids(pets)[0]
    url = inbox_url(pets, "inbox_label", image_id)
    response = alice.post(url, {"class_id": cls(pets, "dogs").pk})
    assert response.status_code == 200
    assert response.json() == {"label": "dogs", "remaining": LOOSE - 1}
    assert Image.objects.get(pk=image_id).label == "dogs"
    change = LabelChange.objects.get(image_id=image_id)
    assert (change.user, change.from_label, change.to_label, change.action) == (user, "", "dogs", "labelled in inbox")

    response = alice.post(url, {"class_id": ""})  # undo
    assert response.json() == {"label": "", "remaining": LOOSE}
    assert Image.objects.get(pk=image_id).image_class is None
    undo = LabelChange.objects.filter(image_id=image_id).first()  # newest first
    assert (undo.from_label, undo.to_label, undo.action) == ("dogs", "", "undo")


@pytest.mark.parametrize("class_id", ["abc", "-1", "999999", "1.5", "²", "9" * 30])
def test_labelling_with_a_bad_class_is_a_plain_message(alice, pets, class_id):
    image_id = unlabelled_ids(pets)[0]
    response = alice.post(inbox_url(pets, "inbox_label", image_id), {"class_id": class_id})
    assert response.status_code == 400
    assert "reload the page" in response.json()["error"]
    assert Image.objects.get(pk=image_id).image_class is None


def test_labelling_with_a_class_of_another_dataset_is_refused(alice, pets, user):
    other = ingest(user, {"birds/1.png": image_bytes("spot", 16, seed=7)}, name="Birds")
    image_id = unlabelled_ids(pets)[0]
    response = alice.post(inbox_url(pets, "inbox_label", image_id), {"class_id": cls(other, "birds").pk})
    assert response.status_code == 400 and "no longer exists" in response.json()["error"]
    assert Image.objects.get(pk=image_id).image_class is None
    # An image of another dataset under this dataset's address is not found.
    bird = other.images.get()
    assert alice.post(inbox_url(pets, "inbox_label", bird.pk), {"class_id": ""}).status_code == 404
    assert alice.get(inbox_url(pets, "inbox_label", image_id)).status_code == 405


def test_the_queue_leaves_out_the_images_the_page_holds(alice, pets):
    ids = unlabelled_ids(pets)
    url = inbox_url(pets, "inbox_queue")
    answer = alice.get(url, {"after": 0, "held": f"{ids[0]},{ids[2]}"}).json()
    assert [image["id"] for image in answer["images"]] == [ids[1], ids[3]]
    assert answer["remaining"] == LOOSE
    answer = alice.get(url, {"after": ids[1], "held": ""}).json()
    assert [image["id"] for image in answer["images"]] == ids[2:]
    assert alice.get(url, {"after": ids[-1]}).json()["images"] == []
    assert alice.get(url, {"after": "9" * 30, "held": "9" * 30}).json()["images"] == []
    # Labelled images leave the queue.
    alice.post(inbox_url(pets, "inbox_label", ids[3]), {"class_id": cls(pets, "cats").pk})
    answer = alice.get(url).json()
    assert [image["id"] for image in answer["images"]] == ids[:3] and answer["remaining"] == LOOSE - 1


@pytest.mark.parametrize("query", [{"after": "x"}, {"held": "1,two"}, {"after": "-5"}, {"held": "٣"}])
def test_the_queue_refuses_ids_that_are_not_numbers(alice, pets, query):
    response = alice.get(inbox_url(pets, "inbox_queue"), query)
    assert response.status_code == 400 and response.json()["error"]


def test_the_inbox_creates_a_class_and_answers_with_it(alice, pets):
    url = inbox_url(pets, "inbox_create_class")
    answer = alice.post(url, {"name": "birds"}).json()
    assert answer == {"id": cls(pets, "birds").pk, "name": "birds"}
    for name, message in [("", "Give the class a name"), ("Birds", "already a class")]:
        response = alice.post(url, {"name": name})
        assert response.status_code == 400 and message in response.json()["error"]
    assert pets.classes.count() == 3


def test_an_empty_inbox_says_so(alice, user):
    dataset = ingest(user, {"cats/1.png": image_bytes("spot", 16, seed=1)}, name="All labelled")
    response = alice.get(inbox_url(dataset, "inbox"))
    assert response.status_code == 200
    assert response.context["inbox_data"]["queue"] == [] and response.context["inbox_data"]["remaining"] == 0
    assert b"Nothing left to label" in response.content


# Classes

def test_the_classes_page_lists_counts_and_thumbnails(alice, pets):
    response = alice.get(inbox_url(pets, "classes"))
    assert response.status_code == 200
    rows = {c.name: c for c in response.context["classes"]}
    assert (rows["cats"].image_count, rows["dogs"].image_count) == (4, 4)
    assert (rows["cats"].conflict_count, rows["dogs"].conflict_count) == (1, 1)
    assert [image.pk for image in rows["cats"].thumbnails] == list(
        cls(pets, "cats").images.order_by("id").values_list("id", flat=True))
    assert reverse("datasets:thumbnail", args=[pets.pk, rows["dogs"].thumbnails[0].pk]).encode() in response.content


def test_classes_are_created_renamed_merged_and_deleted_through_the_page(alice, pets, user):
    response = alice.post(inbox_url(pets, "class_create"), {"name": "birds"}, follow=True)
    assert "The class “birds” was added" in messages_of(response)[0]
    birds = cls(pets, "birds")

    response = alice.post(inbox_url(pets, "class_rename", birds.pk), {"name": "parrots"}, follow=True)
    assert messages_of(response) == ["“birds” is now called “parrots”."]
    assert pets.classes.filter(name="parrots", pk=birds.pk).exists()

    cats, dogs = cls(pets, "cats"), cls(pets, "dogs")
    response = alice.post(inbox_url(pets, "class_merge", cats.pk), {"into": dogs.pk}, follow=True)
    assert messages_of(response) == ["“cats” was merged into “dogs”: 4 images moved."]
    # 4 + 4, less the copy of the picture that was under both: one copy of it stays.
    assert dogs.images.count() == 7 and not pets.classes.filter(name="cats").exists()

    response = alice.post(inbox_url(pets, "class_delete", dogs.pk), follow=True)
    assert messages_of(response) == ["The class “dogs” was removed; its 7 images went back to the inbox."]
    assert pets.unlabelled_count() == LOOSE + 7
    assert list(pets.classes.values_list("name", flat=True)) == ["parrots"]
    assert response.redirect_chain[-1][0] == inbox_url(pets, "classes")


@pytest.mark.parametrize("name,data,message", [
    ("class_create", {"name": ""}, "Give the class a name."),
    ("class_create", {"name": "Cats"}, "There is already a class called “Cats”."),
    ("class_create", {}, "Give the class a name."),
    ("class_rename", {"name": "dogs"}, "There is already a class called “dogs”; merge into it instead."),
    ("class_rename", {"name": "  "}, "Give the class a name."),
    ("class_rename", {"name": "a\\b"}, "Class names cannot contain / or \\, since they become folder names when exported."),
    ("class_merge", {"into": ""}, "Choose the class to merge into."),
    ("class_merge", {"into": "abc"}, "That is not a valid class; reload the page and try again."),
    ("class_merge", {"into": "²"}, "That is not a valid class; reload the page and try again."),
    ("class_merge", {"into": "9" * 30}, "That class no longer exists; reload the page to see the current classes."),
    ("class_merge", {"into": "999999"}, "That class no longer exists; reload the page to see the current classes."),
    ("class_merge", {"into": "SELF"}, "Choose a different class to merge into."),
])
def test_bad_class_changes_are_plain_messages(alice, pets, name, data, message):
    cats = cls(pets, "cats")
    data = {key: str(cats.pk) if value == "SELF" else value for key, value in data.items()}
    args = [] if name == "class_create" else [cats.pk]
    response = alice.post(inbox_url(pets, name, *args), data, follow=True)
    assert response.status_code == 200
    assert messages_of(response) == [message]
    assert sorted(pets.classes.values_list("name", flat=True)) == ["cats", "dogs"]
    assert cats.images.count() == 4


def test_a_class_of_another_dataset_cannot_be_changed_from_this_one(alice, pets, user):
    other = ingest(user, {"birds/1.png": image_bytes("spot", 16, seed=7)}, name="Birds")
    birds = cls(other, "birds")
    for name, data in [("class_rename", {"name": "x"}), ("class_merge", {"into": cls(pets, "cats").pk}),
                       ("class_delete", {})]:
        assert alice.post(inbox_url(pets, name, birds.pk), data).status_code == 404
    response = alice.post(inbox_url(pets, "class_merge", cls(pets, "cats").pk), {"into": birds.pk}, follow=True)
    assert "no longer exists" in messages_of(response)[0]
    assert cls(other, "birds").images.count() == 1 and cls(pets, "cats").images.count() == 4


# Label conflicts

def test_the_conflicts_page_shows_each_picture_with_its_classes(alice, pets):
    response = alice.get(inbox_url(pets, "conflicts"))
    assert response.status_code == 200
    [group] = response.context["groups"]
    assert group["sha256"] == conflicted_sha(pets)
    assert sorted(image.original_name for image in group["images"]) == ["cats/same-0.png", "dogs/same-0-copy.png"]
    assert [c.name for c in group["classes"]] == ["cats", "dogs"]
    content = response.content.decode()
    assert "It is “cats”" in content and "It is “dogs”" in content and "Remove it from the dataset" in content


def test_a_conflict_is_settled_by_choosing_a_class(alice, pets):
    sha = conflicted_sha(pets)
    response = alice.post(inbox_url(pets, "conflict_resolve"), {"sha256": sha, "class_id": cls(pets, "cats").pk,
                                                               "page": "1"}, follow=True)
    assert messages_of(response) == ["Settled: the picture is now only in “cats”."]
    assert response.redirect_chain[-1][0] == inbox_url(pets, "conflicts") + "?page=1"
    assert [image.label for image in pets.images.filter(sha256=sha)] == ["cats"]
    assert pets.conflict_count() == 0 and response.context["groups"] == []
    assert b"Nothing to settle" in response.content


def test_a_conflict_is_settled_by_removing_the_picture(alice, pets):
    sha = conflicted_sha(pets)
    response = alice.post(inbox_url(pets, "conflict_resolve"), {"sha256": sha, "remove": "1"}, follow=True)
    assert messages_of(response) == ["Settled: the picture was removed from the dataset."]
    assert not pets.images.filter(sha256=sha).exists()


@pytest.mark.parametrize("data,message", [
    ({"sha256": "f" * 64, "class_id": "CATS"}, "That picture is no longer in the dataset."),
    ({"sha256": "nonsense", "remove": "1"}, "That picture is no longer in the dataset."),
    ({"sha256": "SHA"}, "Choose the class this picture belongs to."),
    ({"sha256": "SHA", "class_id": "x"}, "That is not a valid class; reload the page and try again."),
    ({"sha256": "SHA", "class_id": "999999"}, "That class no longer exists; reload the page to see the current classes."),
])
def test_bad_conflict_answers_are_plain_messages(alice, pets, data, message):
    sha = conflicted_sha(pets)
    data = {key: {"SHA": sha, "CATS": str(cls(pets, "cats").pk)}.get(value, value) for key, value in data.items()}
    response = alice.post(inbox_url(pets, "conflict_resolve"), data, follow=True)
    assert response.status_code == 200 and messages_of(response) == [message]
    assert pets.images.filter(sha256=sha, label_conflict=True).count() == 2


def test_the_conflicts_page_takes_the_same_number_of_queries_for_more_pictures(alice, user):
    few = ingest(user, pets_files(conflicts=1), name="Few")
    many = ingest(user, pets_files(conflicts=6, seed=10_000), name="Many")
    counts = []
    for dataset in (few, many):
        with CaptureQueriesContext(connection) as queries:
            response = alice.get(inbox_url(dataset, "conflicts"))
        assert len(response.context["groups"]) == dataset.conflict_count()
        counts.append(len(queries))
    assert counts[0] == counts[1]
    assert len(response.context["groups"]) == 6


# History

def test_the_history_lists_changes_newest_first_in_words(alice, pets, user):
    image_id = unlabelled_ids(pets)[0]
    alice.post(inbox_url(pets, "inbox_label", image_id), {"class_id": cls(pets, "cats").pk})
    alice.post(inbox_url(pets, "inbox_label", image_id), {"class_id": ""})
    rename_class(cls(pets, "dogs"), "puppies", user)
    response = alice.get(inbox_url(pets, "history"))
    assert response.status_code == 200
    changes = list(response.context["page"].object_list)
    assert [c.action for c in changes] == ["class renamed", "undo", "labelled in inbox"]
    content = response.content.decode()
    assert content.index("Class renamed") < content.index("Undone in the inbox") < content.index("Labelled in the inbox")
    assert reverse("datasets:image", args=[pets.pk, image_id]) in content
    assert "no class" in content and "alice" in content and "the whole class" in content


def test_the_history_of_a_removed_picture_names_it_without_a_link(alice, pets, user):
    resolve_conflict(pets, conflicted_sha(pets), None, user)
    content = alice.get(inbox_url(pets, "history")).content.decode()
    assert "(no longer in the dataset)" in content and "Removed from the dataset" in content


def test_the_history_is_paginated(alice, pets, user):
    LabelChange.objects.bulk_create(LabelChange(dataset=pets, user=user, image_name=f"{i}.png", from_label="",
                                                to_label="cats", action="moved") for i in range(150))
    first = alice.get(inbox_url(pets, "history"))
    assert len(first.context["page"].object_list) == 100
    second = alice.get(inbox_url(pets, "history"), {"page": 2})
    assert len(second.context["page"].object_list) == 50
    assert alice.get(inbox_url(pets, "history"), {"page": "abc"}).status_code == 200


# Who may see what

def every_url(dataset):
    image_id = dataset.images.first().pk
    class_id = cls(dataset, "cats").pk
    return [
        ("get", inbox_url(dataset, "inbox"), {}),
        ("get", inbox_url(dataset, "inbox_queue"), {}),
        ("post", inbox_url(dataset, "inbox_label", image_id), {"class_id": class_id}),
        ("post", inbox_url(dataset, "inbox_create_class"), {"name": "x"}),
        ("get", inbox_url(dataset, "classes"), {}),
        ("post", inbox_url(dataset, "class_create"), {"name": "x"}),
        ("post", inbox_url(dataset, "class_rename", class_id), {"name": "x"}),
        ("post", inbox_url(dataset, "class_merge", class_id), {"into": cls(dataset, "dogs").pk}),
        ("post", inbox_url(dataset, "class_delete", class_id), {}),
        ("get", inbox_url(dataset, "conflicts"), {}),
        ("post", inbox_url(dataset, "conflict_resolve"), {"sha256": conflicted_sha(dataset), "remove": "1"}),
        ("get", inbox_url(dataset, "history"), {}),
    ]


def test_another_user_gets_404_on_every_labelling_url(client, pets, other_user):
    client.force_login(other_user)
    for method, url, data in every_url(pets):
        assert getattr(client, method)(url, data).status_code == 404, url
    assert sorted(pets.classes.values_list("name", flat=True)) == ["cats", "dogs"]
    assert pets.conflict_count() == 1 and pets.unlabelled_count() == LOOSE
    assert not LabelChange.objects.exists()


def test_visitors_who_are_not_logged_in_are_sent_to_log_in(client, pets):
    for method, url, data in every_url(pets):
        response = getattr(client, method)(url, data)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), url


def test_posts_without_the_csrf_token_are_refused(pets, user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    for method, url, data in every_url(pets):
        if method == "post":
            assert client.post(url, data).status_code == 403, url
    assert not LabelChange.objects.exists()


def test_the_classes_page_takes_as_many_queries_for_many_images_as_for_few(alice, user, django_assert_num_queries):
    small = ingest(user, pets_files())
    many = {f"{kind}/{i}.png": image_bytes(kind, 16, seed=i) for kind in ("horizontal", "vertical")
            for i in range(20)}
    large = ingest(user, many, name="Many")
    alice.get(inbox_url(small, "classes"))  # the session and user are cached after the first request
    counts = []
    for dataset in (small, large):
        with django_assert_num_queries(6) as captured:
            assert alice.get(inbox_url(dataset, "classes")).status_code == 200
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1]
