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
| sanity_rho_final | mean |Spearman ρ| of CAMs, trained vs. fully randomised model | lower (0 best) |
| sanity_auc | area under the mean-|ρ| curve over the randomisation cascade, in [0, 1] | lower (0 best) |
| pointing | CAM maximum inside an AU region (± ``pointing_tolerance`` px) | higher |
| relevance_mass | share of the CAM's mass inside the AU regions | higher |
| relevance_rank | share of the top-K CAM pixels inside the AU regions (K = region size) | higher |

Faithfulness and sanity average over all sampled faces (the classifier's evidence does not need
an AU map); localisation uses faces with a valid AU map only (not Neutral, landmarks present, a
non-empty region) and is macro-averaged over the classes like CAM-COS. ``ExtendedResult.faces``
holds every per-face score (same keys, NaN where a face does not count), so the headline numbers
can be rebuilt and tested face by face.

Faithfulness scores the true class by default (``target="true"``: the same CAM that CAM-COS and the
localisation metrics judge); ``target="predicted"`` explains and scores the model's top-1 class, as
RISE does. Predictions never see the labels (``model(x)``, whatever ``needs_labels`` says).
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
from bench.metrics.sanity import SIMILARITY_SIZE, cascade_steps, cascade_summary, reinitialise, spearman, ssim
from methods import Method

METRIC_DIRECTIONS: dict[str, str] = {
    "deletion_auc": "lower",
    "insertion_auc": "higher",
    "road": "higher",
    "sanity_rho_final": "lower",
    "sanity_auc": "lower",
    "pointing": "higher",
    "relevance_mass": "higher",
    "relevance_rank": "higher",
}

#: ``extended_metrics(target=...)``: whose class the faithfulness metrics explain and score.
FAITHFULNESS_TARGETS = ("true", "predicted")


@dataclass
class ExtendedResult:
    """``metrics``: the keys of ``METRIC_DIRECTIONS`` (None where no face qualified);
    ``curves``: ``deletion_curve``, ``insertion_curve`` (mean confidence, length steps + 1),
    ``curve_fractions``, and the cascade's ``sanity_abs_rho`` / ``sanity_signed_rho`` / ``sanity_ssim``
    (mean over faces per step) with ``sanity_steps`` (the step names);
    ``faces``: per-face scores, each (n,) float32 in the order of the faces given, under the keys of
    ``METRIC_DIRECTIONS`` (localisation NaN where the face has no usable AU map); the headline
    metrics are their plain means (faithfulness, sanity) or class-then-macro means (localisation);
    ``details``: per-step sanity, ROAD curves, counts, options and seconds per part."""

    metrics: dict[str, Any]
    curves: dict[str, np.ndarray]
    details: dict[str, Any] = field(default_factory=dict)
    faces: dict[str, np.ndarray] = field(default_factory=dict)


def _predictor(model: torch.nn.Module):
    """``x -> logits`` for perturbed copies of a batch: a forward without labels, always (labels may
    steer a method's CAM, never its predictions)."""
    def predict(x: torch.Tensor) -> torch.Tensor:
        return model(x).logits
    return predict


