"""The gallery (filters, pages, the data of the large view) and bulk editing from it."""
import re

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from datasets_app.models import Dataset, Image, ImageClass, LabelChange

# A tile's checkbox carries the image's id; counting them counts the images shown.
TICK = re.compile(r'<input type="checkbox" class="tick" name="image" value="(\d+)"')


def gallery_url(dataset, **params):
    url = reverse("datasets:gallery", args=[dataset.pk])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


def shown_ids(response):
    assert response.status_code == 200
    return [int(i) for i in TICK.findall(response.content.decode())]


def tile_of(page, image_id):
    """The markup of one image's tile."""
    tiles = [chunk.split("</li>")[0] for chunk in page.split('<li class="tile')[1:]]
    found = [tile for tile in tiles if f'name="image" value="{image_id}"' in tile]
    assert len(found) == 1, f"image {image_id} is shown {len(found)} times"
    return found[0]


def class_named(dataset, name):
    return dataset.classes.get(name=name)


def bulk(client, dataset, follow=False, **data):
    return client.post(reverse("datasets:bulk", args=[dataset.pk]), data, follow=follow)


def only_message(response):
    found = [str(m) for m in get_messages(response.wsgi_request)]
    assert len(found) == 1, found
    return found[0]


def labels_and_splits(dataset):
    """Everything a bulk edit could change, to check that a refused one changed nothing."""
    return list(dataset.images.order_by("id").values_list("id", "image_class_id", "split", "split_fixed"))


@pytest.fixture
def big(user, shapes):
    """A dataset of 250 images for the same user, made in one bulk_create of rows that reuse
    the shapes' files, since ingesting that many would only slow the suite down."""
    dataset = Dataset.objects.create(owner=user, name="Many shapes")
    classes = [ImageClass.objects.create(dataset=dataset, name=name) for name in ("a", "b")]
    source = list(shapes.images.order_by("id"))
    Image.objects.bulk_create([
        Image(dataset=dataset, image_class=classes[i % 2], file=source[i % len(source)].file.name,
              original_name=f"many/{i:03}.png", split=("train", "val", "test")[i % 3], width=16, height=16,
              channels=1, sha256=f"{i:064x}")
        for i in range(250)
    ])
    return dataset


# -- the gallery page --------------------------------------------------------------------------

def test_the_gallery_shows_every_image_with_the_data_of_its_large_view(alice, shapes):
    response = alice.get(gallery_url(shapes))
    page = response.content.decode()
    images = list(shapes.images.select_related("image_class").order_by("id"))
    assert shown_ids(response) == [image.id for image in images]
    assert "Showing 1–30 of 30 images." in page
    for image in images:
        assert reverse("datasets:thumbnail", args=[shapes.pk, image.pk]) in page
        assert f'data-full="{reverse("datasets:image", args=[shapes.pk, image.pk])}"' in page
        assert f'data-name="{image.original_name}"' in page
    first = images[0]
    tile = tile_of(page, first.id)
    assert f'data-width="{first.width}" data-height="{first.height}"' in tile
    assert f'data-label="{first.image_class.name}"' in tile
    assert f'data-split="{first.get_split_display()}"' in tile
    assert 'loading="lazy"' in page
    assert 'href="/static/css/gallery.css"' in page and 'src="/static/js/gallery.js"' in page


def test_the_class_filter_lists_classes_with_their_counts(alice, shapes):
    page = alice.get(gallery_url(shapes)).content.decode()
    for image_class in shapes.classes.all():
        assert f'<option value="{image_class.pk}">{image_class.name} (10)</option>' in page
    assert '<option value="none">No class (inbox) (0)</option>' in page


def test_filter_by_class(alice, shapes):
    spot = class_named(shapes, "spot")
    response = alice.get(gallery_url(shapes, **{"class": spot.pk}))
    assert shown_ids(response) == list(spot.images.order_by("id").values_list("id", flat=True))
    assert len(shown_ids(response)) == 10
    assert f'<option value="{spot.pk}" selected>spot (10)</option>' in response.content.decode()


def test_filter_by_split(alice, shapes):
    for split in ("train", "val", "test"):
        expected = list(shapes.images.filter(split=split).order_by("id").values_list("id", flat=True))
        assert expected, f"the shapes have no {split} images to filter"
        assert shown_ids(alice.get(gallery_url(shapes, split=split))) == expected


