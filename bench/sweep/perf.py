"""``bench perf``: the harness's overhead as ratios against a bare PyTorch loop.

All variants use the same model, batch and device in one process, so the ratios are comparable
across machines (run it on your GPU too):
- harness step ÷ bare step (bare: pre-augmented batch, forward, CE, backward, update);
- step with AU alignment ÷ step without;
- AU rendering per batch ÷ step;
- augmentation per batch ÷ harness step (the part of the harness's overhead that the bare loop,
  fed a pre-augmented batch, does not do);
- a full evaluation (CL + CAM-COS + ATT-COS on every layer, with a gradient CAM) ÷ a plain
  inference pass over the same test images;
- opt-in (``extended_sample`` > 0): the extended evaluation (``bench.metrics.extended``: deletion,
  insertion, ROAD, the randomisation cascade and AU localisation) ÷ a plain inference pass over the
  same sample of test faces.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from au import get_codebook, render_au_maps
from bench.config.settings import Config
from bench.data import load_dataset
from bench.data.transforms import augment, to_input
from bench.metrics.base import batches, evaluate
from bench.train.model import build_model, feature_sizes, make_method, pick_device
from bench.train.optim import make_optimizer
from bench.train.step import TrainStep


@dataclass
class PerfResult:
    device: str
    batch: int
    image_size: int
    seconds: dict[str, float]
    extractor: str = ""           # the gradient CAM of the evaluation measurement, if any
    extended: str = ""            # "<method>, <n> faces" of the extended measurement, if any

    @property
    def ratios(self) -> dict[str, float]:
        s = self.seconds
        ratios = {
            "harness step / bare loop": s["harness"] / s["bare"],
            "step with AU / without": s["harness_au"] / s["harness"],
            "AU rendering / step": s["render"] / s["harness_au"],
            "augmentation / harness step": s["augment"] / s["harness"],
        }
        if "evaluation" in s:
            ratios[f"evaluation ({self.extractor}) / inference"] = s["evaluation"] / s["inference"]
        if "extended" in s:
            ratios[f"extended evaluation ({self.extended}) / inference"] = s["extended"] / s["extended_inference"]
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


def measure(config: Config, method_name: str, steps: int, extractor: str | None = "gradcam",
            extended_sample: int = 0) -> PerfResult:
    """The ratios above; ``extended_sample`` > 0 also times the extended evaluation on that many faces
    (with ``extractor``'s CAM, or the method's own when there is none)."""
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
    channels_last = cuda and config.train.channels_last
    # The bare loop gets the memory format the harness step's augmentation produces (contiguous
    # NCHW unless channels_last): on a CPU, oneDNN runs this ResNet ~15 % faster on an NHWC-strided
    # input, which would otherwise be counted as harness overhead.
    x = to_input(images, channels_last)
    x = x if channels_last else x.contiguous()
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

    augment_generator = torch.Generator().manual_seed(0)
    tc = config.train

    def augmentation() -> None:
        augment(images, landmarks, augment_generator, flip=tc.flip, rotation=tc.rotation, crop_scale=tc.crop_scale,
                jitter=tc.jitter, channels_last=cuda and tc.channels_last)

    seconds = {}
    # Interleave the variants and keep each one's fastest round: on a shared machine, noise only
    # ever adds time, so the minimum is the most repeatable estimate.
    for _ in range(ROUNDS):
        for name, fn in (("bare", bare), ("harness", harness(False)), ("harness_au", harness(True)), ("render", render),
                         ("augment", augmentation)):
            t = _time(fn, steps, device)
            seconds[name] = min(t, seconds.get(name, float("inf")))
    result = PerfResult(str(device), bs, config.data.image_size, seconds)
    if extractor:
        seconds.update(measure_evaluation(model, make_method(extractor, config), data, config, device))
        result.extractor = extractor
    if extended_sample > 0:
        explainer = make_method(extractor or method_name, config)
        seconds.update(measure_extended(model, explainer, data, config, device, extended_sample))
        result.extended = f"{explainer.name}, {min(extended_sample, len(data.test.labels))} faces"
    return result


def plain_inference(model, images: torch.Tensor, batch_size: int, device: torch.device, channels_last: bool) -> None:
    """The baseline of the evaluation ratios: one no-grad forward over ``images`` (uint8, host)."""
    model.eval()
    with torch.no_grad():
        for sl in batches(len(images), batch_size):
            model(to_input(images[sl].to(device, non_blocking=True), channels_last))


def measure_evaluation(model, extractor, data, config: Config, device: torch.device) -> dict[str, float]:
    """Seconds for one full evaluation of the test split vs one plain no-grad inference pass."""
    images, labels, landmarks = split_tensors(data)
    bs = config.train.eval_batch_size
    channels_last = device.type == "cuda" and config.train.channels_last

    def inference() -> None:
        plain_inference(model, images, bs, device, channels_last)

    def full() -> None:
        evaluate(model, [extractor], images, labels, landmarks, codebook=get_codebook(config.au.codebook),
                 edge=config.au.edge, class_names=data.class_names, batch_size=bs, device=device,
                 layers=config.eval.layers, channels_last=channels_last)

    return fastest_of((("inference", inference), ("evaluation", full), ("inference", inference),
                       ("evaluation", full)), device)


def split_tensors(data, pick: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The test split (or the ``pick`` rows of it) as tensors: a split may be a view of the cache."""
    test = data.test
    rows = (lambda a: np.asarray(a)) if pick is None else (lambda a: np.asarray(a[pick]))
    return (torch.from_numpy(rows(test.images)), torch.from_numpy(rows(test.labels)),
            torch.from_numpy(rows(test.landmarks)))


def fastest_of(rounds, device: torch.device) -> dict[str, float]:
    """Run ``(name, fn)`` rounds in order; each name keeps its fastest wall time (synced on CUDA)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out: dict[str, float] = {}
    for name, fn in rounds:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        out[name] = min(time.perf_counter() - start, out.get(name, float("inf")))
    return out


def measure_extended(model, method, data, config: Config, device: torch.device, sample_size: int,
                     seed: int = 0) -> dict[str, float]:
    """Seconds for the extended evaluation of ``sample_size`` seeded test faces vs a plain inference pass
    over the same faces (inference: fastest of 3; the extended evaluation, minutes on a CPU: one run)."""
    from au import get_codebook
    from bench.metrics.extended import extended_metrics

    n = len(data.test.labels)
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:min(sample_size, n)].numpy()
    images, labels, landmarks = split_tensors(data, pick)
    bs = config.train.eval_batch_size
    channels_last = device.type == "cuda" and config.train.channels_last

    def inference() -> None:
        plain_inference(model, images, bs, device, channels_last)

    def extended() -> None:
        extended_metrics(model, method, images, labels, landmarks, codebook=get_codebook(config.au.codebook),
                         edge=config.au.edge, num_classes=data.num_classes, device=device,
                         channels_last=channels_last, batch_size=bs, seed=seed)

    return fastest_of((("extended_inference", inference), ("extended_inference", inference),
                       ("extended", extended), ("extended_inference", inference)), device)


def render(result: PerfResult):
    from rich.table import Table

    t = Table(title=f"bench perf: {result.device}, batch {result.batch}, {result.image_size} px")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for name, sec in result.seconds.items():
        unit = ("ms/pass over the test split" if name in ("inference", "evaluation")
                else "ms/pass over the sample" if name.startswith("extended") else "ms/step")
        t.add_row(f"{name} ({unit})", f"{sec * 1000:.1f}")
    for name, ratio in result.ratios.items():
        t.add_row(name, f"{ratio:.3f}")
    return t
