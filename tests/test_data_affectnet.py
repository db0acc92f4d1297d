"""AffectNet on fake trees of both releases: code mapping, contempt, dropped codes, crop and landmarks."""
import csv

import numpy as np
import pytest
from PIL import Image

from bench.config.settings import DataConfig
from bench.data import load_dataset
from bench.data.affectnet import AFFECTNET_TO_CANONICAL, catalog
from bench.data.synthetic import SyntheticOptions, generate
from bench.errors import UserError

# AffectNet 0 Neutral 1 Happy 2 Sad 3 Surprise 4 Fear 5 Disgust 6 Anger -> canonical order.
EXPECTED = {0: 0, 1: 1, 2: 6, 3: 2, 4: 3, 5: 5, 6: 4}
BOX = (30, 20, 64, 64)                # face_x, face_y, face_width, face_height in a 120x100 (W x H) image


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BENCH_DATA", raising=False)


def make_manually_annotated(root, train_codes, test_codes):
    images = root / "Manually_Annotated" / "Manually_Annotated_Images"
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    codes = list(train_codes) + list(test_codes)
    faces = generate("test", len(codes), 5, SyntheticOptions(image_size=64))
    truth = {}
    for split, file, split_codes, offset in (("train", "training.csv", train_codes, 0),
                                             ("test", "validation.csv", test_codes, len(train_codes))):
        with open(lists / file, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                        "facial_landmarks", "expression", "valence", "arousal"])
            for j, code in enumerate(split_codes):
                i = offset + j
                rel = f"{j % 3}/{split}_{j:03d}.jpg"
                (images / rel).parent.mkdir(parents=True, exist_ok=True)
                canvas = np.full((100, 120, 3), 30, np.uint8)
                x, y, fw, fh_ = BOX
                canvas[y:y + fh_, x:x + fw] = faces.images[i]
                Image.fromarray(canvas).save(images / rel, quality=95)
                points = faces.landmarks[i] + np.array([x, y], np.float32)
                w.writerow([rel, x, y, fw, fh_, ";".join(f"{v:.2f}" for v in points.reshape(-1)), code, 0.1, 0.2])
                truth[rel] = points
    return root, truth


def test_release_a_codes_crop_and_landmarks(tmp_path):
    assert AFFECTNET_TO_CANONICAL == EXPECTED
    train = [c for c in range(11) for _ in range(2)]          # codes 0..10, twice each
    test = list(range(11))
    root, truth = make_manually_annotated(tmp_path, train, test)
    data = load_dataset("affectnet", DataConfig(root=str(root), image_size=64, val_fraction=0.5), seed=0)
    assert data.class_names[-1] == "Sadness" and data.num_classes == 7
    # validation.csv is the test split: codes 0..6 kept in file order, 7..10 dropped
    assert data.test.labels.tolist() == [EXPECTED[c] for c in range(7)]
    assert len(data.train.labels) + len(data.val.labels) == 14 and sorted(data.val.labels.tolist()) == list(range(7))
    # box 30,20,64,64 -> crop x 30..94, y 20..84 at 64 px: 1:1, landmarks shift by (30, 20)
    # the first kept test row is the first CSV row: "0/test_000.jpg"
    original = np.asarray(Image.open(root / "Manually_Annotated" / "Manually_Annotated_Images" / "0/test_000.jpg"))
    np.testing.assert_array_equal(data.test.images[0], original[20:84, 30:94])
    np.testing.assert_allclose(data.test.landmarks[0], truth["0/test_000.jpg"] - [30, 20], atol=0.01)


def test_release_a_contempt_is_an_eighth_class_only_when_asked(tmp_path):
    root, _ = make_manually_annotated(tmp_path, list(range(11)) * 2, list(range(11)))
    data = load_dataset("affectnet", DataConfig(root=str(root), image_size=32, contempt=True, val_fraction=0), seed=0)
    assert data.class_names[-1] == "Contempt" and data.num_classes == 8
    assert data.test.labels.tolist() == [EXPECTED[c] for c in range(7)] + [7]      # 8, 9, 10 still dropped
    assert data.stats["dropped_labels"] == {"train": {"8": 2, "9": 2, "10": 2}, "test": {"8": 1, "9": 1, "10": 1}}
    cat = catalog(DataConfig(root=str(root)))                 # without contempt, code 7 is dropped too, counted
    assert cat.dropped == {"train": {"7": 2, "8": 2, "9": 2, "10": 2}, "test": {"7": 1, "8": 1, "9": 1, "10": 1}}


def test_codes_outside_0_to_10_are_an_error_naming_file_and_line(tmp_path):
    root, _ = make_manually_annotated(tmp_path, [0, 1, 12, 2], [0, 1])
    with pytest.raises(UserError) as err:
        catalog(DataConfig(root=str(root)))
    msg = str(err.value)
    assert "\n" not in msg and "training.csv:4" in msg and "code 12" in msg and "0-10" in msg


def test_release_b_bad_code_and_unreadable_annotation_are_errors(tmp_path):
    root, _ = make_npy_release(tmp_path / "a", {"train_set": [0, 1, 2], "val_set": [0, 1]})
    np.save(root / "train_set" / "annotations" / "1001_exp.npy", np.array("-1"))
    with pytest.raises(UserError, match=r"1001_exp.npy: expression code -1 .*expected 0-10"):
        catalog(DataConfig(root=str(root)))
    root, _ = make_npy_release(tmp_path / "b", {"train_set": [0, 1, 2], "val_set": [0, 1]})
    (root / "train_set" / "annotations" / "1002_exp.npy").write_bytes(b"")
    with pytest.raises(UserError, match=r"1002_exp.npy cannot be read"):
        catalog(DataConfig(root=str(root)))