def test_filter_by_status_and_the_inbox(alice, shapes):
    inbox = list(shapes.images.order_by("id").values_list("id", flat=True)[:3])
    Image.objects.filter(id__in=inbox).update(image_class=None)
    assert shown_ids(alice.get(gallery_url(shapes, status="unlabelled"))) == inbox
    assert shown_ids(alice.get(gallery_url(shapes, **{"class": "none"}))) == inbox
    labelled = shown_ids(alice.get(gallery_url(shapes, status="labelled")))
    assert len(labelled) == 27 and not set(labelled) & set(inbox)
    page = alice.get(gallery_url(shapes, status="unlabelled")).content.decode()
    assert 'data-label="no class yet"' in page
    assert '<option value="none">No class (inbox) (3)</option>' in page


def test_filter_by_label_conflict(alice, shapes):
    flagged = list(shapes.images.order_by("-id").values_list("id", flat=True)[:2])
    Image.objects.filter(id__in=flagged).update(label_conflict=True)
    response = alice.get(gallery_url(shapes, status="conflict"))
    assert shown_ids(response) == sorted(flagged)
    page = response.content.decode()
    for image_id in flagged:
        assert 'data-conflict="yes"' in tile_of(page, image_id)
        assert "label conflict</span>" in tile_of(page, image_id)
    others = alice.get(gallery_url(shapes, status="labelled")).content.decode()
    assert others.count('data-conflict="yes"') == 2


def test_filters_combine(alice, shapes):
    spot = class_named(shapes, "spot")
    expected = list(spot.images.filter(split="train").order_by("id").values_list("id", flat=True))
    assert shown_ids(alice.get(gallery_url(shapes, **{"class": spot.pk}, split="train"))) == expected


def test_filters_that_do_not_apply_show_every_image(alice, shapes, big):
    everything = list(shapes.images.order_by("id").values_list("id", flat=True))
    another_datasets_class = big.classes.first().pk
    for params in ({"class": "cats"}, {"class": another_datasets_class}, {"class": "²"}, {"class": "9" * 5000},
                   {"class": "9" * 30}, {"split": "holiday"},
                   {"status": "sad"}, {"page": "many"}):
        assert shown_ids(alice.get(gallery_url(shapes, **params))) == everything, params


def test_no_matching_images_says_so(alice, shapes):
    response = alice.get(gallery_url(shapes, status="conflict"))
    assert shown_ids(response) == []
    assert "No images match these filters." in response.content.decode()


def test_pages_of_a_hundred_cover_every_image_once(alice, big):
    first, second, third = (alice.get(gallery_url(big, page=n)) for n in (1, 2, 3))
    assert len(shown_ids(first)) == 100 and len(shown_ids(second)) == 100 and len(shown_ids(third)) == 50
    every = shown_ids(first) + shown_ids(second) + shown_ids(third)
    assert every == list(big.images.order_by("id").values_list("id", flat=True))
    assert "Showing 1–100 of 250 images." in first.content.decode()
    assert "Showing 201–250 of 250 images." in third.content.decode()
    assert "Page 2 of 3" in second.content.decode()
    # A page past the end shows the last one rather than an error.
    assert shown_ids(alice.get(gallery_url(big, page=99))) == shown_ids(third)


def test_page_links_keep_the_filters(alice, big):
    a = class_named(big, "a")
    page = alice.get(gallery_url(big, **{"class": a.pk}, status="labelled")).content.decode()
    assert 'id="next-page"' in page
    assert f'href="?class={a.pk}&amp;status=labelled&amp;page=2"' in page
    second = alice.get(gallery_url(big, **{"class": a.pk}, status="labelled", page=2))
    assert shown_ids(second) == list(a.images.order_by("id").values_list("id", flat=True)[100:])


def test_thousands_are_written_with_separators(alice, user, shapes):
    dataset = Dataset.objects.create(owner=user, name="Large")
    file_name = shapes.images.first().file.name
    Image.objects.bulk_create([
        Image(dataset=dataset, file=file_name, original_name=f"{i}.png", width=16, height=16, channels=1,
              sha256=f"{i:064x}") for i in range(1205)
    ])
    page = alice.get(gallery_url(dataset, page=13)).content.decode()
    assert "Showing 1,201–1,205 of 1,205 images." in page


