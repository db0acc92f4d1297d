"""Decode-once cache: reuse, one entry per key, torn caches, corrupt images; and the split carving."""
import os

import numpy as np
import pytest
from PIL import Image

from bench.config.settings import DataConfig
from bench.data import load_dataset
from bench.data.cache import Item, decode_image, decode_split, map_landmarks
from bench.data.splits import carve
from bench.errors import UserError


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BENCH_DATA", raising=False)


def make_items(folder, n, size=24):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        path = folder / f"img{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
        items.append(Item(id=path.name, path=path, label=i % 7))
    return items


def test_built_once_then_reused_and_memory_mapped(tmp_path):
    items = make_items(tmp_path / "data", 10)
    first = decode_split(items, 12, tmp_path / "c", "train", tmp_path / "data")
    second = decode_split(items, 12, tmp_path / "c", "train", tmp_path / "data")
    assert first.built and not second.built and first.folder == second.folder
    assert isinstance(second.images.store, np.memmap) and second.images.shape == (10, 12, 12, 3)
    assert not second.images.store.flags.writeable          # shared and read-only: no trial can dirty it
    np.testing.assert_array_equal(np.asarray(first.images), np.asarray(second.images))
    expected, _ = decode_image(items[4].path, None, 12)
    np.testing.assert_array_equal(second.images[4], expected)
    assert (second.folder / "COMPLETE").is_file()


