"""The ``folder`` dataset: class aliases, subject-disjoint splits, landmarks.json; and the real JAFFE tree."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from bench.config.settings import DataConfig
from bench.data import load_dataset
from bench.data.folder import class_index
from bench.data.synthetic import SyntheticOptions, generate
from bench.errors import UserError

from conftest import JAFFE

ALIAS_FOLDERS = {"neutral": 0, "happy": 1, "surprised": 2, "fearful": 3, "angry": 4, "disgusted": 5, "sad": 6}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BENCH_DATA", raising=False)


def make_folder(root, subjects=10, per_class=2, split_dirs=False):
    n = len(ALIAS_FOLDERS) * subjects * per_class
    faces = generate("train", n, 1, SyntheticOptions(image_size=40))
    rows, marks, i = [], {}, 0
    for folder in ALIAS_FOLDERS:
        for s in range(subjects):
            for k in range(per_class):
                sub = ("test" if s >= subjects - 2 else "train") if split_dirs else ""
                rel = f"{sub + '/' if sub else ''}{folder}/S{s:02d}_{k}.png"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(faces.images[i]).save(root / rel)
                rows.append({"path": rel, "label": folder, "subject": f"S{s:02d}"})
                marks[rel] = faces.landmarks[i].tolist() if i % 5 else None       # every 5th: no face
                i += 1
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "subject"])
        w.writeheader()
        w.writerows(rows)
    (root / "landmarks.json").write_text(json.dumps(marks))
    return root, marks


def test_aliases():
    assert {name: class_index(name) for name in ALIAS_FOLDERS} == ALIAS_FOLDERS
    assert class_index("Happiness") == 1 and class_index("ANGER") == 4 and class_index("contempt") == 7
    assert class_index("selfies") is None


def test_subject_disjoint_splits_test_fixed_val_by_seed(tmp_path):
    root, marks = make_folder(tmp_path / "faces")
    config = DataConfig(root=str(root), image_size=20, val_fraction=0.1, test_fraction=0.2)
    runs = [load_dataset("folder", config, seed) for seed in range(4)]
    for data in runs:
        subj = {name: set(data.split(name).subjects.tolist()) for name in ("train", "val", "test")}
        assert not subj["train"] & subj["val"] and not subj["train"] & subj["test"] and not subj["val"] & subj["test"]
        assert len(subj["test"]) == 2 and len(subj["val"]) == 1          # 20% and 10% of 10 subjects
        assert sum(len(data.split(n).labels) for n in ("train", "val", "test")) == 140
        # every subject has every class twice, so each split is balanced
        assert np.bincount(data.test.labels, minlength=7).tolist() == [4] * 7
    assert len({tuple(sorted(set(d.test.subjects))) for d in runs}) == 1             # test: same for every seed
    assert len({tuple(sorted(set(d.val.subjects))) for d in runs}) > 1               # val: depends on the seed


def test_labels_and_landmarks_follow_the_files(tmp_path):
    root, marks = make_folder(tmp_path / "faces")
    data = load_dataset("folder", DataConfig(root=str(root), image_size=20), seed=0)
    for name in ("train", "val", "test"):
        arrays = data.split(name)
        assert arrays.images.shape[1:] == (20, 20, 3)
    # missing landmarks (null in landmarks.json) are NaN: 1 in 5 images
    total = sum(len(data.split(n).labels) for n in ("train", "val", "test"))
    missing = sum(int(np.isnan(data.split(n).landmarks).all(axis=(1, 2)).sum()) for n in ("train", "val", "test"))
    assert missing == total // 5
    lm = data.test.landmarks[np.isfinite(data.test.landmarks).all(axis=(1, 2))][0]
    assert 0 <= lm.min() and lm.max() < 20


def test_train_test_folders_are_used_as_given(tmp_path):
    root, _ = make_folder(tmp_path / "faces", subjects=5, split_dirs=True)
    data = load_dataset("folder", DataConfig(root=str(root), image_size=16), seed=0)
    assert set(data.test.subjects.tolist()) == {"S03", "S04"} and len(data.test.labels) == 28


def test_unknown_class_folder_is_one_line(tmp_path):
    root, _ = make_folder(tmp_path / "faces", subjects=2, per_class=1)
    (root / "selfies").mkdir()
    with pytest.raises(UserError) as err:
        load_dataset("folder", DataConfig(root=str(root)), seed=0)
    assert "\n" not in str(err.value) and "selfies" in str(err.value) and "happy" in str(err.value)


@pytest.mark.skipif(not (JAFFE / "labels.csv").is_file(), reason="JAFFE not available")
def test_real_jaffe_folder():
    data = load_dataset("folder", DataConfig(root=str(JAFFE), image_size=128), seed=0)
    splits = [data.split(n) for n in ("train", "val", "test")]
    assert sum(len(a.labels) for a in splits) == 213 and data.skipped == {"train": 0, "test": 0}
    counts = np.bincount(np.concatenate([a.labels for a in splits]), minlength=7)
    # neutral 30, happiness 31, surprise 30, fear 32, anger 30, disgust 29, sadness 31 (JAFFE README)
    assert counts.tolist() == [30, 31, 30, 32, 30, 29, 31]
    subjects = [set(a.subjects.tolist()) for a in splits]
    assert set.union(*subjects) == {"KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM"}
    assert not (subjects[0] & subjects[1]) and not (subjects[0] & subjects[2]) and not (subjects[1] & subjects[2])
    assert all(np.isfinite(a.landmarks).all() for a in splits)
    # 256 px -> 128 px: x' = (x + 0.5) / 2 - 0.5, for the first anger image of the held-out subjects
    stored = json.loads((JAFFE / "landmarks.json").read_text())
    test_ids = sorted(k for k in stored if k.split("/")[1].split(".")[0] in subjects[2])
    np.testing.assert_allclose(data.test.landmarks[0], (np.array(stored[test_ids[0]]) + 0.5) / 2 - 0.5, atol=1e-4)
    assert data.test.images.shape == (len(data.test.labels), 128, 128, 3)