def similarity_maps(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Raw CAMs -> the min-max maps the sanity cascade compares (one recipe for trained and randomised)."""
    return normalise_cam(cam.detach(), size)


def _optional(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def extended_metrics(model: torch.nn.Module, method: Method, images: torch.Tensor, labels: torch.Tensor,
                     landmarks: torch.Tensor, *, codebook: Codebook, edge: float, num_classes: int,
                     device: torch.device, channels_last: bool = False, batch_size: int = 32, seed: int = 0,
                     steps: int = 20, target: str = "true", pointing_tolerance: float = 0.0) -> ExtendedResult:
    """Faithfulness, sanity and localisation metrics of ``method``'s CAMs on the given faces.

    ``images`` uint8 (n, H, W, 3) on the host, ``labels`` (n,), ``landmarks`` (n, 68, 2), NaN = none.
    ``target`` ("true" | "predicted", ``eval.faithfulness_target``): the class whose CAM the deletion,
    insertion and ROAD curves follow and whose confidence they read. ``pointing_tolerance``
    (``eval.pointing_tolerance``): pixels at the input size within which a peak off the AU region
    still counts as a hit.
    """
    n = len(labels)
    if n == 0:
        raise ValueError("the extended evaluation got no faces (is the test split empty?)")
    if steps < 1:
        raise ValueError(f"deletion/insertion need at least 1 step (got steps={steps})")
    if target not in FAITHFULNESS_TARGETS:
        raise ValueError(f"faithfulness target {target!r} is not one of {', '.join(FAITHFULNESS_TARGETS)}")
    if not pointing_tolerance >= 0:
        raise ValueError(f"the pointing tolerance must be >= 0 pixels (got {pointing_tolerance})")
    device = torch.device(device)
    H, W = images.shape[1:3]
    sim_size = (min(H, SIMILARITY_SIZE), min(W, SIMILARITY_SIZE))
    was_training = model.training
    grads = [(p, p.grad) for p in model.parameters()]     # gradient extractors clear or fill .grad
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    fractions = torch.linspace(0, 1, steps + 1, device=device)
    face_parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("deletion_auc", "insertion_auc", "road", "pointing",
                                                                 "relevance_mass", "relevance_rank")}
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
            for name, score in (("pointing", pointing_game(cam, region, pointing_tolerance)),
                                ("relevance_mass", relevance_mass(cam, region)),
                                ("relevance_rank", relevance_rank(cam, region))):
                local[name].add(torch.nan_to_num(score), y, usable)
                face_parts[name].append(torch.where(usable, score.float(), torch.full_like(score.float(), float("nan"))))

            predict = _predictor(model)
            scored, faithful_cam = y, cam
            if target == "predicted":
                with torch.no_grad():
                    scored = predict(x).argmax(1)
                _, predicted_cam = method.explain(model, x, scored)
                faithful_cam = normalise_cam(predicted_cam.detach(), (H, W))
            ranks = pixel_ranks(faithful_cam, generator)
            deletion, insertion = deletion_insertion(predict, x, scored, ranks,
                                                     blur_baseline(x.float()).to(x.dtype), steps, channels_last)
            face_parts["deletion_auc"].append(curve_auc(deletion, fractions))
            face_parts["insertion_auc"].append(curve_auc(insertion, fractions))
            curve_sums["deletion"] += deletion.sum(0)
            curve_sums["insertion"] += insertion.sum(0)
            curves = road(predict, x, scored, ranks, generator=generator, channels_last=channels_last)
            face_parts["road"].append(curves.score)
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

    summary = cascade_summary(sanity["face_spearman"])
    faces = {key: torch.cat(parts).double().cpu().numpy() for key, parts in face_parts.items()}
    faces["sanity_rho_final"] = summary["face_final"]
    faces["sanity_auc"] = summary["face_auc"]
    per_class = {name: avg.per_class() for name, avg in local.items()}
    metrics = {
        "deletion_auc": float(faces["deletion_auc"].mean()),
        "insertion_auc": float(faces["insertion_auc"].mean()),
        "road": float(faces["road"].mean()),
        "sanity_rho_final": _optional(summary["rho_final"]),
        "sanity_auc": _optional(summary["auc"]),
        **{name: _optional(macro_average(pc)) for name, pc in per_class.items()},
    }
    curves_out = {
        "deletion_curve": (curve_sums["deletion"] / n).cpu().numpy().astype(np.float32),
        "insertion_curve": (curve_sums["insertion"] / n).cpu().numpy().astype(np.float32),
        "curve_fractions": fractions.cpu().numpy().astype(np.float32),
        "sanity_abs_rho": np.asarray(summary["abs_curve"], dtype=np.float32),
        "sanity_signed_rho": np.asarray(summary["signed_curve"], dtype=np.float32),
        "sanity_ssim": np.asarray(sanity["ssim"], dtype=np.float32),
        "sanity_steps": np.array(sanity["steps"], dtype=str),
    }
    details = {
        "n_samples": n,
        "n_localised": int(n_local),
        "steps": steps,
        "faithfulness_target": target,
        "pointing_tolerance": float(pointing_tolerance),
        "road_fractions": list(ROAD_FRACTIONS),
        "road_morf": (road_sums["morf"] / n).cpu().tolist(),
        "road_lerf": (road_sums["lerf"] / n).cpu().tolist(),
        "sanity_steps": sanity["steps"],
        "sanity_abs_spearman": [float(v) for v in summary["abs_curve"]],
        "sanity_spearman": sanity["spearman"],
        "sanity_ssim": sanity["ssim"],
        "per_class": {name: [_optional(v) for v in pc] for name, pc in per_class.items()},
        "seconds": seconds,
    }
    return ExtendedResult(metrics, curves_out, details,
                          {key: np.asarray(v, dtype=np.float32) for key, v in faces.items()})


def randomisation_similarity(model: torch.nn.Module, method: Method, images: torch.Tensor, labels: torch.Tensor,
                             trained_maps: list[torch.Tensor], *, device: torch.device, channels_last: bool,
                             batch_size: int, seed: int, size: tuple[int, int]) -> dict[str, list]:
    """Cascading randomisation on a deep copy, against ``trained_maps``: per step its name, the signed
    mean Spearman ρ (``spearman``), mean |ρ| (``abs_spearman``) and mean SSIM over faces, and every
    face's ρ (``face_spearman``, an array (steps, faces)) for ``sanity.cascade_summary``."""
    randomised = copy.deepcopy(model).eval()
    done: set[int] = set()
    out: dict[str, Any] = {"steps": [], "spearman": [], "abs_spearman": [], "ssim": []}
    per_face: list[np.ndarray] = []
    for index, step in enumerate(cascade_steps(randomised)):
        done = reinitialise(step.modules, done, seed + 1000 + index)
        rho: list[torch.Tensor] = []
        structural = torch.zeros((), device=device, dtype=torch.float64)
        for sl, trained in zip(batches(len(labels), batch_size), trained_maps):
            x = to_input(images[sl].to(device, non_blocking=True), channels_last)
            y = labels[sl].to(device, non_blocking=True)
            _, cam = method.explain(randomised, x, y)
            maps = similarity_maps(cam, size)
            rho.append(spearman(trained, maps))
            structural += ssim(trained, maps).sum()
        faces = torch.cat(rho).double().cpu().numpy()
        per_face.append(faces)
        out["steps"].append(step.name)
        out["spearman"].append(float(faces.mean()))
        out["abs_spearman"].append(float(np.abs(faces).mean()))
        out["ssim"].append(float(structural) / len(labels))
    del randomised
    out["face_spearman"] = np.stack(per_face) if per_face else np.zeros((0, len(labels)))
    return out