# The queries of one gallery page: the session and the user (the login), the dataset, the
# classes with their counts, the inbox count, the number of matching images, and the page.
QUERIES_PER_PAGE = 7


@pytest.mark.parametrize("which, params, images_shown", [
    ("shapes", {}, 30),
    ("big", {}, 100),
    ("big", {"page": 2}, 100),
    ("big", {"page": 3}, 50),
    ("big", {"split": "val"}, 83),
    ("big", {"status": "labelled", "split": "test", "page": 1}, 83),
])
def test_a_page_costs_the_same_queries_whatever_its_size(alice, shapes, big, django_assert_num_queries,
                                                          which, params, images_shown):
    dataset = {"shapes": shapes, "big": big}[which]
    with django_assert_num_queries(QUERIES_PER_PAGE):
        response = alice.get(gallery_url(dataset, **params))
    assert len(shown_ids(response)) == images_shown


# -- bulk editing ------------------------------------------------------------------------------

def test_move_to_class_records_who_moved_what(alice, user, shapes):
    spot, vertical = class_named(shapes, "spot"), class_named(shapes, "vertical")
    ids = list(spot.images.order_by("id").values_list("id", flat=True)[:4])
    next_url = gallery_url(shapes, **{"class": spot.pk}, page=1)
    response = bulk(alice, shapes, image=ids, action="class", to_class=vertical.pk, next=next_url)
    assert response.status_code == 302 and response.url == next_url
    assert only_message(response) == "Moved 4 images to “vertical”."
    assert set(Image.objects.filter(id__in=ids).values_list("image_class", flat=True)) == {vertical.pk}
    changes = LabelChange.objects.filter(dataset=shapes, image_id__in=ids)
    assert changes.count() == 4
    assert set(changes.values_list("user", "from_label", "to_label", "action")) == {
        (user.pk, "spot", "vertical", "moved in gallery")}
    assert spot.images.count() == 6


def test_move_to_the_inbox(alice, shapes):
    ids = list(shapes.images.order_by("id").values_list("id", flat=True)[:2])
    response = bulk(alice, shapes, image=ids, action="class", to_class="none", next=gallery_url(shapes))
    assert only_message(response) == "Moved 2 images to the inbox (no class)."
    assert shapes.images.filter(id__in=ids, image_class__isnull=True).count() == 2
    assert set(LabelChange.objects.filter(image_id__in=ids).values_list("to_label", flat=True)) == {""}


def test_moving_images_to_the_class_they_are_in_changes_nothing(alice, shapes):
    spot = class_named(shapes, "spot")
    ids = list(spot.images.values_list("id", flat=True)[:3])
    response = bulk(alice, shapes, image=ids, action="class", to_class=spot.pk)
    assert only_message(response) == "Nothing changed: the selected images were already in “spot”."
    assert not LabelChange.objects.filter(dataset=shapes).exists()


def test_move_to_split_fixes_the_split(alice, shapes):
    ids = list(shapes.images.filter(split="train").order_by("id").values_list("id", flat=True)[:5])
    response = bulk(alice, shapes, image=ids, action="split", to_split="test", next=gallery_url(shapes))
    assert only_message(response) == "Moved 5 images to the test set."
    assert set(shapes.images.filter(id__in=ids).values_list("split", "split_fixed")) == {("test", True)}
    # The others keep theirs and can still be split again.
    assert shapes.images.exclude(id__in=ids).filter(split_fixed=True).count() == 0


def test_delete_removes_the_images_and_records_it(alice, user, shapes):
    ids = list(shapes.images.order_by("id").values_list("id", flat=True)[:3])
    response = bulk(alice, shapes, image=ids, action="delete", next=gallery_url(shapes))
    assert only_message(response).startswith("Deleted 3 images from this dataset.")
    assert not Image.objects.filter(id__in=ids).exists()
    assert shapes.images.count() == 27
    assert LabelChange.objects.filter(dataset=shapes, action="deleted", user=user).count() == 3


