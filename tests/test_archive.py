import io
import stat
import zipfile

import pytest

from mlcore.archive import (
    ArchiveLimits,
    ArchiveRejected,
    list_folder,
    plan_files,
    plan_zip,
    read_entries,
    read_files,
)
from tests.images import image_bytes, make_zip

PNG = image_bytes("spot", 8)


def plan(files, **limits):
    return plan_zip(io.BytesIO(make_zip(files)), ArchiveLimits(**limits))


def test_the_folder_name_is_the_label():
    result = plan({"cats/1.png": PNG, "dogs/2.png": PNG})
    assert [(i.label, i.split) for i in result.images] == [("cats", None), ("dogs", None)]


def test_one_folder_around_everything_is_dropped():
    result = plan({"pets/cats/1.png": PNG, "pets/dogs/2.png": PNG})
    assert result.labels == ["cats", "dogs"]


def test_train_and_test_folders_set_the_split():
    result = plan({"mnist-png/train/3/1.png": PNG, "mnist-png/test/7/2.png": PNG, "mnist-png/val/7/3.png": PNG})
    assert [(i.label, i.split) for i in result.images] == [("3", "train"), ("7", "test"), ("7", "val")]


def test_non_images_and_nested_archives_are_skipped_with_a_reason():
    result = plan({"readme.txt": b"hi", "cats/notes.txt": b"x", "cats/1.png": PNG, "dogs/2.png": PNG,
                   "dogs/more.zip": b"PK", "__MACOSX/cats/._1.png": b"", "cats/.DS_Store": b""})
    assert dict(result.skipped) == {
        "readme.txt": "not an image file (PNG, JPEG, BMP or GIF)",
        "cats/notes.txt": "not an image file (PNG, JPEG, BMP or GIF)",
        "dogs/more.zip": "an archive inside the archive is not opened",
    }
    assert len(result.images) == 2


def test_loose_images_have_no_label_and_wait_in_the_inbox():
    result = plan({"new1.png": PNG, "cats/1.png": PNG})
    assert [(i.name, i.label) for i in result.images] == [("new1.png", None), ("cats/1.png", "cats")]
    assert result.labels == ["cats"]


def test_a_folder_on_disk_is_planned_by_the_same_rules_and_links_are_not_followed(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "1.png").write_bytes(PNG)
    (tmp_path / "train" / "dogs").mkdir(parents=True)
    (tmp_path / "train" / "dogs" / "2.png").write_bytes(PNG)
    (tmp_path / "cats" / "secret.png").symlink_to("/etc/passwd")
    (tmp_path / "elsewhere").symlink_to("/etc", target_is_directory=True)
    files, skipped = list_folder(str(tmp_path))
    assert files == [("cats/1.png", len(PNG)), ("train/dogs/2.png", len(PNG))]
    assert skipped == [("cats/secret.png", "a link is not followed"), ("elsewhere", "a link is not followed")]
    result = plan_files(files)
    assert [(i.label, i.split) for i in result.images] == [("cats", None), ("dogs", "train")]
    paths = {name: str(tmp_path / name) for name, _ in files}
    assert [data for _, data, _ in read_files(paths, result)] == [PNG, PNG]


def test_files_sent_by_a_browser_are_checked_like_zip_entries():
    with pytest.raises(ArchiveRejected, match="points outside"):
        plan_files([("cats/../../etc/x.png", 10)])
    with pytest.raises(ArchiveRejected, match="limit is 1"):
        plan_files([("a/1.png", 10), ("b/2.png", 10)], ArchiveLimits(max_entries=1))
    with pytest.raises(ArchiveRejected, match="unpack to"):
        plan_files([("a/1.png", 10), ("b/2.png", 10)], ArchiveLimits(max_total_bytes=15))


@pytest.mark.parametrize("name", ["../../x.png", "cats/../../x.png", "/etc/x.png", "C:/x.png", "cats\\..\\x.png"])
def test_it_refuses_entries_that_climb_out(name):
    with pytest.raises(ArchiveRejected, match="refused"):
        plan({"cats/1.png": PNG, name: PNG})


def test_it_refuses_links():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cats/1.png", PNG)
        link = zipfile.ZipInfo("cats/2.png")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(ArchiveRejected, match="is a link"):
        plan_zip(io.BytesIO(buffer.getvalue()))


def test_it_refuses_too_many_entries():
    with pytest.raises(ArchiveRejected, match="entries"):
        plan({f"c{i % 2}/{i}.png": PNG for i in range(11)}, max_entries=10)


def test_it_refuses_a_zip_that_declares_too_many_bytes():
    with pytest.raises(ArchiveRejected, match="unpack"):
        plan({"a/1.png": b"\0" * 5000, "b/1.png": PNG}, max_total_bytes=4000)


def test_it_refuses_a_file_that_is_not_a_zip():
    with pytest.raises(ArchiveRejected, match="not a zip"):
        plan_zip(io.BytesIO(b"just some text"))


def test_reading_skips_entries_that_compress_suspiciously_well():
    data = make_zip({"a/bomb.png": b"\0" * (3 * 1024**2), "b/1.png": PNG})
    limits = ArchiveLimits()
    results = list(read_entries(io.BytesIO(data), plan_zip(io.BytesIO(data), limits), limits))
    assert [(p.name, reason) for p, _, reason in results] == [
        ("a/bomb.png", "the file is compressed suspiciously well (a zip bomb?)"), ("b/1.png", None)]


def test_reading_counts_the_bytes_really_decompressed():
    data = make_zip({"a/1.png": PNG, "b/1.png": PNG})
    honest = plan_zip(io.BytesIO(data))
    limits = ArchiveLimits(max_total_bytes=len(PNG) + 10)  # as if the directory had understated the sizes
    with pytest.raises(ArchiveRejected, match="more bytes"):
        list(read_entries(io.BytesIO(data), honest, limits))
