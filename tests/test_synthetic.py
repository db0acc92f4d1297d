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


# --- counterfactual faces (issue 23) -------------------------------------------------------------------

def test_a_face_drawn_again_with_nothing_changed_is_bit_identical():
    from bench.data.synthetic import face_landmarks, face_plans, render_counterfactual, render_face

    opts = SyntheticOptions(image_size=48, shortcut=0.5)
    arr = generate("train", 21, 7, opts)
    plans = list(face_plans("train", 21, 7, opts))
    assert any(p.patch for p in plans) and not all(p.patch for p in plans)       # both kinds are covered
    for p in plans:
        assert np.array_equal(render_face(p), arr.images[p.index])
        assert np.array_equal(face_landmarks(p).astype(np.float32), arr.landmarks[p.index])
    assert np.array_equal(render_counterfactual("train", 21, 7, opts, 11), arr.images[11])


def test_switching_off_an_au_changes_pixels_only_near_the_landmarks_it_moves():
    """Changed pixels lie within 0.7 face units (+2 px of blur and downsampling) of a moved landmark."""
    from bench.data.synthetic import face_landmarks, plans_at, render_face

    opts = SyntheticOptions(image_size=96)
    plans = plans_at("test", 70, 2, opts, range(0, 70, 2))
    yy, xx = np.mgrid[0:96, 0:96]
    checked = set()
    for p in plans:
        base, lm = render_face(p), face_landmarks(p)
        for au in p.aus:
            cf, lm_off = render_face(p, {au}), face_landmarks(p, {au})
            moved = np.linalg.norm(lm - lm_off, axis=1) > 1e-9
            assert moved.any() and (moved.sum() < 68)
            points = np.concatenate([lm[moved], lm_off[moved]])
            dist = np.sqrt((xx[..., None] - points[:, 0]) ** 2 + (yy[..., None] - points[:, 1]) ** 2).min(-1)
            near = dist <= 0.7 * p.half_width + 2
            changed = (cf != base).any(-1)
            assert changed.any(), (p.index, au)
            assert not (changed & ~near).any(), (p.index, au)
            # In face units (y down, mouth top near 0.45): brow and lid AUs stay above the nose,
            # cheek and lid tightener above the mouth, lip AUs below the nostrils.
            y_face = (-p.sin * (xx - p.centre[0]) + p.cos * (yy - p.centre[1])) / p.half_width
            if au in (1, 2, 4, 5):
                assert y_face[changed].max() < -0.1
            elif au in (6, 7):
                assert y_face[changed].max() < 0.45
            elif au not in (9, 26, 27):
                assert y_face[changed].min() > 0.25
            checked.add(au)
    assert checked == {1, 2, 4, 5, 6, 7, 9, 10, 12, 15, 16, 17, 20, 23, 24, 25, 26, 27}


def test_an_added_patch_changes_only_its_square_and_is_the_training_patch():
    from bench.data.synthetic import face_plans, patch_mask, render_face

    opts = SyntheticOptions(image_size=64, shortcut=1.0)
    train = generate("train", 14, 3, opts)
    plain = list(face_plans("train", 14, 3, SyntheticOptions(image_size=64, shortcut=0.0)))
    for p in plain:                                          # same stream: the patched face is the plain one + patch
        assert np.array_equal(render_face(p, patch=p.label), train.images[p.index])
        assert np.array_equal(render_face(p, patch=None), render_face(p))
    p = plain[0]
    for c in range(7):
        changed = (render_face(p, patch=c) != render_face(p)).any(-1)
        box = patch_mask(64, c)
        grown = np.zeros_like(box)                           # the square plus 2 px of blur and downsampling
        ys, xs = np.nonzero(box)
        grown[max(ys.min() - 2, 0):ys.max() + 3, max(xs.min() - 2, 0):xs.max() + 3] = True
        assert not (changed & ~grown).any()
        if c % 4 in (2, 3):                                  # bottom corners; the hair may hide the top ones
            assert changed[box].mean() > 0.9


def test_switching_off_an_au_the_face_does_not_have_is_an_error():
    import pytest

    from bench.data.synthetic import plans_at, render_face

    p = next(q for q in plans_at("test", 14, 0, SyntheticOptions(image_size=32), range(14)) if q.label == 1)
    with pytest.raises(ValueError, match="has no AU"):
        render_face(p, {26})
    with pytest.raises(ValueError, match="patch"):
        render_face(p, patch=9)


def test_counterfactual_splits_draw_the_datasets_faces(tmp_path, monkeypatch):
    import bench.data.synthetic_dataset as ds
    from bench.config.settings import resolve
    from bench.data.synthetic import plans_at, render_face

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    config = resolve("smoke").data
    data = ds.synthetic(config, 3)
    splits = ds.counterfactual_splits(config, 3)
    for name in ("val", "test"):
        split, arrays = splits[name], getattr(data, name)
        assert split.size == len(arrays.labels)
        for plan in plans_at(split.split, split.size, split.seed, split.options, [0, split.size - 1]):
            assert np.array_equal(render_face(plan), np.asarray(arrays.images[plan.index]))
            assert plan.label == arrays.labels[plan.index]