def make_npy_release(root, codes_by_split, with_landmarks=True):
    faces = generate("val", sum(len(c) for c in codes_by_split.values()), 9, SyntheticOptions(image_size=48))
    i, truth = 0, {}
    for split, codes in codes_by_split.items():
        (root / split / "images").mkdir(parents=True)
        (root / split / "annotations").mkdir()
        for j, code in enumerate(codes):
            stem = str(1000 + i)
            Image.fromarray(faces.images[i]).save(root / split / "images" / f"{stem}.jpg", quality=95)
            np.save(root / split / "annotations" / f"{stem}_exp.npy", np.array(str(code)))
            np.save(root / split / "annotations" / f"{stem}_val.npy", np.array("0.1"))
            if with_landmarks:
                np.save(root / split / "annotations" / f"{stem}_lnd.npy", faces.landmarks[i].reshape(-1).astype(np.float64))
            truth[f"{split}/images/{stem}.jpg"] = (code, faces.landmarks[i])
            i += 1
    return root, truth


def test_release_b_labels_splits_and_own_landmarks(tmp_path):
    root, truth = make_npy_release(tmp_path / "AffectNet", {"train_set": [c for c in range(9) for _ in range(3)],
                                                            "val_set": [6, 5, 4, 3, 2, 1, 0, 7, 10]})
    data = load_dataset("affectnet", DataConfig(root=str(tmp_path), image_size=24), seed=0)
    assert data.test.labels.tolist() == [EXPECTED[c] for c in (6, 5, 4, 3, 2, 1, 0)]
    assert len(data.train.labels) + len(data.val.labels) == 21          # 7 basic codes x 3
    first = truth["val_set/images/1027.jpg"][1]                        # 48 px -> 24 px
    np.testing.assert_allclose(data.test.landmarks[0], (first + 0.5) * 0.5 - 0.5, atol=1e-4)
    # a second load reads the cached annotation index and gives the same arrays
    again = load_dataset("affectnet", DataConfig(root=str(tmp_path), image_size=24), seed=0)
    assert again.fingerprint == data.fingerprint and again.test.labels.tolist() == data.test.labels.tolist()


def test_release_b_without_landmarks_needs_a_detector_cache(tmp_path):
    make_npy_release(tmp_path, {"train_set": list(range(7)) * 2, "val_set": list(range(7))}, with_landmarks=False)
    with pytest.raises(UserError, match="bench landmarks affectnet"):
        load_dataset("affectnet", DataConfig(root=str(tmp_path), image_size=24), seed=0)


def test_unrecognised_root_names_both_layouts(tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset("affectnet", DataConfig(root=str(tmp_path)), seed=0)
    msg = str(err.value)
    assert "\n" not in msg and "Manually_Annotated_Images" in msg and "_exp.npy" in msg


def _rewrite_csv(path, order=None, header=True, bad_row=None):
    """Rewrite an AffectNet CSV with its columns in ``order`` (names), optionally without its header
    and with line ``bad_row`` (1-based, counting the header) replaced by garbage."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    names = rows[0]
    order = order or names
    out = [[row[names.index(name)] for name in order] for row in rows]
    if not header:
        out = out[1:]
    if bad_row is not None:
        out[bad_row - 1] = ["not", "a", "row"]
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(out)


def test_csv_columns_in_any_order_are_found_by_name(tmp_path):
    root, truth = make_manually_annotated(tmp_path, list(range(7)) * 2, list(range(7)))
    lists = root / "Manually_Annotated_file_lists"
    shuffled = ["expression", "arousal", "facial_landmarks", "face_height", "subDirectory_filePath", "face_y",
                "valence", "face_width", "face_x"]
    for file in ("training.csv", "validation.csv"):
        _rewrite_csv(lists / file, shuffled)
    assert (lists / "training.csv").read_text().startswith("expression,arousal,")
    cat = catalog(DataConfig(root=str(root)))
    assert [it.label for it in cat.splits["test"]] == [EXPECTED[c] for c in range(7)]
    first = cat.splits["test"][0]
    assert first.id == "0/test_000.jpg" and first.box == (30.0, 20.0, 94.0, 84.0)
    np.testing.assert_allclose(first.landmarks, truth["0/test_000.jpg"], atol=0.01)


def test_csv_errors_name_the_real_line(tmp_path):
    root, _ = make_manually_annotated(tmp_path, list(range(7)), list(range(7)))
    train_csv = root / "Manually_Annotated_file_lists" / "training.csv"
    _rewrite_csv(train_csv, ["face_x", "subDirectory_filePath", "face_y", "face_width", "face_height",
                             "facial_landmarks", "expression", "valence", "arousal"], bad_row=3)
    with pytest.raises(UserError) as err:
        catalog(DataConfig(root=str(root)))
    assert "training.csv:3 is not a valid row: 'not,a,row'" in str(err.value)

    root, _ = make_manually_annotated(tmp_path / "headerless", list(range(7)), list(range(7)))
    train_csv = root / "Manually_Annotated_file_lists" / "training.csv"
    _rewrite_csv(train_csv, header=False, bad_row=1)              # no header: the first line is data
    with pytest.raises(UserError) as err:
        catalog(DataConfig(root=str(root)))
    assert "training.csv:1 is not a valid row" in str(err.value)

    root, _ = make_manually_annotated(tmp_path / "lacking", list(range(7)), list(range(7)))
    train_csv = root / "Manually_Annotated_file_lists" / "training.csv"
    _rewrite_csv(train_csv, ["expression", "subDirectory_filePath", "face_x", "face_y", "face_width",
                             "face_height"])
    with pytest.raises(UserError) as err:
        catalog(DataConfig(root=str(root)))
    assert "training.csv:1 (header) lacks column(s) facial_landmarks" in str(err.value)
