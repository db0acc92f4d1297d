"""The opt-in extended evaluation: faithfulness, sanity and AU localisation of one method's CAMs.

Runs on a sample of test faces chosen by the caller (``eval.sample_size``, seeded), batched on the
device. One pass over the sample computes each face's CAM of its true class, the localisation
metrics against its AU map, and the deletion / insertion / ROAD perturbations; then a deep copy of
the model is randomised from the top (``bench.metrics.sanity``) and the CAMs are recomputed at every step.
The model itself is left exactly as it came: same weights, mode, hooks and (no) gradients.

Metric keys and directions (``METRIC_DIRECTIONS``):

| key | meaning | better |
|---|---|---|
| deletion_auc | AUC of the target-class confidence as top-CAM pixels are blurred away | lower |
| insertion_auc | AUC as top-CAM pixels are put back onto the blurred image | higher |
| road | ROAD, (LeRF − MoRF) / 2 over 10–90 % removal, with linear imputation | higher |
| sanity_similarity | Spearman ρ of CAMs, trained vs. randomised-from-the-top model | lower |
| sanity_pass | sanity_similarity < ``SANITY_THRESHOLD`` (0.5) | True |
| pointing | CAM maximum inside an AU region | higher |
| relevance_mass | share of the CAM's mass inside the AU regions | higher |
| relevance_rank | share of the top-K CAM pixels inside the AU regions (K = region size) | higher |

Faithfulness and sanity average over all sampled faces (the classifier's evidence does not need
an AU map); localisation uses faces with a valid AU map only (not Neutral, landmarks present, a
non-empty region) and is macro-averaged over the classes like CAM-COS.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from au import Codebook, render_au_maps
from bench.data.transforms import to_input
from bench.metrics.base import ClassAverager, batches, macro_average, normalise_cam
from bench.metrics.faithfulness import ROAD_FRACTIONS, blur_baseline, curve_auc, deletion_insertion, pixel_ranks, road
from bench.metrics.localisation import au_region, pointing_game, relevance_mass, relevance_rank
from bench.metrics.sanity import SANITY_THRESHOLD, SIMILARITY_SIZE, cascade_steps, reinitialise, spearman, ssim
from methods import Method

METRIC_DIRECTIONS: dict[str, str] = {
    "deletion_auc": "lower",
    "insertion_auc": "higher",
    "road": "higher",
    "sanity_similarity": "lower",
    "sanity_pass": "higher",
    "pointing": "higher",
    "relevance_mass": "higher",
    "relevance_rank": "higher",
}


@dataclass
class ExtendedResult:
    """``metrics``: the keys of ``METRIC_DIRECTIONS`` (None where no face qualified);
    ``curves``: ``deletion_curve``, ``insertion_curve`` (mean confidence, length steps + 1) and
    ``curve_fractions``; ``details``: per-step sanity, ROAD curves, counts and seconds per part."""

    metrics: dict[str, Any]
    curves: dict[str, np.ndarray]
    details: dict[str, Any] = field(default_factory=dict)


def _predictor(model: torch.nn.Module, method: Method, labels: torch.Tensor):
    """``x -> logits`` for perturbed copies of a batch (labels repeated to the copies' count)."""
    def predict(x: torch.Tensor) -> torch.Tensor:
        if not method.needs_labels:
            return model(x).logits
        return model(x, labels=labels.repeat(x.shape[0] // labels.shape[0])).logits
    return predict


def similarity_maps(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Raw CAMs -> the min-max maps the sanity cascade compares (one recipe for trained and randomised)."""
    return normalise_cam(cam.detach(), size)


def _optional(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def extended_metrics(model: torch.nn.Module, method: Method, images: torch.Tensor, labels: torch.Tensor,
                     landmarks: torch.Tensor, *, codebook: Codebook, edge: float, num_classes: int,
                     device: torch.device, channels_last: bool = False, batch_size: int = 32, seed: int = 0,
                     steps: int = 20) -> ExtendedResult:
    """Faithfulness, sanity and localisation metrics of ``method``'s CAMs on the given faces.

    ``images`` uint8 (n, H, W, 3) on the host, ``labels`` (n,), ``landmarks`` (n, 68, 2), NaN = none.
    """
    n = len(labels)
    if n == 0:
        raise ValueError("the extended evaluation got no faces (is the test split empty?)")
    if steps < 1:
        raise ValueError(f"deletion/insertion need at least 1 step (got steps={steps})")
    device = torch.device(device)
    H, W = images.shape[1:3]
    sim_size = (min(H, SIMILARITY_SIZE), min(W, SIMILARITY_SIZE))
    was_training = model.training
    grads = [(p, p.grad) for p in model.parameters()]     # gradient extractors clear or fill .grad
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    fractions = torch.linspace(0, 1, steps + 1, device=device)
    sums = {k: torch.zeros((), device=device, dtype=torch.float64) for k in ("deletion", "insertion", "road")}
    curve_sums = {k: torch.zeros(steps + 1, device=device, dtype=torch.float64) for k in ("deletion", "insertion")}
    road_sums = {k: torch.zeros(len(ROAD_FRACTIONS), device=device, dtype=torch.float64) for k in ("morf", "lerf")}
    local = {k: ClassAverager(num_classes, device) for k in ("pointing", "relevance_mass", "relevance_rank")}
    n_local = torch.zeros((), device=device, dtype=torch.long)
    trained_maps: list[torch.Tensor] = []
    seconds = {"faithfulness_localisation": 0.0, "sanity": 0.0}

    start = time.perf_counter()
    try:
        for sl in batches(n, batch_size):
            x = to_input(images[sl].to(device, non_blocking=True), channels_last)
            y = labels[sl].to(device, non_blocking=True)
            lm = landmarks[sl].to(device, non_blocking=True)
            _, cam = method.explain(model, x, y)
            if cam is None:
                raise ValueError(f"method {method.name!r} gives no CAM; the extended evaluation needs one")
            trained_maps.append(similarity_maps(cam, sim_size))
            cam = normalise_cam(cam.detach(), (H, W))

            au_maps, valid = render_au_maps(lm, y, (H, W), (H, W), codebook, edge)
            region = au_region(au_maps)
            usable = valid & region.flatten(1).any(1)
            n_local += usable.sum()
            for name, fn in (("pointing", pointing_game), ("relevance_mass", relevance_mass),
                             ("relevance_rank", relevance_rank)):
                local[name].add(torch.nan_to_num(fn(cam, region)), y, usable)

            predict = _predictor(model, method, y)
            ranks = pixel_ranks(cam, generator)
            deletion, insertion = deletion_insertion(predict, x, y, ranks, blur_baseline(x.float()).to(x.dtype),
                                                     steps, channels_last)
            sums["deletion"] += curve_auc(deletion, fractions).sum()
            sums["insertion"] += curve_auc(insertion, fractions).sum()
            curve_sums["deletion"] += deletion.sum(0)
            curve_sums["insertion"] += insertion.sum(0)
            curves = road(predict, x, y, ranks, generator=generator, channels_last=channels_last)
            sums["road"] += curves.score.sum()
            road_sums["morf"] += curves.morf.sum(0)
            road_sums["lerf"] += curves.lerf.sum(0)
    finally:
        for p, grad in grads:
            p.grad = grad
        model.train(was_training)
    seconds["faithfulness_localisation"] = time.perf_counter() - start

    start = time.perf_counter()
    sanity = randomisation_similarity(model, method, images, labels, trained_maps, device=device,
                                      channels_last=channels_last, batch_size=batch_size, seed=seed,
                                      size=sim_size)
    seconds["sanity"] = time.perf_counter() - start

    similarity = float(np.mean(sanity["spearman"])) if sanity["spearman"] else float("nan")
    per_class = {name: avg.per_class() for name, avg in local.items()}
    metrics = {
        "deletion_auc": float(sums["deletion"]) / n,
        "insertion_auc": float(sums["insertion"]) / n,
        "road": float(sums["road"]) / n,
        "sanity_similarity": _optional(similarity),
        "sanity_pass": None if math.isnan(similarity) else bool(similarity < SANITY_THRESHOLD),
        **{name: _optional(macro_average(pc)) for name, pc in per_class.items()},
    }
    curves_out = {
        "deletion_curve": (curve_sums["deletion"] / n).cpu().numpy().astype(np.float32),
        "insertion_curve": (curve_sums["insertion"] / n).cpu().numpy().astype(np.float32),
        "curve_fractions": fractions.cpu().numpy().astype(np.float32),
    }
    details = {
        "n_samples": n,
        "n_localised": int(n_local),
        "steps": steps,
        "road_fractions": list(ROAD_FRACTIONS),
        "road_morf": (road_sums["morf"] / n).cpu().tolist(),
        "road_lerf": (road_sums["lerf"] / n).cpu().tolist(),
        "sanity_threshold": SANITY_THRESHOLD,
        "sanity_steps": sanity["steps"],
        "sanity_spearman": sanity["spearman"],
        "sanity_ssim": sanity["ssim"],
        "per_class": {name: [_optional(v) for v in pc] for name, pc in per_class.items()},
        "seconds": seconds,
    }
    return ExtendedResult(metrics, curves_out, details)


def randomisation_similarity(model: torch.nn.Module, method: Method, images: torch.Tensor, labels: torch.Tensor,
                             trained_maps: list[torch.Tensor], *, device: torch.device, channels_last: bool,
                             batch_size: int, seed: int, size: tuple[int, int]) -> dict[str, list]:
    """Cascading randomisation on a deep copy: per step, mean Spearman ρ and SSIM against ``trained_maps``."""
    randomised = copy.deepcopy(model).eval()
    done: set[int] = set()
    out: dict[str, list] = {"steps": [], "spearman": [], "ssim": []}
    for index, step in enumerate(cascade_steps(randomised)):
        done = reinitialise(step.modules, done, seed + 1000 + index)
        rho = torch.zeros((), device=device, dtype=torch.float64)
        structural = torch.zeros((), device=device, dtype=torch.float64)
        for sl, trained in zip(batches(len(labels), batch_size), trained_maps):
            x = to_input(images[sl].to(device, non_blocking=True), channels_last)
            y = labels[sl].to(device, non_blocking=True)
            _, cam = method.explain(randomised, x, y)
            maps = similarity_maps(cam, size)
            rho += spearman(trained, maps).sum()
            structural += ssim(trained, maps).sum()
        out["steps"].append(step.name)
        out["spearman"].append(float(rho) / len(labels))
        out["ssim"].append(float(structural) / len(labels))
    del randomised
    return out
