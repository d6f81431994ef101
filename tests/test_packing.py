"""Packed dataset versions: decoded once, shared by runs, the same from one process or several."""
import os

import billiard
import numpy as np

from mlcore.packing import PackItem, PackSpec, build_pack, load_pack, pack_is_ready
from tests.conftest import new_run
from tests.images import image_bytes
from training_app.models import TrainingRun
from training_app.runner import load_arrays, pack_folder


def items_in(tmp_path, count=12):
    items = []
    for i in range(count):
        path = tmp_path / f"{i}.png"
        path.write_bytes(image_bytes("spot" if i % 2 else "vertical", 20, seed=i))
        items.append(PackItem(str(path), i % 2, ("train", "train", "val", "test")[i % 4], 100 + i))
    return items


def test_a_pack_holds_every_split_resized_with_labels_and_ids(tmp_path):
    items = items_in(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot any more")
    items.append(PackItem(str(tmp_path / "broken.png"), 0, "train", 999))
    folder = build_pack(items, PackSpec((8, 8), 1, 10**6), str(tmp_path / "pack"))
    pack = load_pack(folder)
    x, y, ids = pack["train"]
    assert x.shape == (6, 8, 8, 1) and x.dtype == np.uint8
    assert list(ids) == [100, 101, 104, 105, 108, 109]  # the broken file is left out
    assert list(y) == [0, 1, 0, 1, 0, 1]
    assert len(pack["val"][0]) == 3 and len(pack["test"][0]) == 3


def test_a_pool_of_processes_packs_the_same_arrays(tmp_path, monkeypatch):
    import mlcore.packing

    monkeypatch.setattr(mlcore.packing, "CHUNK_IMAGES", 4)
    items = items_in(tmp_path, 20)
    spec = PackSpec((10, 10), 3, 10**6)
    alone = load_pack(build_pack(items, spec, str(tmp_path / "one")))
    pooled = load_pack(build_pack(items, spec, str(tmp_path / "two"), processes=2,
                                  pool_factory=lambda n: billiard.get_context("spawn").Pool(n)))
    for split in ("train", "val", "test"):
        for a, b in zip(alone[split], pooled[split]):
            assert np.array_equal(a, b)


def test_runs_with_the_same_input_share_one_pack_built_once(shapes):
    # Claimed, as a worker takes them: a run's writes need the claim (dlsite.jobs.ClaimLost).
    first, second = (TrainingRun.objects.claim(new_run(shapes, image_size=12).id) for _ in range(2))
    other_size = new_run(shapes, image_size=10)
    assert pack_folder(first) == pack_folder(second) != pack_folder(other_size)
    names, arrays = load_arrays(first)
    built_at = os.path.getmtime(pack_folder(first) / "train_x.npy")
    _, again = load_arrays(second)
    assert os.path.getmtime(pack_folder(second) / "train_x.npy") == built_at
    assert names == ["horizontal", "spot", "vertical"]
    assert arrays["train"][0].shape == (24, 12, 12, 1) and np.array_equal(arrays["train"][0], again["train"][0])
    assert pack_is_ready(str(pack_folder(first))) and not pack_is_ready(str(pack_folder(other_size)))
