"""The evaluation stage of a job: one model, its extractors, the test split -> one record each.

Runs on a model that was just trained or that was read back from the store; the numbers depend
only on the weights, the extractor and the evaluation settings (the evaluation id). Each extractor
gets its own record, with its row of metrics, the figure arrays and the per-face results; one
extractor that fails gives a failed record for itself and the others land.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from au import get_codebook
from bench.config.settings import Config
from bench.data.cache import missing_landmarks
from bench.data.feed import feed
from bench.data.placement import device_budget_bytes, trial_gpu_fraction
from bench.metrics.base import evaluate
from methods import Method

NEUTRAL = 0


@dataclass
class EvaluationResult:
    metrics: dict[str, dict[str, Any]]                 # method -> its metrics (ok methods only)
    failures: dict[str, str]                           # method -> error
    maps: dict[str, np.ndarray]                        # figure arrays of every method
    faces: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)   # method -> per-face columns
    seconds: float = 0.0


def select_sample(n: int, size: int, seed: int) -> torch.Tensor:
    """A seeded, sorted choice of ``size`` test faces (all when ``size`` is 0 or too large)."""
    if size <= 0 or size >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].sort().values


def _extended(model, methods: list[Method], result: EvaluationResult, test, config: Config, num_classes: int,
              device: torch.device, channels_last: bool, seed: int) -> None:
    """Faithfulness, sanity and AU-localisation metrics (``eval.extended``) on a seeded test sample."""
    from bench.metrics.extended import extended_metrics

    chosen = select_sample(len(test), config.eval.sample_size, seed)
    sample = test.take(chosen.tolist())
    for method in methods:
        if method.name not in result.metrics:
            continue
        try:
            ext = extended_metrics(model, method, *sample, codebook=get_codebook(config.au.codebook),
                                   edge=config.au.edge, num_classes=num_classes, device=device,
                                   channels_last=channels_last, batch_size=config.train.eval_batch_size, seed=seed,
                                   target=config.eval.faithfulness_target,
                                   pointing_tolerance=config.eval.pointing_tolerance)
        except Exception as exc:  # noqa: BLE001 - this method's record fails, the others land
            result.failures[method.name] = f"extended evaluation: {type(exc).__name__}: {exc}"
            continue
        result.metrics[method.name].update(ext.metrics)
        for key, curve in ext.curves.items():
            result.maps["curve_fractions" if key == "curve_fractions" else f"{method.name}.{key}"] = curve
        if method.name in result.faces:
            _spread(result.faces[method.name], chosen.numpy(), ext.faces, "ext_")


def _spread(columns: dict[str, np.ndarray], chosen: np.ndarray, values: dict[str, np.ndarray], prefix: str) -> None:
    """Per-face values of a sample, as full-length columns (NaN for faces outside the sample)."""
    n = len(next(iter(columns.values())))
    for key, array in values.items():
        array = np.asarray(array)
        if array.ndim != 1 or len(array) != len(chosen) or not np.issubdtype(array.dtype, np.number):
            continue
        full = np.full(n, np.nan, dtype=np.float32)
        full[chosen] = array.astype(np.float32)
        columns[f"{prefix}{key}"] = full


def _interventions(model, methods: list[Method], result: EvaluationResult, data, dataset: str, config: Config,
                   device: torch.device, channels_last: bool, seed: int) -> None:
    """Does the decision use the AUs (``eval.interventions``)? On a dataset that can draw its faces again
    (synthetic), counterfactual faces with AUs switched off and shortcut patches added, the threshold of
    the checks chosen on validation faces; on real faces, AU-region deletion."""
    from bench.data.registry import counterfactual_source
    from bench.metrics.interventions import Pictures, intervention_metrics
    from bench.metrics.region_deletion import region_deletion_metrics

    chosen = select_sample(len(data.test), config.eval.sample_size, seed).numpy()
    source = counterfactual_source(dataset)
    splits = source(config.data, seed) if source is not None else None
    pictures = Pictures()
    for method in methods:
        if method.name not in result.metrics:
            continue
        try:
            if splits is not None:
                validation = select_sample(len(data.val), config.eval.sample_size, seed + 1).tolist()
                found = intervention_metrics(model, method, splits["test"], chosen.tolist(), validation=splits["val"],
                                             validation_indices=validation, device=device,
                                             batch_size=config.train.eval_batch_size, channels_last=channels_last,
                                             pictures=pictures)
            else:
                sample = data.test.take(chosen.tolist())
                found = region_deletion_metrics(model, method, sample.images, sample.labels, sample.landmarks,
                                                codebook=get_codebook(config.au.codebook), device=device,
                                                batch_size=config.train.eval_batch_size,
                                                channels_last=channels_last, seed=seed)
        except Exception as exc:  # noqa: BLE001 - this method's record fails, the others land
            result.failures[method.name] = f"interventions: {type(exc).__name__}: {exc}"
            continue
        result.metrics[method.name].update(found.metrics)
        result.metrics[method.name]["intervention"] = found.details.get("intervention", "region deletion")
        for key, curve in found.curves.items():
            result.maps[f"{method.name}.int_{key}"] = np.asarray(curve)
        for key in ("label", "unit_drop_logit", "unit_cam_mass"):       # per face and unit: the figure's input
            if key in found.faces:
                result.maps[f"{method.name}.int_face_{key}"] = np.asarray(found.faces[key])
        if found.details.get("units") is not None:
            result.maps[f"{method.name}.int_units"] = np.array([json.dumps(found.details["units"])])
        if method.name in result.faces:
            _spread(result.faces[method.name], chosen, found.faces, "int_")
            headline = {}                    # per-face values of the headline metrics, for the faces tests
            if "agreement" in found.faces:
                headline["au_importance_agreement"] = found.faces["agreement"]
            if np.ndim(found.faces.get("patch_moved")) == 2:
                with np.errstate(all="ignore"):
                    headline["shortcut_reliance"] = np.nanmean(found.faces["patch_moved"], axis=1)
            _spread(result.faces[method.name], chosen, headline, "ext_")


def evaluate_model(model: torch.nn.Module, methods: list[Method], trained: Method, data, config: Config,
                   device: torch.device, channels_last: bool, seed: int, dataset: str = "") -> EvaluationResult:
    """Base metrics (and extended ones when asked) of every extractor, one batched pass over test."""
    start = time.perf_counter()
    reserved = torch.cuda.memory_reserved(device) if device.type == "cuda" else 0     # the model's own memory
    test = feed(data.test, device, device_budget_bytes(device, config.data.device_budget, trial_gpu_fraction(),
                                                       reserved_bytes=reserved))
    data.stats.setdefault("placement", {})["test"] = test.placement
    result = EvaluationResult({}, {}, {})
    per_face: dict[str, dict[str, np.ndarray]] = {}
    result.metrics = evaluate(model, methods, test, test.labels, test.landmarks,
                              codebook=get_codebook(config.au.codebook), edge=config.au.edge,
                              class_names=data.class_names, batch_size=config.train.eval_batch_size, device=device,
                              layers=config.eval.layers, channels_last=channels_last, maps=result.maps,
                              trained=trained, failures=result.failures, faces=per_face)
    labels = data.test.labels
    for name, columns in per_face.items():
        result.faces[name] = {"face": np.arange(len(labels), dtype=np.int64),
                              "label": np.asarray(labels, dtype=np.int64), **columns}
    if config.eval.extended:
        _extended(model, methods, result, test, config, data.num_classes, device, channels_last, seed)
    if config.eval.interventions:
        _interventions(model, methods, result, data, dataset, config, device, channels_last, seed)
    result.metrics = {name: m for name, m in result.metrics.items() if name not in result.failures}
    result.seconds = time.perf_counter() - start
    return result


def test_facts(data) -> dict[str, Any]:
    """What every row says about the test data it was computed on."""
    return {"data_fingerprint": data.fingerprint, "num_classes": data.num_classes,
            "skipped_images": sum(data.skipped.values()), "test_without_landmarks": missing_landmarks(data.test)}
