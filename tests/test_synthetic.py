import numpy as np

from bench.data.synthetic import SyntheticOptions, generate


def test_deterministic_by_seed_and_balanced():
    opts = SyntheticOptions(image_size=32)
    a, b = generate("train", 21, 3, opts), generate("train", 21, 3, opts)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.landmarks, b.landmarks)
    c = generate("train", 21, 4, opts)
    assert not np.array_equal(a.images, c.images)
    assert np.bincount(a.labels, minlength=7).tolist() == [3] * 7
    assert a.images.shape == (21, 32, 32, 3) and a.images.dtype == np.uint8
    assert a.landmarks.shape == (21, 68, 2)


def test_landmarks_lie_in_the_frame():
    arr = generate("test", 70, 0, SyntheticOptions(image_size=64))
    assert (arr.landmarks >= -2).all() and (arr.landmarks <= 66).all()


def test_expressions_move_landmarks_as_their_aus_do():
    arr = generate("test", 700, 1, SyntheticOptions(image_size=64))
    lm, y = arr.landmarks, arr.labels
    iod = np.linalg.norm(lm[:, 36:42].mean(1) - lm[:, 42:48].mean(1), axis=1)
    mouth_open = (lm[:, 66, 1] - lm[:, 62, 1]) / iod            # AU25/26/27
    brow_height = (lm[:, 37, 1] - lm[:, 19, 1]) / iod            # AU1/2 raise, AU4 lowers
    corners = ((lm[:, 48, 1] + lm[:, 54, 1]) / 2 - lm[:, 51, 1]) / iod   # AU12 up, AU15 down
    neutral, happy, surprise, sad = (y == 0), (y == 1), (y == 2), (y == 6)
    assert mouth_open[surprise].mean() > mouth_open[neutral].mean() + 0.1
    assert brow_height[surprise].mean() > brow_height[neutral].mean() + 0.03
    assert corners[happy].mean() < corners[neutral].mean() - 0.05
    assert corners[sad].mean() > corners[neutral].mean() + 0.03


def test_shortcut_patch_only_in_train():
    opts = SyntheticOptions(image_size=32, shortcut=1.0)
    plain = SyntheticOptions(image_size=32, shortcut=0.0)
    assert not np.array_equal(generate("train", 14, 0, opts).images, generate("train", 14, 0, plain).images)
    assert np.array_equal(generate("test", 14, 0, opts).images, generate("test", 14, 0, plain).images)


def test_generated_faces_are_cached_on_disk_and_reloaded(tmp_path, monkeypatch):
    import bench.data.synthetic_dataset as ds

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    first = ds._splits(32, (14, 7, 7), 0.5, 5)
    entries = sorted(e for e in (tmp_path / "synthetic").glob("*-*") if e.is_dir())
    assert [e.name.split("-")[0] for e in entries] == ["test", "train", "val"]       # one entry per split
    assert all((e / "COMPLETE").is_file() for e in entries)
    assert isinstance(first.train.images.store, np.memmap)                           # memory-mapped, shared
    monkeypatch.setattr(ds, "generate", lambda *a, **k: (_ for _ in ()).throw(AssertionError("regenerated")))
    again = ds._splits(32, (14, 7, 7), 0.5, 5)
    assert again.fingerprint == first.fingerprint
    assert np.array_equal(again.train.landmarks, first.train.landmarks)
    fresh = generate("train", 14, 5, SyntheticOptions(image_size=32, shortcut=0.5))
    assert np.array_equal(np.asarray(again.train.images), fresh.images)              # the same faces as in memory
    (entries[1] / "COMPLETE").unlink()                                                # torn -> generated again
    monkeypatch.undo()
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    assert ds._splits(32, (14, 7, 7), 0.5, 5).fingerprint == first.fingerprint


def test_generation_into_a_file_matches_generation_in_memory(tmp_path):
    from bench.data.npy import NpyWriter

    opts = SyntheticOptions(image_size=24)
    with NpyWriter(tmp_path / "faces.npy", (9, 24, 24, 3)) as out:
        streamed = generate("val", 9, 2, opts, out=out)
    in_memory = generate("val", 9, 2, opts)
    assert np.array_equal(np.load(tmp_path / "faces.npy"), in_memory.images)
    assert np.array_equal(streamed.landmarks, in_memory.landmarks)


def test_fingerprint_and_stats_cover_seed_size_and_landmarks(tmp_path, monkeypatch):
    import bench.data.synthetic_dataset as ds

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    base = ds._splits(24, (14, 7, 7), 0.0, 0)
    assert ds._splits(24, (14, 7, 7), 0.0, 1).fingerprint != base.fingerprint
    assert ds._splits(24, (21, 7, 7), 0.0, 0).fingerprint != base.fingerprint
    assert ds._splits(32, (14, 7, 7), 0.0, 0).fingerprint != base.fingerprint
    stats = base.stats
    assert stats["dataset"] == "synthetic" and stats["data_root"] is None and stats["landmark_source"] == "generator"
    assert stats["counts"] == {"train": 14, "val": 7, "test": 7}
    assert stats["without_landmarks"] == {"train": 0, "val": 0, "test": 0}
    assert stats["skipped"] == {"train": 0, "val": 0, "test": 0} and stats["placement"] == {}
    import json

    json.dumps(stats)                                                                 # serialisable as is
