"""Significance from one seed: paired tests of AU on vs off over the same test faces.

At paper size a sweep has one seed, so the seed-paired test of ``stats.py`` has nothing to pair.
The faces do: both models are evaluated on the same test split, so each face gives a pair.
- CL: McNemar's exact test on the discordant faces (right w/o AU and wrong w/ AU, or the reverse),
  the binomial test of b against b + c at 1/2 (as statsmodels' ``mcnemar(exact=True)``).
- Cosines (and other per-face scores): a paired bootstrap over faces, stratified by class, of the
  difference of the metric averaged as the evaluation averages it: macro for CAM-COS, ATT-COS and
  localisation (per class, the mean over the faces with a finite value; then the mean over the
  non-neutral classes: class 0 is excluded, it has no AU map), the plain mean over faces for
  faithfulness and sanity. Percentile 95% CI; two-sided p = 2 · min(P*(d <= 0), P*(d >= 0)), each with the usual +1
  correction, so p never reads 0 from a finite number of resamples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: Classes left out of the macro average (Neutral has no AU map, as in CAM-COS and ATT-COS).
EXCLUDED_CLASSES = (0,)
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class FaceTest:
    test: str                      # "mcnemar" | "bootstrap"
    n: int                         # faces paired (both sides evaluated the face)
    p_value: float | None
    diff: float | None = None      # w/ AU minus w/o AU (accuracy in [0, 1], or the macro metric)
    ci_low: float | None = None    # bootstrap only: 95% percentile interval of the difference
    ci_high: float | None = None
    discordant: tuple[int, int] | None = None   # McNemar: (right only w/o AU, right only w/ AU)


def mcnemar_exact(correct_without: Sequence[bool], correct_with: Sequence[bool]) -> FaceTest:
    """McNemar's exact (binomial) test on paired right/wrong outcomes of the same faces."""
    a = np.asarray(correct_without, dtype=bool)
    b = np.asarray(correct_with, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes differ in length: {a.shape} vs {b.shape}")
    only_without = int(np.sum(a & ~b))
    only_with = int(np.sum(~a & b))
    n = only_without + only_with
    if n == 0:
        p = 1.0
    else:
        from scipy import stats

        p = min(1.0, 2.0 * float(stats.binom.cdf(min(only_without, only_with), n, 0.5)))
    diff = float(b.mean() - a.mean()) if a.size else None
    return FaceTest("mcnemar", int(a.size), p, diff=diff, discordant=(only_without, only_with))


def macro_mean(values: Sequence[float], labels: Sequence[int], exclude: Sequence[int] = EXCLUDED_CLASSES) -> float:
    """Per-class mean over finite values, then the mean over classes that have one (NaN: none)."""
    v = np.asarray(values, dtype=float)
    y = np.asarray(labels)
    means = []
    for c in np.unique(y):
        if c in exclude:
            continue
        x = v[(y == c) & np.isfinite(v)]
        if x.size:
            means.append(x.mean())
    return float(np.mean(means)) if means else math.nan


def face_mean(values: Sequence[float]) -> float:
    """Mean over the faces with a finite value (NaN: none), for metrics averaged over all faces."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def _resampled(values: np.ndarray, strata: list[np.ndarray], draws: list[np.ndarray], average: str) -> np.ndarray:
    """(B,) statistics of the resamples: ``draws[k]`` is (B, n_k) indices into ``strata[k]``'s faces."""
    totals, counts = [], []
    for idx, draw in zip(strata, draws):
        x = values[idx][draw]                              # (B, n_k)
        finite = np.isfinite(x)
        counts.append(finite.sum(axis=1))
        totals.append(np.where(finite, x, 0.0).sum(axis=1))
    total, count = np.stack(totals, axis=1), np.stack(counts, axis=1)     # (B, classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        if average == "mean":
            return total.sum(axis=1) / np.where(count.sum(axis=1) > 0, count.sum(axis=1), np.nan)
        per_class = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        have = np.isfinite(per_class)
        return np.where(have, per_class, 0.0).sum(axis=1) / np.where(have.any(axis=1), have.sum(axis=1), np.nan)


def paired_bootstrap(values_without: Sequence[float], values_with: Sequence[float], labels: Sequence[int], *,
                     resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                     exclude: Sequence[int] = EXCLUDED_CLASSES, average: str = "macro") -> FaceTest:
    """Bootstrap of stat(w/ AU) − stat(w/o AU) over the same faces, resampled within each class.

    ``average``: ``macro`` (per class, then over the classes not in ``exclude``: CAM-COS, ATT-COS,
    the localisation metrics) or ``mean`` (over all faces with a value: faithfulness and sanity,
    which the extended evaluation averages that way; ``exclude`` does not apply).
    """
    if average not in ("macro", "mean"):
        raise ValueError(f"unknown average {average!r}; expected macro or mean")
    a = np.asarray(values_without, dtype=float)
    b = np.asarray(values_with, dtype=float)
    y = np.asarray(labels)
    if not (a.shape == b.shape == y.shape):
        raise ValueError(f"paired values and labels differ in length: {a.shape}, {b.shape}, {y.shape}")
    skip = tuple(exclude) if average == "macro" else ()
    if average == "macro":
        observed = macro_mean(b, y, skip) - macro_mean(a, y, skip)
    else:
        observed = face_mean(b) - face_mean(a)
    n = int(a.size)
    if math.isnan(observed):
        return FaceTest("bootstrap", n, None)
    rng = np.random.default_rng(seed)
    strata = [np.flatnonzero(y == c) for c in np.unique(y) if c not in skip]
    strata = [s for s in strata if s.size]
    draws = [rng.integers(0, s.size, size=(resamples, s.size)) for s in strata]
    diffs = _resampled(b, strata, draws, average) - _resampled(a, strata, draws, average)
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0:
        return FaceTest("bootstrap", n, None, diff=observed)
    low, high = np.percentile(diffs, [2.5, 97.5])
    below = (1 + np.sum(diffs <= 0)) / (diffs.size + 1)
    above = (1 + np.sum(diffs >= 0)) / (diffs.size + 1)
    p = min(1.0, 2.0 * float(min(below, above)))
    return FaceTest("bootstrap", n, p, diff=float(observed), ci_low=float(low), ci_high=float(high))


def pair_faces(without, with_, columns: Sequence[str]):
    """Inner join of two per-face frames on ``face``; a face whose labels differ is a data error."""
    import polars as pl

    keep = ["face", "label", *[c for c in columns if c != "label"]]
    left = without.select([c for c in keep if c in without.columns])
    right = with_.select([c for c in keep if c in with_.columns])
    joined = left.join(right, on="face", how="inner", suffix="_w")
    if "label_w" in joined.columns:
        bad = joined.filter(pl.col("label") != pl.col("label_w"))
        if not bad.is_empty():
            raise ValueError(f"per-face frames disagree on the label of face {bad['face'][0]}: "
                             "they are not the same test split")
    return joined.sort("face")


def compare_faces(without, with_, column: str, **bootstrap) -> FaceTest | None:
    """The test for one metric column of two per-face frames: McNemar for ``cl``, else the bootstrap
    (keyword arguments go to ``paired_bootstrap``, e.g. ``average``). None when a frame lacks the
    column (the metric has no per-face values there)."""
    if column == "cl":
        need = ("pred",)
    else:
        need = (column,)
    if any(c not in without.columns or c not in with_.columns for c in need):
        return None
    joined = pair_faces(without, with_, need)
    if joined.is_empty():
        return None
    if column == "cl":
        return mcnemar_exact((joined["pred"] == joined["label"]).to_numpy(),
                             (joined["pred_w"] == joined["label"]).to_numpy())
    return paired_bootstrap(joined[column].cast(float).to_numpy(), joined[f"{column}_w"].cast(float).to_numpy(),
                            joined["label"].to_numpy(), **bootstrap)
