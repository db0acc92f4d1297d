"""Landmark cache (atomic shards, resume), ``bench landmarks``, and the detectors (dlib on real JAFFE)."""
import importlib.util
import json
import types

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

import au.detectors as detectors
from au.detectors import Detection, DetectorUnavailable
from au.landmark_cache import LandmarkCache, read_landmarks_json
from bench.cli import landmark_jobs
from bench.cli import landmarks as cli_landmarks
from bench.config.settings import DataConfig
from bench.data.cache import CATALOGS, landmark_cache
from bench.data.synthetic import TEMPLATE

from conftest import JAFFE

HAS_DLIB = importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models") is not None


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BENCH_DATA", raising=False)


def test_cache_roundtrip_nan_for_unknown_and_later_shards_win(tmp_path):
    cache = LandmarkCache(tmp_path / "lm")
    assert not cache.exists()
    a = np.arange(68 * 2, dtype=np.float32).reshape(68, 2)
    cache.append(["x", "y"], np.stack([a, np.full((68, 2), np.nan)]), [1, 0])
    cache.append(["x"], (a + 1)[None], [2])
    fresh = LandmarkCache(tmp_path / "lm")
    pts, absent = fresh.get(["x", "y", "z"])
    np.testing.assert_array_equal(pts[0], a + 1)
    assert np.isnan(pts[1]).all() and np.isnan(pts[2]).all() and absent == 1
    assert fresh.summary() == {"images": 2, "found": 1, "missed": 1, "several": 1}
    fresh.compact()
    assert len(list((tmp_path / "lm").glob("shard-*.npz"))) == 1
    np.testing.assert_array_equal(LandmarkCache(tmp_path / "lm").get(["x"])[0][0], a + 1)


def test_torn_shard_and_temp_files_are_ignored(tmp_path):
    cache = LandmarkCache(tmp_path / "lm")
    cache.append(["x"], np.zeros((1, 68, 2)), [1])
    (tmp_path / "lm" / "shard-99999999999999999999-1.npz").write_bytes(b"PK\x03\x04 torn")
    (tmp_path / "lm" / ".shard-1.npz.tmp7").write_bytes(b"partial")
    assert LandmarkCache(tmp_path / "lm").ids() == {"x"}


def test_read_landmarks_json(tmp_path):
    (tmp_path / "l.json").write_text(json.dumps({"a.png": [[1, 2]] * 68, "b.png": None}))
    marks = read_landmarks_json(tmp_path / "l.json")
    assert marks["a.png"].shape == (68, 2) and marks["a.png"][5].tolist() == [1, 2] and np.isnan(marks["b.png"]).all()


#: a plausible face in a 20 px image (the synthetic template: x 4..16, y 7..16)
FACE = (TEMPLATE * 6 + 10).astype(np.float32)


class FakeDetector:
    """Finds a face in every image whose top-left pixel is bright; counts calls."""

    name = "dlib"

    def __init__(self):
        self.calls = 0

    def detect(self, image, region=None):
        self.calls += 1
        if image[0, 0, 0] > 127:
            return Detection(FACE.copy(), 2 if image[0, 0, 1] > 127 else 1)
        return Detection(None, 0)


def make_tree(root, n=12):
    for i in range(n):
        folder = root / ("happy" if i % 2 else "sad")
        folder.mkdir(parents=True, exist_ok=True)
        img = np.zeros((20, 20, 3), np.uint8)
        img[0, 0, 0] = 255 if i % 3 else 0          # i % 3 == 0: no face
        img[0, 0, 1] = 255 if i == 1 else 0         # image 1: two faces
        Image.fromarray(img).save(folder / f"{i:02d}.png")
    return root


def test_extract_resumes_and_summarises(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "faces")
    fake = FakeDetector()
    monkeypatch.setattr(detectors, "make_detector", lambda name, device="cpu": fake)
    monkeypatch.setattr(landmark_jobs, "CHUNK", 5)
    cat = CATALOGS["folder"](DataConfig(root=str(root)))
    # stop after 7 images, as if interrupted: the first chunk (5 images) survives
    calls = {"n": 0}
    real_detect = fake.detect

    def flaky(image, region=None):
        calls["n"] += 1
        if calls["n"] > 7:
            raise KeyboardInterrupt
        return real_detect(image, region)

    fake.detect = flaky
    with pytest.raises(KeyboardInterrupt):
        cli_landmarks.extract(cat, "folder", "dlib", progress=False)
    assert len(landmark_cache("folder", cat.root, "dlib").ids()) == 5
    fake.detect = real_detect
    summary = cli_landmarks.extract(cat, "folder", "dlib", progress=False)
    assert summary["new"] == 7 and summary["images"] == 12
    assert summary["found"] == 8 and summary["missed"] == 4 and summary["several"] == 1
    again = cli_landmarks.extract(cat, "folder", "dlib", progress=False)
    assert again["new"] == 0                        # nothing left to detect


