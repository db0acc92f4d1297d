"""Ray Tune scaling on this machine: 2 trials on 2 CPUs through Ray ÷ the same 2 run one after the other.

Both sides give each trial one CPU thread, so the ideal speed-up is 2x; Ray's start-up (ray.init)
is measured separately. Run on a quiet machine:

    .venv/bin/python scripts/bench_ray_scaling.py [--profile smoke] [--epochs 3]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from bench.config.settings import resolve
from bench.sweep.executors import LocalExecutor, RayExecutor, init_ray
from bench.plan.spec import expand_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    console = Console(stderr=True, quiet=True)
    overrides = (("train.epochs", args.epochs), ("train.checkpoint", False))
    resolve(args.profile, list(overrides))          # a bad profile or option fails here, in one line
    # hand-built specs carry no planned identity (run_trial checks it only when bench run planned one)
    specs = expand_grid(["cam"], ["synthetic"], [False, True], [0], args.profile, overrides, lambda *cell: "")
    root = Path(tempfile.mkdtemp(prefix="ray-scaling-"))
    try:
        torch.set_num_threads(1)
        start = time.perf_counter()
        LocalExecutor(console).run(specs, root / "sequential")
        sequential = time.perf_counter() - start

        start = time.perf_counter()
        init_ray()
        startup = time.perf_counter() - start
        start = time.perf_counter()
        outcomes = RayExecutor(console, cpus_per_trial=1).run(specs, root / "ray")
        parallel = time.perf_counter() - start
        assert all(o.status == "ok" for o in outcomes), outcomes
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"profile {args.profile}, {args.epochs} epochs, 2 trials, {torch.get_num_interop_threads()} interop threads")
    print(f"sequential (1 thread each):      {sequential:7.1f} s")
    print(f"ray, 2 concurrent (1 CPU each):  {parallel:7.1f} s  (+ ray.init {startup:.1f} s)")
    print(f"speed-up: {sequential / parallel:.2f}x without start-up, {sequential / (parallel + startup):.2f}x with it")


if __name__ == "__main__":
    main()
