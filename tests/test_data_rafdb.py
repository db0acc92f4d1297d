"""RAF-DB on a fake tree in the official basic/ layout: label codes, splits, crop box and landmarks."""
import numpy as np
import pytest
from PIL import Image

from au.landmark_cache import LandmarkCache
from bench.config.settings import DataConfig
from bench.data import load_dataset
from bench.data.cache import landmark_cache, preflight
from bench.data.rafdb import RAF_TO_CANONICAL, catalog, enlarge
from bench.data.synthetic import SyntheticOptions, generate
from bench.errors import UserError

# RAF-DB codes 1..7 = Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral -> canonical order.
EXPECTED = {1: 2, 2: 3, 3: 5, 4: 1, 5: 6, 6: 4, 7: 0}
FACE = 60                                   # the face is pasted as a 60x60 patch ...
FACE_XY = (90, 20)                          # ... at x=90, y=20 of a 200x120 (W x H) original
W, H = 200, 120


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BENCH_DATA", raising=False)


def make_rafdb(root, n_train_per_code=2, n_test_per_code=1):
    basic = root / "RAF-DB" / "basic"
    for sub in ("EmoLabel", "Image/aligned", "Image/original", "Annotation/boundingbox"):
        (basic / sub).mkdir(parents=True)
    names = [(f"train_{i + 1:05d}.jpg", code) for i, code in enumerate(
        [c for c in range(1, 8) for _ in range(n_train_per_code)])]
    names += [(f"test_{i + 1:04d}.jpg", code) for i, code in enumerate(
        [c for c in range(1, 8) for _ in range(n_test_per_code)])]
    faces = generate("train", len(names), 3, SyntheticOptions(image_size=100))
    small = generate("train", len(names), 3, SyntheticOptions(image_size=FACE))
    lines, truth = [], {}
    for i, (name, code) in enumerate(names):
        lines.append(f"{name} {code}")
        stem = name[:-4]
        Image.fromarray(faces.images[i]).save(basic / "Image" / "aligned" / f"{stem}_aligned.jpg", quality=95)
        canvas = np.full((H, W, 3), 90, np.uint8)
        canvas[FACE_XY[1]:FACE_XY[1] + FACE, FACE_XY[0]:FACE_XY[0] + FACE] = small.images[i]
        Image.fromarray(canvas).save(basic / "Image" / "original" / name, quality=95)
        x1, y1 = FACE_XY
        (basic / "Annotation" / "boundingbox" / f"{stem}_boundingbox.txt").write_text(
            f"{x1:.1f} {y1:.1f} {x1 + FACE:.1f} {y1 + FACE:.1f}\n")
        truth[name] = {"aligned": faces.landmarks[i], "original": small.landmarks[i] + np.array(FACE_XY, np.float32),
                       "face": small.images[i]}
    (basic / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root, basic, names, truth


def write_landmarks(basic, names, truth, variant):
    cache = landmark_cache("rafdb", basic, "dlib")
    ids, pts = [], []
    for name, _ in names:
        stem = name[:-4]
        ids.append(f"Image/aligned/{stem}_aligned.jpg" if variant == "aligned" else f"Image/original/{name}")
        pts.append(truth[name][variant])
    cache.append(ids, np.stack(pts), [1] * len(ids))
    return cache


def test_label_codes_map_to_the_canonical_order(tmp_path):
    assert RAF_TO_CANONICAL == EXPECTED
    root, basic, names, truth = make_rafdb(tmp_path)
    write_landmarks(basic, names, truth, "aligned")
    data = load_dataset("rafdb", DataConfig(root=str(root), image_size=50, val_fraction=0.5), seed=0)
    # test_0001..0007 carry codes 1..7 in order
    assert data.test.labels.tolist() == [EXPECTED[c] for c in range(1, 8)]
    assert data.class_names[0] == "Neutral" and len(data.class_names) == 7
    # 14 train images, 2 per class: validation takes exactly one of each class
    assert len(data.train.labels) == 7 and len(data.val.labels) == 7
    assert sorted(data.val.labels.tolist()) == list(range(7))
    assert data.skipped == {"train": 0, "test": 0}


def test_aligned_images_and_landmarks_are_scaled_together(tmp_path):
    root, basic, names, truth = make_rafdb(tmp_path)
    write_landmarks(basic, names, truth, "aligned")
    data = load_dataset("rafdb", DataConfig(root=str(root), image_size=50), seed=0)
    assert data.test.images.shape == (7, 50, 50, 3) and data.test.images.dtype == np.uint8
    source = truth["test_0001.jpg"]["aligned"]
    np.testing.assert_allclose(data.test.landmarks[0], (source + 0.5) * 0.5 - 0.5, atol=1e-5)


def test_original_crop_reads_the_box_as_x_min_y_min_x_max_y_max(tmp_path):
    root, basic, names, truth = make_rafdb(tmp_path)
    write_landmarks(basic, names, truth, "original")
    # box 90,20,150,80 enlarged by 30% (9 px per side) = 81,11,159,89: 78x78, so image_size=78 is 1:1
    assert enlarge((90, 20, 150, 80)) == (81.0, 11.0, 159.0, 89.0)
    data = load_dataset("rafdb", DataConfig(root=str(root), image_size=78, rafdb_images="original"), seed=0)
    original = np.asarray(Image.open(basic / "Image" / "original" / "test_0001.jpg").convert("RGB"))
    np.testing.assert_array_equal(data.test.images[0], original[11:89, 81:159])
    # the face patch sits 9 px in from each side of the crop (up to JPEG noise) ...
    face = data.test.images[0][9:69, 9:69].astype(int)
    assert np.abs(face - truth["test_0001.jpg"]["face"]).mean() < 8       # JPEG noise only
    assert np.abs(data.test.images[0][5:65, 13:73].astype(int) - truth["test_0001.jpg"]["face"]).mean() > 15
    # ... where the reference's swapped reading (y1, x1, y2, x2) would have cut rows 90+ of a 120-row image
    assert np.abs(original[90:120, 20:80].astype(int) - 90).mean() < 2       # background only
    np.testing.assert_allclose(data.test.landmarks[0], truth["test_0001.jpg"]["original"] - [81, 11], atol=1e-4)


def test_missing_root_is_one_line_naming_the_layout(tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset("rafdb", DataConfig(), seed=0)
    msg = str(err.value)
    assert "\n" not in msg and "--data-root" in msg and "BENCH_DATA" in msg
    assert "basic/EmoLabel/list_patition_label.txt" in msg
    with pytest.raises(UserError) as err:
        load_dataset("rafdb", DataConfig(root=str(tmp_path)), seed=0)
    assert "\n" not in str(err.value) and "no basic/EmoLabel/list_patition_label.txt under" in str(err.value)
    with pytest.raises(UserError, match="--data-root"):      # the CLI's check before any trial starts
        preflight("rafdb", DataConfig())


def test_missing_landmarks_say_how_to_make_them(tmp_path):
    root, basic, names, truth = make_rafdb(tmp_path)
    with pytest.raises(UserError, match="bench landmarks rafdb"):
        load_dataset("rafdb", DataConfig(root=str(root), image_size=32), seed=0)
    data = load_dataset("rafdb", DataConfig(root=str(root), image_size=32, landmarks="none"), seed=0)
    assert np.isnan(data.test.landmarks).all()


def test_bad_label_line_is_reported_with_its_line_number(tmp_path):
    root, basic, names, truth = make_rafdb(tmp_path)
    path = basic / "EmoLabel" / "list_patition_label.txt"
    path.write_text(path.read_text() + "train_09999.jpg 9\n")
    with pytest.raises(UserError, match=r"list_patition_label.txt:22"):
        catalog(DataConfig(root=str(root)))


def test_env_var_is_the_fallback_root(tmp_path, monkeypatch):
    root, basic, names, truth = make_rafdb(tmp_path)
    monkeypatch.setenv("BENCH_DATA", str(root))
    cat = catalog(DataConfig())
    assert cat.root == basic.resolve() and len(cat.splits["train"]) == 14 and len(cat.splits["test"]) == 7
    assert isinstance(landmark_cache("rafdb", cat.root, "dlib"), LandmarkCache)
