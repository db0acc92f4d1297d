"""Is the data pipeline ever the bottleneck? Images/s delivered to the trainer vs its step throughput.

For each profile (demo, smoke) and dataset (synthetic; ``folder`` on ../shared/data/jaffe when
present, at the profile's image size) it measures:
- cold load: decode + resize every image into the memory-mapped cache (fresh ``$BENCH_CACHE``);
- warm load: the same ``load_dataset`` call again (cache hit);
- delivery: what ``bench.train.fit.fit`` does per batch: the split's ``SplitFeed`` (``stream`` from
  the memory-mapped cache with a background gather, or ``device`` when the split fits the GPU
  budget) delivers random batches of images, labels and landmarks on the device;
- step: one ``TrainStep`` with AU alignment (augment, render maps, forward, loss, backward, update).
The loader is not the bottleneck when delivery images/s is far above step images/s.

Run: ``.venv/bin/python scripts/bench_data_pipeline.py [--profiles demo,smoke] [--steps 5]``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
JAFFE = ROOT.parent / "shared" / "data" / "jaffe"


def measure(profile: str, dataset: str, steps: int, overrides: list) -> dict:
    from bench.config.settings import resolve
    from bench.data import feed, load_dataset
    from bench.data.placement import device_budget_bytes
    from bench.train.model import build_model, feature_sizes, make_method, pick_device
    from bench.train.optim import make_optimizer
    from bench.train.step import TrainStep

    config = resolve(profile, overrides)
    device = pick_device()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["BENCH_CACHE"] = cache
        start = time.perf_counter()
        data = load_dataset(dataset, config.data, 0)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        data = load_dataset(dataset, config.data, 0)
        warm = time.perf_counter() - start
        n_images = sum(len(data.split(s).labels) for s in ("train", "val", "test"))

        t = config.train
        train = feed(data.train, device, device_budget_bytes(device, config.data.device_budget))
        n = len(train)
        gen = torch.Generator().manual_seed(0)

        delivered, start = 0, time.perf_counter()
        while time.perf_counter() - start < 1.0:          # whole epochs of random batches, for ~1 s
            for _, labels, _ in train.batches(torch.randperm(n, generator=gen), t.batch_size):
                delivered += len(labels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        delivery = delivered / (time.perf_counter() - start)

        method = make_method("cam", config)
        model = build_model(method, config, data.num_classes).to(device)
        layers = tuple(config.au.layers) or method.alignment_layers
        sizes = feature_sizes(model, config.data.image_size, device)
        optimizer, _ = make_optimizer(model, config)
        step = TrainStep(method, model, optimizer, config, device, True, layers, sizes, torch.Generator().manual_seed(0))
        batch = train.take(range(min(t.batch_size, n)))
        for _ in range(2):
            step(*batch)
        start = time.perf_counter()
        for _ in range(steps):
            loss = step(*batch)
        float(loss.sum())                                 # one sync: the steps have run
        step_rate = steps * len(batch[1]) / (time.perf_counter() - start)
    return {"profile": profile, "dataset": dataset, "images": n_images, "size": config.data.image_size,
            "placement": train.placement,
            "batch": t.batch_size, "cold_s": cold, "decode_ips": n_images / cold, "warm_s": warm,
            "delivery_ips": delivery, "step_ips": step_rate, "device": str(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="demo,smoke")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    rows = []
    for profile in args.profiles.split(","):
        rows.append(measure(profile, "synthetic", args.steps, []))
        if (JAFFE / "labels.csv").is_file():
            rows.append(measure(profile, "folder", args.steps, [("data.root", str(JAFFE))]))
    print("| profile | dataset | images | px | batch | placement | cold load s (decode img/s) | warm load s "
          "| delivered img/s | train step img/s | delivered ÷ step |")
    print("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['profile']} | {r['dataset']} | {r['images']} | {r['size']} | {r['batch']} | {r['placement']} "
              f"| {r['cold_s']:.2f} ({r['decode_ips']:.0f}) | {r['warm_s']:.3f} | {r['delivery_ips']:,.0f} "
              f"| {r['step_ips']:.0f} | {r['delivery_ips'] / r['step_ips']:,.0f}× |")
    print(f"device: {rows[0]['device']}, torch threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