def test_the_large_view_moves_or_removes_one_picture_and_the_gallery_offers_to_undo_it(alice, user, shapes):
    spot, vertical = class_named(shapes, "spot"), class_named(shapes, "vertical")
    image = spot.images.order_by("id").first()
    change_url = reverse("datasets:picture_change", args=[shapes.pk, image.pk])
    page = alice.get(gallery_url(shapes)).content.decode()
    tile = tile_of(page, image.id)
    assert f'data-change="{change_url}"' in tile and f'data-class="{spot.pk}"' in tile
    assert 'id="viewer-change"' in page and 'id="picture-undo"' not in page

    back = f"{gallery_url(shapes)}#view-{image.pk}"  # the large view opens again on this picture
    response = alice.post(change_url, {"to": vertical.pk, "next": back, "from": "gallery"})
    assert response.status_code == 302 and response.url == back
    assert Image.objects.get(id=image.id).image_class == vertical
    assert LabelChange.objects.filter(image_id=image.id).first().action == "moved in gallery"  # as its bulk move
    page = alice.get(gallery_url(shapes)).content.decode()
    assert "was moved from “spot” to “vertical”" in page and 'id="picture-undo"' in page
    alice.post(reverse("datasets:picture_undo", args=[shapes.pk]), {"next": gallery_url(shapes)})
    assert Image.objects.get(id=image.id).image_class == spot

    alice.post(change_url, {"to": "remove", "next": back, "from": "gallery"})
    assert not Image.objects.filter(id=image.id).exists()
    alice.post(reverse("datasets:picture_undo", args=[shapes.pk]), {"next": gallery_url(shapes)})
    assert Image.objects.get(id=image.id).image_class == spot
    assert [c.action for c in LabelChange.objects.filter(dataset=shapes)][:2] == ["restored", "deleted"]


def test_the_message_is_shown_back_on_the_gallery(alice, shapes):
    ids = list(shapes.images.values_list("id", flat=True)[:1])
    response = bulk(alice, shapes, follow=True, image=ids, action="split", to_split="val",
                    next=gallery_url(shapes, split="val"))
    assert response.redirect_chain[-1][0] == gallery_url(shapes, split="val")
    assert "Moved 1 image to the validation set." in response.content.decode()


def test_the_delete_button_warns_what_deleting_means(alice, shapes):
    page = alice.get(gallery_url(shapes)).content.decode()
    assert 'data-confirm="Delete the selected images? They leave this dataset for good; training runs that ' \
           'already finished keep the images they learned from."' in page


@pytest.mark.parametrize("data, message", [
    ({"action": "class", "to_class": "HORIZONTAL"}, "Select at least one image first."),
    ({"image": ["12", "twelve"], "action": "split", "to_split": "val"},
     "The selection could not be read. Reload the page and select the images again."),
    ({"image": [str(i) for i in range(1, 502)], "action": "delete"}, "Select at most 500 images at a time."),
    ({"image": ["9" * 5000], "action": "delete"},
     "The selection could not be read. Reload the page and select the images again."),
    ({"image": ["-1"], "action": "delete"},
     "The selection could not be read. Reload the page and select the images again."),
    ({"image": "FIRST", "action": "split", "to_split": "holiday"}, "Choose training, validation or test."),
    ({"image": "FIRST", "action": "split"}, "Choose training, validation or test."),
    ({"image": "FIRST", "action": "class", "to_class": "OTHER"},
     "That class is not in this dataset any more. Reload the page and choose again."),
    ({"image": "FIRST", "action": "class", "to_class": "9" * 5000},
     "That class is not in this dataset any more. Reload the page and choose again."),
    ({"image": "FIRST", "action": "class", "to_class": "cats"},
     "That class is not in this dataset any more. Reload the page and choose again."),
    ({"image": "FIRST", "action": "class"},
     "That class is not in this dataset any more. Reload the page and choose again."),
    ({"image": "FIRST", "action": "paint"}, "Choose what to do with the selected images: move them to a class, "
                                            "move them to a split, or delete them."),
    ({"image": "FIRST"}, "Choose what to do with the selected images: move them to a class, "
                         "move them to a split, or delete them."),
])
def test_bad_input_gets_a_message_and_changes_nothing(alice, shapes, big, data, message):
    first = shapes.images.order_by("id").first()
    substitutes = {"FIRST": str(first.pk), "HORIZONTAL": str(class_named(shapes, "horizontal").pk),
                   "OTHER": str(big.classes.first().pk)}
    data = {key: substitutes.get(value, value) if isinstance(value, str) else value for key, value in data.items()}
    before, images_before = labels_and_splits(shapes), Image.objects.count()
    response = bulk(alice, shapes, next=gallery_url(shapes, status="labelled"), **data)
    assert response.status_code == 302 and response.url == gallery_url(shapes, status="labelled")
    messages = list(get_messages(response.wsgi_request))
    assert [(m.level_tag, str(m)) for m in messages] == [("error", message)]
    assert labels_and_splits(shapes) == before and Image.objects.count() == images_before
    assert not LabelChange.objects.exists()


