"""Data identity: landmark sanitising, the fingerprint covers what numbers depend on, the record's data stats."""
import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from bench.config.settings import DataConfig
from bench.data import load_dataset
from bench.data.cache import landmark_cache
from bench.data.sanitise import invalid_rows, sanitise
from bench.data.synthetic import SyntheticOptions, generate
from bench.errors import UserError

STATS_KEYS = {"dataset", "data_root", "landmark_source", "landmark_digest", "counts", "without_landmarks",
              "dropped_labels", "skipped", "skipped_paths", "placement"}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BENCH_DATA", raising=False)


def test_sanitise_rejects_what_cannot_be_a_face():
    face = generate("test", 1, 0, SyntheticOptions(image_size=64)).landmarks[0]
    eyes_together = face.copy()
    eyes_together[36:48] = face[36:48].mean(0)
    half_out = face.copy()
    half_out[:40, 0] += 200
    rows = np.stack([
        face,                                   # 0 a face
        face + [66 - face[:, 0].max(), 0],      # 1 the jaw 3 px past the right edge: within the margin, kept
        np.zeros((68, 2)),                      # 2 all 0
        np.full((68, 2), -1.0),                 # 3 all -1
        np.full((68, 2), 30.0),                 # 4 all equal
        face + 200,                             # 5 off the image
        half_out,                               # 6 most points outside the frame
        eyes_together,                          # 7 eyes coincide
        np.where(np.arange(68)[:, None] == 3, np.inf, face),   # 8 one point not finite
        np.full((68, 2), np.nan),               # 9 no face found (already NaN: not counted as rejected)
    ]).astype(np.float32)
    assert invalid_rows(rows, 64).tolist() == [False, False, True, True, True, True, True, True, True, True]
    clean, rejected = sanitise(rows, 64)
    assert rejected == 7 and np.isnan(clean[2:]).all() and np.array_equal(clean[:2], rows[:2])


def make_tree(root, marks_for=lambda i, pts: pts.tolist()):
    """28 faces in 7 class folders with their landmarks in landmarks.json (``marks_for`` may spoil them)."""
    faces = generate("train", 28, 3, SyntheticOptions(image_size=32))
    names = ["neutral", "happy", "surprise", "fear", "angry", "disgust", "sad"]
    marks = {}
    for i in range(28):
        rel = f"{names[faces.labels[i]]}/{i:02d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(faces.images[i]).save(root / rel)
        marks[rel] = marks_for(i, faces.landmarks[i])
    (root / "landmarks.json").write_text(json.dumps(marks))
    return root


def test_invalid_landmarks_are_nan_and_counted_in_the_stats(tmp_path):
    spoil = {0: lambda p: [[0, 0]] * 68, 1: lambda p: [[-1, -1]] * 68, 2: lambda p: (p + 500).tolist(),
             3: lambda p: None}
    root = make_tree(tmp_path / "faces", lambda i, p: spoil[i](p) if i in spoil else p.tolist())
    data = load_dataset("folder", DataConfig(root=str(root), image_size=16, test_fraction=0.25), seed=0)
    total = {s: int((~np.isfinite(data.split(s).landmarks).all(axis=(1, 2))).sum()) for s in ("train", "val", "test")}
    assert sum(total.values()) == 4 and data.stats["without_landmarks"] == total
    assert set(data.stats) == STATS_KEYS
    assert data.stats["counts"] == {s: len(data.split(s).labels) for s in ("train", "val", "test")}
    assert data.stats["landmark_source"] == "dataset" and data.stats["data_root"] == str(root.resolve())
    assert data.stats["dropped_labels"] == {"train": {}, "test": {}}
    json.dumps(data.stats)


def test_fingerprint_covers_content_landmarks_labels_size_and_carve_not_the_root(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "a")
    config = DataConfig(root=str(root), image_size=16)
    base = load_dataset("folder", config, 0)
    assert load_dataset("folder", config, 0).fingerprint == base.fingerprint          # stable
    monkeypatch.setenv("BENCH_DATA", str(root))
    assert load_dataset("folder", DataConfig(image_size=16), 0).fingerprint == base.fingerprint  # same root, any way
    copy = tmp_path / "b"
    shutil.copytree(root, copy)                                                      # same bytes, new paths and mtimes
    monkeypatch.setenv("BENCH_DATA", str(copy))
    other = load_dataset("folder", DataConfig(image_size=16), 0)
    assert other.fingerprint == base.fingerprint and other.stats["data_root"] == str(copy.resolve())
    image = sorted(copy.rglob("*.png"))[3]
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)                         # one image's bytes change
    assert load_dataset("folder", DataConfig(image_size=16), 0).fingerprint != base.fingerprint
    assert load_dataset("folder", DataConfig(root=str(root), image_size=20), 0).fingerprint != base.fingerprint
    assert load_dataset("folder", config, 1).fingerprint != base.fingerprint          # another validation carve
    marks = json.loads((root / "landmarks.json").read_text())
    key = sorted(marks)[5]
    marks[key] = (np.array(marks[key]) + 1).tolist()                                  # one face's landmarks move
    (root / "landmarks.json").write_text(json.dumps(marks))
    moved = load_dataset("folder", config, 0)
    assert moved.fingerprint != base.fingerprint and moved.stats["landmark_digest"] != base.stats["landmark_digest"]
    (root / "labels.csv").write_text("path,subject\n" + "".join(f"{k},S{i % 4}\n" for i, k in enumerate(sorted(marks))))
    assert load_dataset("folder", config, 0).fingerprint != moved.fingerprint       # subjects change the carve


def test_landmarks_computed_later_change_the_fingerprint(tmp_path):
    root = make_tree(tmp_path / "a")
    (root / "landmarks.json").unlink()
    without = load_dataset("folder", DataConfig(root=str(root), image_size=16, landmarks="none"), 0)
    assert without.stats["landmark_source"] == "none"
    cache = landmark_cache("folder", root.resolve(), "dlib")
    faces = generate("train", 28, 3, SyntheticOptions(image_size=32))
    ids = sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))
    cache.append(ids, np.stack([faces.landmarks[int(i.split("/")[1][:2])] for i in ids]), [1] * len(ids))
    with_marks = load_dataset("folder", DataConfig(root=str(root), image_size=16), 0)
    assert with_marks.stats["landmark_source"] == "dlib" and with_marks.fingerprint != without.fingerprint
    assert sum(with_marks.stats["without_landmarks"].values()) == 0


def test_affectnet_label_change_without_touching_images_changes_the_fingerprint(tmp_path):
    from test_data_affectnet import make_manually_annotated

    root, _ = make_manually_annotated(tmp_path, [c for c in range(7) for _ in range(2)], list(range(7)))
    config = DataConfig(root=str(root), image_size=16)
    before = load_dataset("affectnet", config, 0)
    path = root / "Manually_Annotated_file_lists" / "validation.csv"
    rows = list(csv.reader(open(path)))
    rows[1][6] = "3" if rows[1][6] != "3" else "4"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    after = load_dataset("affectnet", config, 0)
    assert after.fingerprint != before.fingerprint and after.test.labels[0] != before.test.labels[0]


def test_data_root_that_is_a_file_says_so(tmp_path):
    path = tmp_path / "faces.zip"
    path.write_bytes(b"PK")
    with pytest.raises(UserError) as err:
        load_dataset("folder", DataConfig(root=str(path)), 0)
    assert "\n" not in str(err.value) and "is a file, not a folder" in str(err.value)
