"""Batched evaluation: CL, mean-class accuracy, CAM-COS and ATT-COS per layer, confusion matrix.

Cosines follow the paper: per test image, against the AU map of the *true* class rendered at image
resolution from the landmarks; summed per class and macro-averaged over the 6 non-neutral
classes (Neutral and images without a valid map are skipped). ATT-COS upsamples T_l (bilinear,
align_corners) and shifts it by −min when it has negative values; CAM-COS upsamples the true-class
CAM (bilinear) and min-max normalises it at image resolution. Everything accumulates on the
device; the only host transfer is at the end.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from au import NEUTRAL, Codebook, map_cosine, render_au_maps
from au.align import layer_attention
from bench.data.transforms import to_input
from methods import Method


def upsample(maps: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    return F.interpolate(maps.float()[:, None], size=size, mode="bilinear", align_corners=align_corners)[:, 0]


def attention_for_metric(feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    att = upsample(layer_attention(feature.float()), size, align_corners=True)
    low = att.flatten(1).amin(1)[:, None, None]
    return torch.where(low < 0, att - low, att)


def normalise_cam(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    cam = upsample(cam, size, align_corners=False)
    low = cam.flatten(1).amin(1)[:, None, None]
    high = cam.flatten(1).amax(1)[:, None, None]
    return torch.nan_to_num((cam - low) / (high - low).clamp_min(1e-8), nan=0.0, posinf=1.0, neginf=0.0)


@dataclass
class ClassAverager:
    """Per-class sums and counts of a per-sample value over valid samples."""

    num_classes: int
    device: torch.device
    sums: torch.Tensor = field(init=False)
    counts: torch.Tensor = field(init=False)

    def __post_init__(self):
        self.sums = torch.zeros(self.num_classes, device=self.device, dtype=torch.float64)
        self.counts = torch.zeros(self.num_classes, device=self.device, dtype=torch.float64)

    def add(self, values: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> None:
        self.sums.index_add_(0, labels, torch.where(valid, values, 0).double())
        self.counts.index_add_(0, labels, valid.double())

    def per_class(self) -> np.ndarray:
        sums, counts = self.sums.cpu().numpy(), self.counts.cpu().numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def macro_average(per_class: np.ndarray, exclude: Sequence[int] = (NEUTRAL,)) -> float:
    """Unweighted mean over classes that have samples, leaving out ``exclude`` (Neutral)."""
    keep = [c for c in range(len(per_class)) if c not in exclude and not np.isnan(per_class[c])]
    return float(np.mean(per_class[keep])) if keep else float("nan")


@dataclass
class MethodAccumulator:
    num_classes: int
    layers: tuple[str, ...]
    device: torch.device
    confusion: torch.Tensor = field(init=False)
    cam: ClassAverager = field(init=False)
    att: dict[str, ClassAverager] = field(init=False)

    def __post_init__(self):
        self.confusion = torch.zeros(self.num_classes * self.num_classes, device=self.device, dtype=torch.long)
        self.cam = ClassAverager(self.num_classes, self.device)
        self.att = {name: ClassAverager(self.num_classes, self.device) for name in self.layers}

    def update(self, logits, cam, features, labels, au_maps, valid) -> None:
        size = tuple(au_maps.shape[-2:])
        pred = logits.argmax(1)
        self.confusion += torch.bincount(labels * self.num_classes + pred, minlength=self.num_classes ** 2)
        if cam is not None:
            self.cam.add(map_cosine(normalise_cam(cam, size), au_maps), labels, valid)
        for name in self.layers:
            self.att[name].add(map_cosine(attention_for_metric(features[name], size), au_maps), labels, valid)

    def metrics(self, class_names: Sequence[str], has_cam: bool) -> dict:
        conf = self.confusion.view(self.num_classes, self.num_classes).cpu().numpy()
        total = conf.sum()
        rows = conf.sum(1)
        recall = np.where(rows > 0, np.diag(conf) / np.maximum(rows, 1), np.nan)
        cam_pc = self.cam.per_class()
        out = {
            "cl": float(np.trace(conf) / max(total, 1) * 100),
            "mean_class_acc": float(np.nanmean(recall) * 100),
            "cam_cos": macro_average(cam_pc) if has_cam else None,
            "n_test": int(total),
            "n_valid_maps": int(self.cam.counts.sum().item()) if has_cam else int(
                next(iter(self.att.values())).counts.sum().item()) if self.att else 0,
            "confusion": conf.tolist(),
            "per_class_cam_cos": {n: _f(v) for n, v in zip(class_names, cam_pc)} if has_cam else {},
            "per_class_att_cos": {},
        }
        for name, avg in self.att.items():
            pc = avg.per_class()
            out[f"att_cos_{name}"] = macro_average(pc)
            out["per_class_att_cos"][name] = {n: _f(v) for n, v in zip(class_names, pc)}
        return out


def _f(v: float) -> float | None:
    return None if np.isnan(v) else float(v)


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def evaluate(model: torch.nn.Module, methods: Sequence[Method], images: torch.Tensor, labels: torch.Tensor,
             landmarks: torch.Tensor, *, codebook: Codebook, edge: float, class_names: Sequence[str],
             batch_size: int, device: torch.device, layers: Sequence[str] = (),
             channels_last: bool = False) -> dict[str, dict]:
    """Evaluate every extractor in ``methods`` on one trained model; returns metrics per method name.

    ``images`` are uint8 (N, H, W, 3) on the host; each batch moves to ``device`` once.
    """
    model.eval()
    num_classes = len(class_names)
    accs: dict[str, MethodAccumulator] = {}
    has_cam: dict[str, bool] = {}
    H, W = images.shape[1:3]
    for sl in batches(len(labels), batch_size):
        x = to_input(images[sl].to(device, non_blocking=True), channels_last)
        y = labels[sl].to(device, non_blocking=True)
        lm = landmarks[sl].to(device, non_blocking=True)
        au_maps, valid = render_au_maps(lm, y, (H, W), (H, W), codebook, edge)
        for method in methods:
            output, cam = method.explain(model, x, y)
            if method.name not in accs:
                names = tuple(layers) or tuple(k for k, v in output.features.items() if v.dim() == 4)
                accs[method.name] = MethodAccumulator(num_classes, names, device)
                has_cam[method.name] = cam is not None
            accs[method.name].update(output.logits.detach(), None if cam is None else cam.detach(),
                                     {k: v.detach() for k, v in output.features.items()}, y, au_maps, valid)
    return {name: acc.metrics(class_names, has_cam[name]) for name, acc in accs.items()}


def accuracy(model: torch.nn.Module, needs_labels: bool, images: torch.Tensor, labels: torch.Tensor, *,
             batch_size: int, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """Top-1 accuracy (%) as a device tensor (no sync): the model-selection metric."""
    model.eval()
    correct = torch.zeros((), device=device, dtype=torch.long)
    with torch.no_grad():
        for sl in batches(len(labels), batch_size):
            x = to_input(images[sl].to(device, non_blocking=True), channels_last)
            y = labels[sl].to(device, non_blocking=True)
            logits = model(x, labels=y if needs_labels else None).logits
            correct += (logits.argmax(1) == y).sum()
    return correct.double() * 100 / max(len(labels), 1)
