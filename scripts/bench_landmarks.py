"""Images per second of `bench landmarks` (dlib) with 1 worker and with 2 Ray workers, on JAFFE faces.

    .venv/bin/python scripts/bench_landmarks.py [--jaffe DIR] [--copies 2] [--workers 2]

The faces (213 JAFFE images, repeated ``--copies`` times as symlinks under a temporary folder, so the
images are read from disk as a real dataset would be) are detected twice into fresh caches: once in
this process (``--workers 1``) and once by ``--workers`` Ray actors. Worker start-up (Ray, loading
dlib) is not counted: the rate runs from the moment the workers are ready. Prints both rates, their
ratio, and the load average before and after (the machine may be shared: say how loaded it was).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_tree(jaffe: Path, copies: int, out: Path) -> int:
    n = 0
    for folder in sorted(p for p in jaffe.iterdir() if p.is_dir()):
        (out / folder.name).mkdir(parents=True, exist_ok=True)
        for path in sorted(folder.glob("*.png")):
            for c in range(copies):
                (out / folder.name / f"{c}_{path.name}").symlink_to(path.resolve())
                n += 1
    return n


def rate(tree: Path, cache: Path, workers: int) -> dict:
    os.environ["BENCH_CACHE"] = str(cache)
    from bench.cli.landmarks import extract
    from bench.config.settings import DataConfig
    from bench.data.cache import CATALOGS

    catalog = CATALOGS["folder"](DataConfig(root=str(tree)))
    start = time.perf_counter()
    summary = extract(catalog, "folder", "dlib", progress=False, workers=workers)
    summary["wall"] = time.perf_counter() - start
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jaffe", type=Path, default=ROOT.parent / "shared" / "data" / "jaffe")
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not args.jaffe.is_dir():
        sys.exit(f"no JAFFE faces at {args.jaffe}; pass --jaffe DIR")
    with tempfile.TemporaryDirectory(prefix="bench-landmarks-") as tmp:
        tmp = Path(tmp)
        n = make_tree(args.jaffe, args.copies, tmp / "faces")
        print(f"{n} images ({args.copies} x JAFFE), {os.cpu_count()} CPUs, load average before: "
              f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        results = {}
        for workers in (1, args.workers):
            s = rate(tmp / "faces", tmp / f"cache-{workers}", workers)
            results[workers] = s
            print(f"workers={workers}: {s['new']} detected, {s['found']} found, {s['rate']:.1f} images/s "
                  f"(wall {s['wall']:.1f} s with start-up)")
        ratio = results[args.workers]["rate"] / results[1]["rate"]
        print(f"ratio {args.workers} workers / 1 worker: {ratio:.2f}; load average after: "
              f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
