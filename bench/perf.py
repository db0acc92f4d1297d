"""``bench perf``: the harness's overhead as ratios against a bare PyTorch loop.

All variants use the same model, batch and device in one process, so the ratios are comparable
across machines (run it on your GPU too):
- harness step ÷ bare step (bare: pre-augmented batch, forward, CE, backward, update);
- step with AU alignment ÷ step without;
- AU rendering per batch ÷ step.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from au import get_codebook, render_au_maps
from bench.config import Config
from bench.data import load_dataset
from bench.data.transforms import to_input
from bench.train import TrainStep, build_model, feature_sizes, make_method, make_optimizer, pick_device


@dataclass
class PerfResult:
    device: str
    batch: int
    image_size: int
    seconds: dict[str, float]

    @property
    def ratios(self) -> dict[str, float]:
        s = self.seconds
        return {
            "harness step / bare loop": s["harness"] / s["bare"],
            "step with AU / without": s["harness_au"] / s["harness"],
            "AU rendering / step": s["render"] / s["harness_au"],
        }


def _time(fn: Callable[[], object], steps: int, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return (time.perf_counter() - start) / steps


def measure(config: Config, method_name: str, steps: int) -> PerfResult:
    device = pick_device()
    torch.manual_seed(0)
    data = load_dataset("synthetic", config.data, 0)
    bs = config.train.batch_size
    images = torch.from_numpy(data.train.images[:bs]).to(device)
    labels = torch.from_numpy(data.train.labels[:bs]).to(device)
    landmarks = torch.from_numpy(data.train.landmarks[:bs]).to(device)
    method = make_method(method_name, config)
    model = build_model(method, config, data.num_classes).to(device).train()
    optimizer, _ = make_optimizer(model, config)
    sizes = feature_sizes(model, config.data.image_size, device)
    layers = tuple(config.au.layers) or method.alignment_layers
    cuda = device.type == "cuda"
    x = to_input(images, cuda and config.train.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and config.train.amp)

    def bare() -> None:
        with autocast:
            loss = F.cross_entropy(model(x).logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def harness(align: bool) -> Callable[[], object]:
        step = TrainStep(method, model, optimizer, config, device, align, layers, sizes,
                         torch.Generator().manual_seed(0))
        return lambda: step(images, labels, landmarks)

    codebook = get_codebook(config.au.codebook)
    render_sizes = sorted({sizes[name] for name in layers})

    def render() -> None:
        for size in render_sizes:
            render_au_maps(landmarks, labels, images.shape[1:3], size, codebook, config.au.edge)

    seconds = {}
    # Interleave the variants twice and keep the faster pass of each, to damp drift on shared machines.
    for _ in range(2):
        for name, fn in (("bare", bare), ("harness", harness(False)), ("harness_au", harness(True)), ("render", render)):
            t = _time(fn, steps, device)
            seconds[name] = min(t, seconds.get(name, float("inf")))
    return PerfResult(str(device), bs, config.data.image_size, seconds)


def render(result: PerfResult):
    from rich.table import Table

    t = Table(title=f"bench perf: {result.device}, batch {result.batch}, {result.image_size} px")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for name, sec in result.seconds.items():
        t.add_row(f"{name} (ms/step)", f"{sec * 1000:.1f}")
    for name, ratio in result.ratios.items():
        t.add_row(name, f"{ratio:.3f}")
    return t
