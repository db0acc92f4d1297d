"""``bench perf``: the harness's overhead as ratios against a bare PyTorch loop.

All variants use the same model, batch and device in one process, so the ratios are comparable
across machines (run it on your GPU too):
- harness step ÷ bare step (bare: pre-augmented batch, forward, CE, backward, update);
- step with AU alignment ÷ step without;
- AU rendering per batch ÷ step;
- a full evaluation (CL + CAM-COS + ATT-COS on every layer, with a gradient CAM) ÷ a plain
  inference pass over the same test images.
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
from bench.evaluate import batches, evaluate
from bench.train import TrainStep, build_model, feature_sizes, make_method, make_optimizer, pick_device


@dataclass
class PerfResult:
    device: str
    batch: int
    image_size: int
    seconds: dict[str, float]
    extractor: str = ""           # the gradient CAM of the evaluation measurement, if any

    @property
    def ratios(self) -> dict[str, float]:
        s = self.seconds
        ratios = {
            "harness step / bare loop": s["harness"] / s["bare"],
            "step with AU / without": s["harness_au"] / s["harness"],
            "AU rendering / step": s["render"] / s["harness_au"],
        }
        if "evaluation" in s:
            ratios[f"evaluation ({self.extractor}) / inference"] = s["evaluation"] / s["inference"]
        return ratios


ROUNDS = 5


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


def measure(config: Config, method_name: str, steps: int, extractor: str | None = "gradcam") -> PerfResult:
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
    # Interleave the variants and keep each one's fastest round: on a shared machine, noise only
    # ever adds time, so the minimum is the most repeatable estimate.
    for _ in range(ROUNDS):
        for name, fn in (("bare", bare), ("harness", harness(False)), ("harness_au", harness(True)), ("render", render)):
            t = _time(fn, steps, device)
            seconds[name] = min(t, seconds.get(name, float("inf")))
    result = PerfResult(str(device), bs, config.data.image_size, seconds)
    if extractor:
        seconds.update(measure_evaluation(model, make_method(extractor, config), data, config, device))
        result.extractor = extractor
    return result


def measure_evaluation(model, extractor, data, config: Config, device: torch.device) -> dict[str, float]:
    """Seconds for one full evaluation of the test split vs one plain no-grad inference pass."""
    images = torch.from_numpy(data.test.images)
    labels = torch.from_numpy(data.test.labels)
    landmarks = torch.from_numpy(data.test.landmarks)
    bs = config.train.eval_batch_size
    channels_last = device.type == "cuda" and config.train.channels_last
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def inference() -> None:
        model.eval()
        with torch.no_grad():
            for sl in batches(len(labels), bs):
                model(to_input(images[sl].to(device, non_blocking=True), channels_last))

    def full() -> None:
        evaluate(model, [extractor], images, labels, landmarks, codebook=get_codebook(config.au.codebook),
                 edge=config.au.edge, class_names=data.class_names, batch_size=bs, device=device,
                 layers=config.eval.layers, channels_last=channels_last)

    out = {}
    for name, fn in (("inference", inference), ("evaluation", full), ("inference", inference), ("evaluation", full)):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        out[name] = min(time.perf_counter() - start, out.get(name, float("inf")))
    return out


def render(result: PerfResult):
    from rich.table import Table

    t = Table(title=f"bench perf: {result.device}, batch {result.batch}, {result.image_size} px")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for name, sec in result.seconds.items():
        unit = "ms/pass over the test split" if name in ("inference", "evaluation") else "ms/step"
        t.add_row(f"{name} ({unit})", f"{sec * 1000:.1f}")
    for name, ratio in result.ratios.items():
        t.add_row(name, f"{ratio:.3f}")
    return t