def test_content_change_gets_its_own_entry_an_mtime_change_does_not(tmp_path):
    """The key covers the bytes, not when they were written: a touched file reuses the entry, a changed
    file gets a new one, and the old entry is kept (switching back costs nothing)."""
    items = make_items(tmp_path / "data", 6)
    old = decode_split(items, 12, tmp_path / "c", "train", tmp_path / "data")
    st = items[3].path.stat()
    os.utime(items[3].path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    touched = decode_split(items, 12, tmp_path / "c", "train", tmp_path / "data")
    assert not touched.built and touched.folder == old.folder
    original = items[3].path.read_bytes()
    Image.fromarray(np.full((20, 20, 3), 7, np.uint8)).save(items[3].path)
    new = decode_split(items, 12, tmp_path / "c", "train", tmp_path / "data")
    assert new.built and new.folder != old.folder and (old.folder / "COMPLETE").is_file()
    again = decode_split(items, 12, tmp_path / "c", "train", tmp_path / "data")
    assert not again.built
    items[3].path.write_bytes(original)                                         # switching back costs nothing
    back = decode_split(items, 12, tmp_path / "c", "train", tmp_path / "data")
    assert not back.built and back.folder == old.folder


def test_preprocessing_change_gets_its_own_cache(tmp_path):
    items = make_items(tmp_path / "data", 4)
    a = decode_split(items, 12, tmp_path / "c", "train", tmp_path / "data")
    b = decode_split(items, 8, tmp_path / "c", "train", tmp_path / "data")
    assert b.built and a.folder != b.folder and b.images.shape[1:3] == (8, 8)


def test_torn_cache_without_marker_is_rebuilt(tmp_path):
    items = make_items(tmp_path / "data", 5)
    done = decode_split(items, 12, tmp_path / "c", "train", tmp_path / "data")
    (done.folder / "COMPLETE").unlink()
    with open(done.folder / "images.npy", "r+b") as fh:      # and its pixels are garbage
        fh.seek(-100, os.SEEK_END)
        fh.write(b"\xff" * 100)
    rebuilt = decode_split(items, 12, tmp_path / "c", "train", tmp_path / "data")
    assert rebuilt.built and (rebuilt.folder / "COMPLETE").is_file()
    expected, _ = decode_image(items[-1].path, None, 12)
    np.testing.assert_array_equal(rebuilt.images[-1], expected)


def test_corrupt_jpeg_is_skipped_and_counted(tmp_path):
    items = make_items(tmp_path / "data", 8)
    good = tmp_path / "data" / "good.jpg"
    Image.fromarray(np.full((24, 24, 3), 128, np.uint8)).save(good, quality=90)
    truncated = tmp_path / "data" / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    garbage = tmp_path / "data" / "garbage.jpg"
    garbage.write_bytes(b"not a jpeg at all")
    empty = tmp_path / "data" / "empty.jpg"
    empty.write_bytes(b"")
    broken = [Item("truncated.jpg", truncated, 1), Item("garbage.jpg", garbage, 2),
              Item("missing.jpg", tmp_path / "data" / "missing.jpg", 3), Item("empty.jpg", empty, 4)]
    items = items[:4] + broken + items[4:]
    out = decode_split(items, 12, tmp_path / "c", "train", tmp_path / "data")
    assert out.meta["skipped"] == 4 and out.meta["total"] == 12 and out.images.shape[0] == 8
    assert out.source.tolist() == [0, 1, 2, 3, 8, 9, 10, 11]           # the rows of the readable images
    assert out.images.store.shape[0] == 12                            # unreadable rows stay as holes
    assert {e[0] for e in out.meta["errors"]} == {"truncated.jpg", "garbage.jpg", "missing.jpg", "empty.jpg"}
    assert out.meta["skipped_paths"] == [str(p) for p in (truncated, garbage, tmp_path / "data" / "missing.jpg", empty)]
    expected, _ = decode_image(items[8].path, None, 12)
    np.testing.assert_array_equal(out.images[4], expected)


def _folder_tree(root, n_per_class, corrupt):
    rng = np.random.default_rng(1)
    names = ["neutral", "happy", "surprise", "fear", "angry", "disgust", "sad"]
    paths = []
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for k in range(n_per_class):
            p = root / name / f"{k:03d}.jpg"
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(p)
            paths.append(p)
    for p in paths[:corrupt]:
        p.write_bytes(p.read_bytes()[:100])          # truncated JPEG
    return root


def test_skip_count_reaches_splits_and_the_threshold_stops_the_run(tmp_path):
    root = _folder_tree(tmp_path / "one", 40, corrupt=1)        # 280 images, 1 corrupt
    data = load_dataset("folder", DataConfig(root=str(root), image_size=8, landmarks="none"), seed=0)
    assert sum(data.skipped.values()) == 1
    assert sum(len(data.split(n).labels) for n in ("train", "val", "test")) == 279
    paths = [p for split in data.stats["skipped_paths"].values() for p in split]
    assert paths == [str(root / "neutral" / "000.jpg")] and data.stats["skipped"] == data.skipped
    root = _folder_tree(tmp_path / "many", 10, corrupt=5)       # 70 images, 5 corrupt (all in one split)
    with pytest.raises(UserError) as err:
        load_dataset("folder", DataConfig(root=str(root), image_size=8, landmarks="none"), seed=0)
    msg = str(err.value)
    assert "\n" not in msg and "could not be read" in msg and "data.max_skipped" in msg
    assert str(root / "neutral") in msg                          # names the first unreadable file
    data = load_dataset("folder", DataConfig(root=str(root), image_size=8, landmarks="none", max_skipped=0.2), seed=0)
    assert sum(data.skipped.values()) == 5


def test_landmark_mapping_through_crop_and_resize():
    # box 10..50 x 20..40 resized to 20x20: sx = 0.5, sy = 1.0; a point at pixel centre (30, 25)
    affine = np.array([[10, 20, 0.5, 1.0]])
    np.testing.assert_allclose(map_landmarks(np.array([[[30.0, 25.0]]]), affine), [[[9.75, 5.0]]])


def test_decoded_pixels_match_the_box(tmp_path):
    img = np.zeros((40, 60, 3), np.uint8)
    img[10:20, 30:50] = 255                                  # white block at x 30..50, y 10..20
    Image.fromarray(img).save(tmp_path / "a.png")
    out, affine = decode_image(tmp_path / "a.png", (30, 10, 50, 20), 10)
    # x is halved (the antialiasing filter reaches one source pixel past the box at the edges)
    assert out[:, 1:-1].min() == 255 and out[:, 0].max() < 255 and affine.tolist() == [30, 10, 0.5, 1.0]
    out, _ = decode_image(tmp_path / "a.png", (-20, -20, 80, 60), 20)   # clamped to the image
    assert out.shape == (20, 20, 3)


# --- splits ------------------------------------------------------------------------------------------

def test_stratified_carve_exact_counts_and_seeded():
    labels = np.repeat(np.arange(7), 10)
    keep, held = carve(labels, 0.2, seed=3)
    assert np.bincount(labels[held]).tolist() == [2] * 7 and len(keep) == 56
    assert not set(keep) & set(held)
    again, _ = carve(labels, 0.2, seed=3)
    other = [carve(labels, 0.2, seed=s)[1].tolist() for s in range(5)]
    assert again.tolist() == keep.tolist() and len({tuple(o) for o in other}) > 1
    keep, held = carve(np.array([0, 0, 1]), 0.1, seed=0)           # at least one of a class with >= 2
    assert held.tolist() in ([0], [1])


def test_subject_carve_never_splits_a_subject():
    rng = np.random.default_rng(0)
    subjects = np.repeat([f"s{i}" for i in range(20)], 14)
    labels = np.tile(np.repeat(np.arange(7), 2), 20)
    rng.shuffle(labels)
    for seed in range(3):
        keep, held = carve(labels, 0.15, seed, subjects)
        assert not set(subjects[keep]) & set(subjects[held])
        assert 0.1 <= len(held) / len(labels) <= 0.2
