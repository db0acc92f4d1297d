"""How much a no-op `bench run` costs the driver, against a `bench methods` start (issue 21).

Builds (once) an AffectNet-shaped tree of N images (the Manually_Annotated release: CSV lists with
boxes and landmarks), fills a results folder with one `bench run --methods cam` (smoke profile, one
epoch), then times a rerun that has nothing to do and `bench methods`, each a fresh process, and prints
wall time and peak RSS (``/usr/bin/time``-style, from ``resource.getrusage`` of the children).

    python scripts/bench_noop_rerun.py --images 20000 --work /tmp/noop [--profile smoke] [--repeats 3]
"""
from __future__ import annotations

import argparse
import csv
import os
import tempfile
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def build_tree(root: Path, n: int) -> Path:
    from PIL import Image

    from bench.data.synthetic import SyntheticOptions, generate

    lists = root / "Manually_Annotated_file_lists"
    if (lists / "validation.csv").is_file():
        return root
    images = root / "Manually_Annotated" / "Manually_Annotated_Images"
    lists.mkdir(parents=True, exist_ok=True)
    faces = generate("test", 140, 5, SyntheticOptions(image_size=64))
    n_test = max(70, n // 10)
    for file, count in (("training.csv", n - n_test), ("validation.csv", n_test)):
        with open(lists / file, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                        "facial_landmarks", "expression", "valence", "arousal"])
            for j in range(count):
                i = j % len(faces.labels)
                rel = f"{j % 50}/{file[:5]}_{j:06d}.jpg"
                (images / rel).parent.mkdir(parents=True, exist_ok=True)
                canvas = np.full((80, 80, 3), 30 + j % 7, np.uint8)
                canvas[8:72, 8:72] = faces.images[i]
                Image.fromarray(canvas).save(images / rel, quality=90)
                points = faces.landmarks[i] + 8
                w.writerow([rel, 8, 8, 64, 64, ";".join(f"{v:.2f}" for v in points.reshape(-1)), int(faces.labels[i]),
                            0.1, 0.2])
    return root


def timed(args: list[str], env: dict) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MiB of this one child, stderr)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        err.seek(0)
        text = err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(text[-2000:])
    return wall, usage.ru_maxrss / 1024, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-noop"))
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bench", default=str(Path(sys.executable).parent / "bench"))
    args = parser.parse_args()
    root = build_tree(args.work / f"affectnet-{args.images}", args.images)
    env = {**os.environ, "BENCH_CACHE": str(args.work / "cache"), "HF_HUB_OFFLINE": "1"}
    run = [args.bench, "run", "--methods", "cam", "--datasets", "affectnet", "--data-root", str(root), "--profile",
           args.profile, "--executor", "local", "--results-dir", str(args.work / "results"), "--set", "train.epochs=1"]
    wall, _, err = timed(run, env)
    print(f"first run (decode + train): {wall:.1f} s; {err.strip().splitlines()[-1]}")
    for _ in range(args.repeats):
        noop = timed(run, env)
        assert "0 to train" in noop[2] and "0 to run" in noop[2], noop[2]
        methods = timed([args.bench, "methods"], env)
        print(f"no-op rerun {noop[0]:.2f} s, {noop[1]:.0f} MiB peak RSS; bench methods {methods[0]:.2f} s, "
              f"{methods[1]:.0f} MiB; wall ratio {noop[0] / methods[0]:.2f}, RSS ratio {noop[1] / methods[1]:.2f}")


if __name__ == "__main__":
    main()
