"""The evaluation stage of a job: one model, its extractors, the test split -> one record each.

Runs on a model that was just trained or that was read back from the store; the numbers depend
only on the weights, the extractor and the evaluation settings (the evaluation id). Each extractor
gets its own record, with its row of metrics, the figure arrays and the per-face results; one
extractor that fails gives a failed record for itself and the others land.
"""
from __future__ import annotations

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
        per_face = getattr(ext, "faces", None) or {}
        columns = result.faces.get(method.name)
        if columns is not None:
            n = len(next(iter(columns.values())))
            for key, values in per_face.items():
                full = np.full(n, np.nan, dtype=np.float32)
                full[chosen.numpy()] = np.asarray(values, dtype=np.float32)
                columns[f"ext_{key}"] = full


def evaluate_model(model: torch.nn.Module, methods: list[Method], trained: Method, data, config: Config,
                   device: torch.device, channels_last: bool, seed: int) -> EvaluationResult:
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
        result.metrics = {name: m for name, m in result.metrics.items() if name not in result.failures}
    result.seconds = time.perf_counter() - start
    return result


def test_facts(data) -> dict[str, Any]:
    """What every row says about the test data it was computed on."""
    return {"data_fingerprint": data.fingerprint, "num_classes": data.num_classes,
            "skipped_images": sum(data.skipped.values()), "test_without_landmarks": missing_landmarks(data.test)}
