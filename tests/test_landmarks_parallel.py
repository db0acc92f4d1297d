"""Issue 21.1: `bench landmarks` in parallel. Two invocations at once detect every image exactly once;
a killed run resumes where its last finished chunk ended; Ray workers give the in-process results."""
import importlib.util
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import JAFFE

ROOT = Path(__file__).resolve().parents[1]
HAS_DLIB = importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models") is not None

# A detector that logs every image it is given (by the number painted into it) to a shared file,
# then runs bench.cli.landmarks.extract on a folder dataset, in chunks of 8.
RUNNER = textwrap.dedent("""
    import os, signal, sys, time
    import numpy as np
    import au.detectors as detectors
    from au.detectors import Detection
    from bench.cli import landmark_jobs, landmarks
    from bench.config.settings import DataConfig
    from bench.data.cache import CATALOGS

    root, log, start, kill_at = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    calls = 0

    class Logging:
        name = "dlib"
        def detect(self, image, region=None):
            global calls
            calls += 1
            if calls == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            with open(log, "a") as fh:
                fh.write(f"{int(image[0, 0, 0]) * 256 + int(image[0, 0, 1])}\\n")
            time.sleep(0.005)
            return Detection(np.full((68, 2), float(image[0, 0, 0]), np.float32), 1)

    detectors.make_detector = lambda name, device="cpu": Logging()
    landmark_jobs.CHUNK = 8
    catalog = CATALOGS["folder"](DataConfig(root=root))
    while time.time() < start:
        time.sleep(0.001)
    summary = landmarks.extract(catalog, "folder", "dlib", progress=False)
    print(summary["new"], summary["images"])
""")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BENCH_DATA", raising=False)


def make_numbered_tree(root: Path, n: int) -> Path:
    for i in range(n):
        folder = root / ("happy" if i % 2 else "sad")
        folder.mkdir(parents=True, exist_ok=True)
        img = np.zeros((12, 12, 3), np.uint8)
        img[0, 0, 0], img[0, 0, 1] = i // 256, i % 256
        Image.fromarray(img).save(folder / f"{i:04d}.png")
    return root


def _start(root, log, start, kill_at=0):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(root), str(log), str(start), str(kill_at)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cached_ids(root):
    from bench.data.cache import landmark_cache

    return landmark_cache("folder", root.resolve(), "dlib").ids()


def test_two_invocations_at_once_detect_every_image_exactly_once(tmp_path):
    root = make_numbered_tree(tmp_path / "faces", 160)
    log = tmp_path / "detections.log"
    start = time.time() + 3.0
    procs = [_start(root, log, start) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    seen = [int(v) for v in log.read_text().split()]
    assert sorted(seen) == list(range(160))                       # each image detected once, in total
    news = sorted(int(out.split()[0]) for out, _ in outs)
    assert sum(news) == 160 and news[0] > 0, news                 # both did part of the work
    assert len(_cached_ids(root)) == 160


def test_a_killed_run_resumes_after_its_last_chunk(tmp_path):
    root = make_numbered_tree(tmp_path / "faces", 60)
    log = tmp_path / "detections.log"
    killed = _start(root, log, 0, kill_at=21)                     # chunks of 8: two saved, the third lost
    killed.communicate(timeout=300)
    assert killed.returncode == -9
    first = [int(v) for v in log.read_text().split()]
    assert len(first) == 20 and len(_cached_ids(root)) == 16
    again = _start(root, log, 0)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert out.split() == ["44", "60"]                            # 60 - 16 detected now, 60 in the cache
    counts = np.bincount([int(v) for v in log.read_text().split()], minlength=60)
    lost = first[16:]                                             # detected in the chunk the kill cut short
    assert (counts[lost] == 2).all() and counts.sum() == 64 and (counts >= 1).all()


@pytest.mark.skipif(not HAS_DLIB or not JAFFE.is_dir(), reason="dlib or the JAFFE faces are not available")
def test_ray_workers_give_the_in_process_landmarks(tmp_path, monkeypatch):
    from bench.cli import landmark_jobs, landmarks
    from bench.config.settings import DataConfig
    from bench.data.cache import CATALOGS, landmark_cache

    faces = tmp_path / "jaffe"
    for folder in ("anger", "happiness"):
        (faces / folder).mkdir(parents=True)
        for path in sorted((JAFFE / folder).glob("*.png"))[:12]:
            (faces / folder / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(landmark_jobs, "CHUNK", 4)
    catalog = CATALOGS["folder"](DataConfig(root=str(faces)))
    one = landmarks.extract(catalog, "folder", "dlib", progress=False)
    ids = sorted(landmark_cache("folder", catalog.root, "dlib").ids())
    expected = landmark_cache("folder", catalog.root, "dlib").get(ids)[0]
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache2"))
    two = landmarks.extract(catalog, "folder", "dlib", progress=False, workers=2)
    assert one["new"] == two["new"] == 24 and two["found"] == one["found"]
    got = landmark_cache("folder", catalog.root, "dlib").get(ids)[0]
    np.testing.assert_array_equal(got, expected)
    assert len(list(Path(landmark_cache("folder", catalog.root, "dlib").directory).glob("shard-*.npz"))) == 1