def test_ids_too_large_for_the_database_are_no_error(alice, shapes):
    before = labels_and_splits(shapes)
    response = bulk(alice, shapes, follow=True, image=["9" * 30], action="split", to_split="val")
    assert "The selection could not be read." in response.content.decode()
    response = bulk(alice, shapes, follow=True, image=[shapes.images.first().pk], action="class",
                    to_class="9" * 30)
    assert "That class is not in this dataset any more." in response.content.decode()
    assert labels_and_splits(shapes) == before


def test_more_fields_than_django_takes_is_a_bad_request_that_changes_nothing(alice, shapes):
    ids = list(shapes.images.values_list("id", flat=True))
    response = bulk(alice, shapes, image=ids * 40, action="delete")
    assert response.status_code == 400
    assert shapes.images.count() == 30


def test_images_of_another_dataset_are_left_alone(alice, shapes, big):
    theirs = list(big.images.order_by("id").values_list("id", flat=True)[:2])
    mine = shapes.images.order_by("id").first()
    before = labels_and_splits(big)
    response = bulk(alice, shapes, image=[*theirs, mine.pk], action="split", to_split="test")
    assert only_message(response) == "Moved 1 image to the test set."
    assert labels_and_splits(big) == before
    bulk(alice, shapes, image=theirs, action="delete")
    assert big.images.filter(id__in=theirs).count() == 2


@pytest.mark.parametrize("next_url", [
    "https://evil.example/datasets/1/gallery/", "//evil.example/datasets/1/gallery/", "/admin/",
    "/datasets/OTHER/gallery/", "javascript:alert(1)", "http://[", "/datasets/1/gallery/\\evil", "", None,
])
def test_going_back_stays_on_this_datasets_gallery(alice, shapes, big, next_url):
    data = {"image": [shapes.images.first().pk], "action": "split", "to_split": "val"}
    if next_url is not None:
        data["next"] = next_url.replace("OTHER", str(big.pk))
    response = bulk(alice, shapes, **data)
    assert response.url == gallery_url(shapes)


def test_going_back_keeps_only_the_gallerys_own_parameters(alice, shapes):
    next_url = gallery_url(shapes, split="val", page=2, status="labelled") + "&evil=%0D%0ALocation:x"
    response = bulk(alice, shapes, image=[shapes.images.first().pk], action="split", to_split="val", next=next_url)
    assert response.url == gallery_url(shapes, split="val", page=2, status="labelled")


# -- who may do what ---------------------------------------------------------------------------

def test_another_users_dataset_is_not_found(client, other_user, shapes):
    client.force_login(other_user)
    before = labels_and_splits(shapes)
    ids = list(shapes.images.values_list("id", flat=True))
    assert client.get(gallery_url(shapes)).status_code == 404
    for data in ({"action": "delete"}, {"action": "split", "to_split": "val"},
                 {"action": "class", "to_class": "none"}):
        assert bulk(client, shapes, image=ids, **data).status_code == 404
    assert labels_and_splits(shapes) == before
    assert not LabelChange.objects.exists()


def test_people_not_logged_in_are_sent_to_log_in(client, shapes):
    response = client.get(gallery_url(shapes))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
    response = bulk(client, shapes, image=[shapes.images.first().pk], action="delete")
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
    assert shapes.images.count() == 30


def test_bulk_only_takes_posts(alice, shapes):
    assert alice.get(reverse("datasets:bulk", args=[shapes.pk])).status_code == 405


def test_bulk_needs_the_csrf_token(user, shapes):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = bulk(client, shapes, image=[shapes.images.first().pk], action="delete")
    assert response.status_code == 403
    assert shapes.images.count() == 30
    page = client.get(gallery_url(shapes)).content.decode()
    assert 'name="csrfmiddlewaretoken"' in page[page.index('id="bulk-form"'):]
