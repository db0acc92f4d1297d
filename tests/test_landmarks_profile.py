"""Issue 25.1, as a user at paper size meets it: `bench landmarks` reads the images `bench run` reads.

A RAF-DB tree in the official basic/ layout made of real JAFFE faces (Image/original with face boxes,
Image/aligned crops). Landmarks first detected on the aligned images (the smoke profile's set),
then `bench run --profile paper-dry` (the paper's original images) stops on AU coverage and prints
a `bench landmarks` command; run exactly as printed, it detects on the original images, and the
same run gets past the coverage check.
"""
import importlib.util
import json
import re
import shlex

import numpy as np
import pytest
from PIL import Image

from conftest import JAFFE

HAS_DLIB = importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models") is not None
pytestmark = pytest.mark.skipif(not HAS_DLIB or not (JAFFE / "landmarks.json").is_file(),
                                reason="dlib or the JAFFE faces are not available")

#: JAFFE folder -> RAF-DB code (1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness, 6 Anger, 7 Neutral)
RAF_CODE = {"surprise": 1, "fear": 2, "disgust": 3, "happiness": 4, "sadness": 5, "anger": 6, "neutral": 7}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BENCH_DATA", raising=False)


def make_jaffe_rafdb(root, train_per_class=3, test_per_class=1):
    """RAF-DB's basic/ layout from JAFFE: originals pasted into a wider canvas (the face is not the
    whole picture), their boxes from JAFFE's stored landmarks, and 100 px aligned crops."""
    basic = root / "basic"
    for sub in ("EmoLabel", "Image/aligned", "Image/original", "Annotation/boundingbox"):
        (basic / sub).mkdir(parents=True)
    stored = json.loads((JAFFE / "landmarks.json").read_text())
    lines, counters = [], {"train": 0, "test": 0}
    for folder, code in RAF_CODE.items():
        files = sorted((JAFFE / folder).glob("*.png"))[:train_per_class + test_per_class]
        for j, path in enumerate(files):
            split = "train" if j < train_per_class else "test"
            counters[split] += 1
            name = f"{split}_{counters[split]:05d}.jpg" if split == "train" else f"test_{counters[split]:04d}.jpg"
            face = np.asarray(Image.open(path).convert("RGB"))
            canvas = np.full((face.shape[0] + 40, face.shape[1] + 120, 3), 128, np.uint8)
            canvas[20:20 + face.shape[0], 60:60 + face.shape[1]] = face
            Image.fromarray(canvas).save(basic / "Image" / "original" / name, quality=95)
            pts = np.asarray(stored[f"{folder}/{path.name}"], np.float32) + [60, 20]
            x1, y1 = pts.min(0) - 10
            x2, y2 = pts.max(0) + 10
            (basic / "Annotation" / "boundingbox" / f"{name[:-4]}_boundingbox.txt").write_text(
                f"{x1:.1f} {y1:.1f} {x2:.1f} {y2:.1f}\n")
            crop = Image.fromarray(canvas).crop((int(x1), int(y1), int(x2), int(y2))).resize((100, 100))
            crop.save(basic / "Image" / "aligned" / f"{name[:-4]}_aligned.jpg", quality=95)
            lines.append(f"{name} {code}")
    (basic / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return basic


def _printed_command(err):
    match = re.search(r"`(bench landmarks [^`]*)`", err)
    assert match, err
    return match.group(1)


def test_the_coverage_hint_run_as_printed_fixes_the_coverage(tmp_path, cli):
    root = tmp_path / "data"
    make_jaffe_rafdb(root)
    code, _, err = cli("landmarks", "rafdb", "--profile", "smoke", "--data-root", root)
    assert code == 0, err
    assert "rafdb_images=aligned" in err and str(root / "basic") in err        # says which images and root

    run = ["run", "--methods", "cam", "--datasets", "rafdb", "--au", "on", "--profile", "paper-dry",
           "--data-root", root, "--results-dir", tmp_path / "results", "--executor", "local"]
    code, _, err = cli(*run)
    assert code == 2 and "only 0 of" in err and "data.min_au_coverage" in err, err      # train or test split
    printed = _printed_command(err)
    assert printed == f"bench landmarks rafdb --profile paper-dry --data-root {shlex.quote(str(root))}"

    code, _, err = cli(*shlex.split(printed)[1:])                               # exactly as printed
    assert code == 0, err
    assert "rafdb_images=original" in err and "profile paper-dry" in err
    detected = re.search(r"\((\d+) detected now", err)
    assert detected and int(detected.group(1)) == 28, err                       # the 28 original images

    code, out, err = cli(*run)
    assert "min_au_coverage" not in err and "bench landmarks" not in err, err
    assert code == 0, err