def test_cli_command_through_typer(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "faces", n=6)
    monkeypatch.setattr(detectors, "make_detector", lambda name, device="cpu": FakeDetector())
    app = typer.Typer()
    cli_landmarks.register(app)

    @app.callback()
    def _root():                                     # keep "landmarks" a named sub-command
        pass

    result = CliRunner().invoke(app, ["landmarks", "folder", "--data-root", str(root), "--profile", "smoke"])
    assert result.exit_code == 0, result.output
    assert "6 images" in result.output and "4 found, 2 missed, 1 with several faces" in result.output
    # the dataset now loads with these landmarks (auto -> the dlib cache), scaled 20 px -> 10 px
    from bench.data import load_dataset

    data = load_dataset("folder", DataConfig(root=str(root), image_size=10, test_fraction=0.34, val_fraction=0), 0)
    finite = np.isfinite(data.train.landmarks).all(axis=(1, 2))
    assert finite.sum() + np.isfinite(data.test.landmarks).all(axis=(1, 2)).sum() == 4
    np.testing.assert_allclose(data.train.landmarks[finite][0], (FACE + 0.5) / 2 - 0.5, atol=1e-5)


def test_summary_names_unreadable_files(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "faces", n=6)
    (root / "happy" / "03.png").write_bytes(b"")                 # zero bytes: unreadable
    monkeypatch.setattr(detectors, "make_detector", lambda name, device="cpu": FakeDetector())
    app = typer.Typer()
    cli_landmarks.register(app)

    @app.callback()
    def _root():
        pass

    result = CliRunner().invoke(app, ["landmarks", "folder", "--data-root", str(root), "--profile", "smoke"])
    assert result.exit_code == 0, result.output
    assert "1 unreadable" in result.output and "unreadable: " in result.output and "03.png" in result.output


def test_unavailable_detector_is_one_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(detectors.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("dlib", "face_alignment", "face_recognition_models") else real(name, *a))
    for name, hint in (("dlib", "pip install"), ("face-alignment", "--detector dlib")):
        with pytest.raises(DetectorUnavailable) as err:
            detectors.make_detector(name)
        assert "\n" not in str(err.value) and hint in str(err.value)
    with pytest.raises(DetectorUnavailable, match="face-recognition-models"):
        detectors.dlib_model_path()


def test_face_alignment_weights_are_checked_before_any_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("BENCH_FAN_DOWNLOAD", raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(detectors.importlib.util, "find_spec",
                        lambda name, *a: types.SimpleNamespace() if name == "face_alignment" else real(name, *a))
    with pytest.raises(DetectorUnavailable) as err:
        detectors.FaceAlignmentDetector()
    msg = str(err.value)
    assert "s3fd-619a316812.pth" in msg and "2DFAN4-11f355bf06.pth.tar" in msg and str(tmp_path / "torch") in msg


@pytest.mark.skipif(importlib.util.find_spec("face_alignment") is None, reason="face-alignment not installed")
def test_face_alignment_with_stand_in_weights(tmp_path, monkeypatch):
    """The FAN code path offline: random-init weights placed in the torch hub cache."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = detectors.fan_hub_dir()
    hub.mkdir(parents=True)
    torch.save(s3fd().state_dict(), hub / detectors.FAN_WEIGHTS[0])
    torch.save({"state_dict": FAN(4).state_dict()}, hub / detectors.FAN_WEIGHTS[1])
    det = detectors.FaceAlignmentDetector()
    out = det.detect(np.zeros((64, 64, 3), np.uint8), region=(8, 8, 56, 56))
    assert out.points is None or out.points.shape == (68, 2)


@pytest.mark.skipif(not HAS_DLIB or not (JAFFE / "landmarks.json").is_file(), reason="dlib or JAFFE not available")
def test_dlib_on_real_jaffe_faces_matches_the_stored_landmarks():
    cat = CATALOGS["folder"](DataConfig(root=str(JAFFE)))
    summary = cli_landmarks.extract(cat, "folder", "dlib", progress=False)
    assert summary["images"] == 213 and summary["found"] == 213 and summary["missed"] == 0
    stored = json.loads((JAFFE / "landmarks.json").read_text())
    ids = sorted(stored)
    found, absent = landmark_cache("folder", cat.root, "dlib").get(ids)
    assert absent == 0
    err = np.linalg.norm(found - np.array([stored[k] for k in ids], np.float32), axis=-1)   # (213, 68) px
    assert np.median(err) <= 1.0 and np.percentile(err.max(1), 95) <= 2.0 and err.max() <= 8.0
