"""Does the classifier *use* the AUs its CAM points at? Ground truth by intervention (FunnyBirds-style).

Synthetic faces (``bench/data/synthetic.py``) can be drawn again with any of their AUs switched off
or with another class's shortcut patch added, nothing else changed. The drop of the true-class logit
when an AU is switched off is then a ground-truth importance of that AU *for this model*, and an
explanation can be scored against it (Hesse et al., FunnyBirds, ICCV 2023). On real faces the
intervention is approximated by deleting one AU region (ROAD's noisy linear imputation,
``bench.metrics.faithfulness.impute_linear``). See docs/interventions.md.

Units. Several AUs draw the very same region (AU23/24/26/27: the mouth ellipse), so no CAM can tell
them apart: importances are compared per *unit*, the AUs of a class that draw the same regions
(switched off together). Per-AU drops are still recorded for every AU.

Metric keys and directions (``METRIC_DIRECTIONS``):

| key | meaning | better |
|---|---|---|
| au_importance_agreement | Spearman ρ, per face, of the units' ground-truth logit drops and the CAM's mass in their regions; mean over faces with >= 2 units whose drops are not all equal | higher |
| preservation | share of faces whose prediction stays when the units the CAM marks unimportant are switched off | higher |
| deletion | share of faces whose prediction changes when the units the CAM marks important are switched off | higher |
| shortcut_reliance | share of (face, other class) pairs whose prediction moves to the class of an added patch (a model property) | lower |
| shortcut_cam_mass | share of the CAM (of the predicted class) on the added patch | none: read with shortcut_reliance |
| au_importance_agreement_area | the same ρ for a flat CAM (mass = region area): the floor that region size alone gives | none: a baseline |

"Marked important": a unit whose CAM mass is at least ``threshold`` × the face's largest unit mass
(at least one unit and at most all but one: each check removes something).
The threshold is chosen on the **validation** split (``choose_threshold``, the one that maximises
the mean of preservation and deletion there) and the test split is scored with it (``check_rates``).

Longer than ~400 lines because the counterfactual pass, the units it compares and the validation-chosen
checks are one algorithm; the real-face approximation lives in ``region_deletion.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from au import Codebook, get_codebook
from au.landmarks import inter_ocular_distance
from au.regions import REGION_AUS, au_ellipses, region_au_matrix
from au.render import render_ellipses
from bench.data.synthetic import FacePlan, SyntheticSplit, face_landmarks, patch_mask, plans_at, render_face
from bench.data.transforms import to_input
from bench.metrics.base import batches, normalise_cam
from bench.metrics.localisation import au_region
from methods import Method

METRIC_DIRECTIONS: dict[str, str] = {
    "au_importance_agreement": "higher",
    "preservation": "higher",
    "deletion": "higher",
    "shortcut_reliance": "lower",
    "shortcut_cam_mass": "none",
    "au_importance_agreement_area": "none",
}

#: Candidate thresholds (fraction of the face's largest unit mass) for "marked important".
THRESHOLDS: tuple[float, ...] = tuple(np.round(np.linspace(0.05, 1.0, 20), 2).tolist())
#: Drops closer than this (relative to the face's largest |logit|, at least 1) are ties: a unit the
#: model ignores moves its logit by float noise at most (batches of other sizes may take other kernels),
#: which must not rank it.
TIE_TOLERANCE = 1e-4


# --- units: the AUs of a class that share their regions ---------------------------------------------

@dataclass(frozen=True)
class Unit:
    aus: tuple[int, ...]
    regions: np.ndarray          # (NUM_REGIONS,) bool

    @property
    def name(self) -> str:
        return "AU" + "+".join(str(a) for a in self.aus)


def class_units(codebook: Codebook) -> list[list[Unit]]:
    """Per class, its AUs grouped by the set of regions they draw (AUs with one region = one unit)."""
    drawn = region_au_matrix().numpy()
    out = []
    for aus in codebook.aus_per_class:
        groups: dict[bytes, list[int]] = {}
        for au in aus:
            if au not in REGION_AUS:
                raise ValueError(f"codebook {codebook.name!r} uses AU{au}, which has no region")
            groups.setdefault(drawn[:, REGION_AUS.index(au)].tobytes(), []).append(au)
        out.append([Unit(tuple(sorted(g)), drawn[:, REGION_AUS.index(g[0])].copy()) for g in groups.values()])
    return out


def unit_masks(landmarks: torch.Tensor, labels: torch.Tensor, units: list[list[Unit]],
               image_size: tuple[int, int]) -> torch.Tensor:
    """(B, U, H, W) bool: the region of each face's u-th unit (empty beyond its class's units)."""
    device = landmarks.device
    lm = landmarks.float()
    scale = inter_ocular_distance(lm).clamp_min(1e-3)
    ellipses = au_ellipses(lm, scale)
    width = max((len(u) for u in units), default=0)
    table = torch.zeros(len(units), max(width, 1), ellipses.shape[1], dtype=torch.bool)
    for c, class_list in enumerate(units):
        for j, unit in enumerate(class_list):
            table[c, j] = torch.from_numpy(unit.regions)
    active = table.to(device)[labels]                                    # (B, U, R)
    masks = [au_region(render_ellipses(ellipses, active[:, j], 0.35 * scale, image_size, image_size))
             for j in range(width)]
    B, (H, W) = len(labels), image_size
    return torch.stack(masks, 1) if masks else torch.zeros(B, 0, H, W, dtype=torch.bool, device=device)


def cam_mass(cam: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(B, H, W) CAM min-max normalised at image size, (B, U, H, W) masks -> (B, U) share of its mass."""
    total = cam.flatten(1).sum(1).clamp_min(1e-12)
    return (cam[:, None] * masks).flatten(2).sum(2) / total[:, None]


# --- rank agreement --------------------------------------------------------------------------------

def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    sorted_v = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2
        i = j + 1
    return ranks


def rank_agreement(truth: np.ndarray, scores: np.ndarray) -> float:
    """Spearman ρ of two short vectors (ties share their average rank).

    NaN when the truth has fewer than two values or no ranking (all equal: nothing to agree with);
    0 when the scores are all equal but the truth is not (an explanation that ranks nothing).
    """
    truth, scores = np.asarray(truth, float), np.asarray(scores, float)
    if len(truth) < 2 or np.all(truth == truth[0]):
        return float("nan")
    if np.all(scores == scores[0]):
        return 0.0
    a, b = _average_ranks(truth), _average_ranks(scores)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def _quantise(drops: np.ndarray, scale: float) -> np.ndarray:
    """Drops rounded to ``TIE_TOLERANCE`` × scale, so float noise does not rank units."""
    step = TIE_TOLERANCE * max(1.0, scale)
    return np.round(drops / step) * step


# --- preservation / deletion checks ----------------------------------------------------------------

@dataclass
class CheckTable:
    """Per face: ``relative`` unit masses (n, U; NaN beyond the face's units) and, for k = 0..U, whether
    the prediction is kept when all but the top-k units are switched off (``kept``, preservation) and
    changed when the top-k units are switched off (``changed``, deletion). Faces with fewer than two
    units (Neutral) do not count."""

    relative: np.ndarray
    kept: np.ndarray
    changed: np.ndarray
    n_units: np.ndarray

    def important_counts(self, threshold: float) -> np.ndarray:
        """(n,) units marked important per face: those with relative mass >= threshold, but at least one
        and at most all but one, so that both checks remove something (0 for faces that do not count)."""
        marked = np.sum(np.nan_to_num(self.relative, nan=-1.0) >= threshold, axis=1)
        return np.where(self.n_units >= 2, np.clip(marked, 1, np.maximum(self.n_units - 1, 1)), 0)


def check_rates(table: CheckTable, threshold: float) -> tuple[float, float]:
    """(preservation, deletion) at ``threshold`` over the faces with at least two units; NaN when none.

    The split into important and unimportant units always leaves one on each side: removing nothing
    keeps every prediction, so "everything is important" would otherwise pass preservation for free
    (and "nothing is" fail deletion for free).
    """
    counted = table.n_units >= 2
    if not counted.any():
        return float("nan"), float("nan")
    k = table.important_counts(threshold)
    rows = np.flatnonzero(counted)
    return float(table.kept[rows, k[rows]].mean()), float(table.changed[rows, k[rows]].mean())


def choose_threshold(validation: CheckTable, candidates: Sequence[float] = THRESHOLDS) -> float:
    """The candidate that maximises (preservation + deletion) / 2 on the validation faces (the smallest on
    ties; the middle candidate when no face counts)."""
    scores = np.array([np.mean(check_rates(validation, t)) for t in candidates])
    if np.all(np.isnan(scores)):
        return float(candidates[len(candidates) // 2])
    return float(candidates[int(np.nanargmax(scores))])


# --- model access ----------------------------------------------------------------------------------

def _predict(model: torch.nn.Module, method: Method, images: np.ndarray, labels: np.ndarray, *,
             device: torch.device, batch_size: int, channels_last: bool) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> (N, K) float logits on the host (labels go to models that read them)."""
    out = []
    with torch.no_grad():
        for sl in batches(len(images), batch_size):
            x = to_input(torch.from_numpy(np.ascontiguousarray(images[sl])).to(device), channels_last)
            y = torch.as_tensor(labels[sl], device=device)
            out.append(model(x, labels=y if method.needs_labels else None).logits.float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def _explain(model: torch.nn.Module, method: Method, images: np.ndarray, targets: np.ndarray, *,
             device: torch.device, batch_size: int, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, K), CAM of ``targets`` min-max normalised at image size (N, H, W)), on the host."""
    H, W = images.shape[1:3]
    logits, cams = [], []
    for sl in batches(len(images), batch_size):
        x = to_input(torch.from_numpy(np.ascontiguousarray(images[sl])).to(device), channels_last)
        y = torch.as_tensor(targets[sl], device=device)
        output, cam = method.explain(model, x, y)
        if cam is None:
            raise ValueError(f"method {method.name!r} gives no CAM; interventions need one")
        logits.append(output.logits.detach().float().cpu())
        cams.append(normalise_cam(cam.detach(), (H, W)).cpu())
    return torch.cat(logits), torch.cat(cams)


# --- results ---------------------------------------------------------------------------------------

@dataclass
class InterventionResult:
    """``metrics``: keys of ``METRIC_DIRECTIONS`` (NaN where no face qualified); ``faces``: per-face arrays
    (index, label, per-AU and per-unit drops, CAM masses, agreement...); ``curves``: preservation and
    deletion rates against the threshold on validation and test; ``details``: counts, the threshold,
    the intervention kind."""

    metrics: dict[str, float]
    faces: dict[str, np.ndarray]
    curves: dict[str, np.ndarray]
    details: dict[str, Any] = field(default_factory=dict)


class Pictures:
    """Counterfactual pictures drawn once and reused: by every extractor evaluated on a model, and by
    every model (a picture depends on the split, the face and the intervention only). Drawing is most
    of the evaluation's cost on a GPU. Holds at most ``limit_bytes``; beyond that pictures are drawn
    and not kept."""

    def __init__(self, limit_bytes: int = 256 * 2 ** 20):
        self.limit_bytes = limit_bytes
        self.store: dict[tuple, np.ndarray] = {}
        self.bytes = 0

    def get(self, split: SyntheticSplit, plan: FacePlan, off: frozenset = frozenset(), patch: int | None | str = "keep"
            ) -> np.ndarray:
        key = (split, plan.index, off, patch)
        picture = self.store.get(key)
        if picture is None:
            picture = render_face(plan, off, patch)
            if self.bytes + picture.nbytes <= self.limit_bytes:
                self.store[key] = picture
                self.bytes += picture.nbytes
        return picture


@dataclass
class _Faces:
    """Per-face results of one pass over a sample of synthetic faces."""

    plans: list[FacePlan]
    labels: np.ndarray
    pred: np.ndarray
    masses: np.ndarray           # (n, U) CAM mass per unit, NaN padded
    unit_drop: np.ndarray        # (n, U) true-class logit drop per unit
    unit_drop_prob: np.ndarray
    au_drop: np.ndarray          # (n, len(REGION_AUS)) per AU switched off alone, NaN where not in the class
    au_drop_prob: np.ndarray
    au_mass: np.ndarray          # (n, len(REGION_AUS)) CAM mass of the AU's unit
    agreement: np.ndarray        # (n,)
    area_agreement: np.ndarray   # (n,) the same for a flat CAM (mass = region area)
    checks: CheckTable
    patch_moved: np.ndarray      # (n, K) prediction moved to class j when its patch is added (NaN: j = label)
    patch_mass: np.ndarray       # (n, K) CAM mass on that patch


def _softmax_drop(z0: torch.Tensor, z: torch.Tensor, c: int) -> float:
    return float(z0.softmax(0)[c] - z.softmax(0)[c])


def _counterfactual_pass(model, method: Method, split: SyntheticSplit, plans: list[FacePlan], units: list[list[Unit]],
                         *, device, batch_size: int, channels_last: bool, checks_only: bool,
                         pictures: Pictures | None) -> _Faces:
    pictures = pictures if pictures is not None else Pictures(0)
    n = len(plans)
    K_units = max((len(u) for u in units), default=0)
    S = plans[0].image_size if plans else 0
    num_classes = len(units)
    labels = np.array([p.label for p in plans], dtype=np.int64)
    out = _Faces(plans, labels, np.zeros(n, np.int64), np.full((n, K_units), np.nan), np.full((n, K_units), np.nan),
                 np.full((n, K_units), np.nan), np.full((n, len(REGION_AUS)), np.nan),
                 np.full((n, len(REGION_AUS)), np.nan), np.full((n, len(REGION_AUS)), np.nan), np.full(n, np.nan),
                 np.full(n, np.nan),
                 CheckTable(np.full((n, K_units), np.nan), np.zeros((n, K_units + 1), bool),
                            np.zeros((n, K_units + 1), bool), np.zeros(n, np.int64)),
                 np.full((n, num_classes), np.nan), np.full((n, num_classes), np.nan))
    # A face needs up to ~30 pictures: a chunk of batch_size / 4 faces keeps a few batches of them in memory.
    for chunk in batches(n, max(1, batch_size // 4)):
        rows = list(range(chunk.start, chunk.stop))
        originals = np.stack([pictures.get(split, plans[i]) for i in rows])
        z0, cams = _explain(model, method, originals, labels[chunk], device=device, batch_size=batch_size,
                            channels_last=channels_last)
        landmarks = torch.from_numpy(np.stack([face_landmarks(plans[i]) for i in rows])).float()
        masks = unit_masks(landmarks, torch.from_numpy(labels[chunk]), units, (S, S))
        mass = cam_mass(cams, masks).numpy()
        area = masks.flatten(2).sum(2).float().numpy()

        # Every counterfactual this chunk needs, drawn once each.
        jobs: dict[tuple[int, frozenset, int | None], int] = {}
        order: dict[int, list[int]] = {}
        for r, i in enumerate(rows):
            plan, face_units = plans[i], units[plans[i].label]
            m = len(face_units)
            out.masses[i, :m] = mass[r, :m]
            out.pred[i] = int(z0[r].argmax())
            top = mass[r, :m].max() if m else 0.0
            relative = mass[r, :m] / top if top > 0 else np.zeros(m)
            out.checks.relative[i, :m] = relative
            out.checks.n_units[i] = m
            order[i] = list(np.argsort(-relative, kind="stable"))
            wanted = []
            for k in range(m + 1):                                  # deletion: top k off; preservation: the rest off
                wanted.append(frozenset(a for j in order[i][:k] for a in face_units[j].aus))
                wanted.append(frozenset(a for j in order[i][k:] for a in face_units[j].aus))
            if not checks_only:
                wanted += [frozenset(u.aus) for u in face_units] + [frozenset({a}) for a in plan.aus]
            for off in wanted:
                if off:
                    jobs.setdefault((i, off, -1), len(jobs))
            if not checks_only:
                for j in range(num_classes):
                    if j != plan.label:
                        jobs.setdefault((i, frozenset(), j), len(jobs))
        keys = list(jobs)
        images = (np.stack([pictures.get(split, plans[i], off, "keep" if patch == -1 else patch)
                            for i, off, patch in keys])
                  if keys else np.zeros((0, S, S, 3), np.uint8))
        targets = np.array([labels[i] for i, _, _ in keys], dtype=np.int64)
        z = _predict(model, method, images, targets, device=device, batch_size=batch_size, channels_last=channels_last)

        patch_keys = [key for key in keys if key[2] != -1]
        if patch_keys:
            patch_images = images[[jobs[key] for key in patch_keys]]
            patch_pred = z[[jobs[key] for key in patch_keys]].argmax(1).numpy()
            _, patch_cams = _explain(model, method, patch_images, patch_pred, device=device, batch_size=batch_size,
                                     channels_last=channels_last)
            for (i, _, j), pred, cam in zip(patch_keys, patch_pred, patch_cams):
                region = torch.from_numpy(patch_mask(S, j))
                out.patch_moved[i, j] = float(pred == j)
                out.patch_mass[i, j] = float((cam * region).sum() / cam.sum().clamp_min(1e-12))

        for r, i in enumerate(rows):
            plan, face_units, c = plans[i], units[plans[i].label], int(labels[i])
            m = len(face_units)

            def logits_of(off: frozenset) -> torch.Tensor:
                return z0[r] if not off else z[jobs[(i, off, -1)]]

            for k in range(m + 1):
                top_off = frozenset(a for j in order[i][:k] for a in face_units[j].aus)
                rest_off = frozenset(a for j in order[i][k:] for a in face_units[j].aus)
                out.checks.changed[i, k] = int(logits_of(top_off).argmax()) != out.pred[i]
                out.checks.kept[i, k] = int(logits_of(rest_off).argmax()) == out.pred[i]
            if checks_only:
                continue
            for j, unit in enumerate(face_units):
                zu = logits_of(frozenset(unit.aus))
                out.unit_drop[i, j] = float(z0[r, c] - zu[c])
                out.unit_drop_prob[i, j] = _softmax_drop(z0[r], zu, c)
                for a in unit.aus:
                    out.au_mass[i, REGION_AUS.index(a)] = mass[r, j]
            for a in plan.aus:
                za = logits_of(frozenset({a}))
                out.au_drop[i, REGION_AUS.index(a)] = float(z0[r, c] - za[c])
                out.au_drop_prob[i, REGION_AUS.index(a)] = _softmax_drop(z0[r], za, c)
            if m >= 2:
                scale = float(z0[r].abs().max())
                truth = _quantise(out.unit_drop[i, :m], scale)
                out.agreement[i] = rank_agreement(truth, out.masses[i, :m])
                out.area_agreement[i] = rank_agreement(truth, area[r, :m])
    return out


def _mean(values: np.ndarray) -> float:
    values = np.asarray(values, float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def check_table(model: torch.nn.Module, method: Method, split: SyntheticSplit, indices: Iterable[int], *,
                device: torch.device | str, batch_size: int = 32, channels_last: bool = False,
                pictures: Pictures | None = None) -> CheckTable:
    """The preservation / deletion table of faces ``indices`` of ``split`` (use the validation split to choose
    the threshold: ``choose_threshold(check_table(..., validation, ...))``)."""
    device = torch.device(device)
    plans = plans_at(split.split, split.size, split.seed, split.options, indices)
    units = class_units(get_codebook(split.options.codebook))
    return _with_eval(model, lambda: _counterfactual_pass(model, method, split, plans, units, device=device,
                                                          batch_size=batch_size, channels_last=channels_last,
                                                          checks_only=True, pictures=pictures).checks)


def validation_threshold(model: torch.nn.Module, method: Method, validation: SyntheticSplit, indices: Iterable[int],
                         *, device: torch.device | str, batch_size: int = 32, channels_last: bool = False,
                         pictures: Pictures | None = None) -> tuple[float, CheckTable]:
    """The "marked important" threshold chosen on validation faces, and their check table."""
    table = check_table(model, method, validation, indices, device=device, batch_size=batch_size,
                        channels_last=channels_last, pictures=pictures)
    return choose_threshold(table), table


def _with_eval(model: torch.nn.Module, fn):
    """Run ``fn`` with the model in eval mode, restoring its mode and parameter gradients afterwards."""
    was_training = model.training
    grads = [(p, p.grad) for p in model.parameters()]
    model.eval()
    try:
        return fn()
    finally:
        for p, grad in grads:
            p.grad = grad
        model.train(was_training)


def intervention_metrics(model: torch.nn.Module, method: Method, test: SyntheticSplit, indices: Iterable[int], *,
                         validation: SyntheticSplit, validation_indices: Iterable[int], device: torch.device | str,
                         batch_size: int = 32, channels_last: bool = False,
                         threshold: float | None = None, pictures: Pictures | None = None) -> InterventionResult:
    """Counterfactual interventions on synthetic faces: AU importance agreement, preservation / deletion
    (threshold chosen on ``validation`` faces unless given), shortcut reliance and CAM mass on the patch.

    ``test`` / ``validation`` name the generated splits (the dataset's sizes, seed and options);
    ``indices`` pick the faces (e.g. the extended evaluation's seeded sample). Faces are drawn again
    from their plans, so nothing but the model needs to be on the device. Pass one ``Pictures`` to the
    calls for several extractors (or models) so that each picture is drawn once.
    """
    device = torch.device(device)
    units = class_units(get_codebook(test.options.codebook))
    val_table = None
    validation_indices = list(validation_indices)
    if threshold is None and not validation_indices:
        raise ValueError("the preservation/deletion threshold is chosen on validation faces: pass "
                         "validation_indices (or a threshold)")
    if threshold is None:
        threshold, val_table = validation_threshold(model, method, validation, validation_indices, device=device,
                                                    batch_size=batch_size, channels_last=channels_last,
                                                    pictures=pictures)
    plans = plans_at(test.split, test.size, test.seed, test.options, indices)
    if not plans:
        raise ValueError("the intervention evaluation got no faces (is the sample empty?)")
    faces = _with_eval(model, lambda: _counterfactual_pass(model, method, test, plans, units, device=device,
                                                           batch_size=batch_size, channels_last=channels_last,
                                                           checks_only=False, pictures=pictures))
    preservation, deletion = check_rates(faces.checks, threshold)
    moved = faces.patch_moved
    metrics = {
        "au_importance_agreement": _mean(faces.agreement),
        "preservation": preservation,
        "deletion": deletion,
        "shortcut_reliance": _mean(moved),
        "shortcut_cam_mass": _mean(faces.patch_mass),
        "au_importance_agreement_area": _mean(faces.area_agreement),
    }
    curves = {"thresholds": np.array(THRESHOLDS, np.float32),
              "test_preservation": np.array([check_rates(faces.checks, t)[0] for t in THRESHOLDS], np.float32),
              "test_deletion": np.array([check_rates(faces.checks, t)[1] for t in THRESHOLDS], np.float32)}
    if val_table is not None:
        curves["validation_preservation"] = np.array([check_rates(val_table, t)[0] for t in THRESHOLDS], np.float32)
        curves["validation_deletion"] = np.array([check_rates(val_table, t)[1] for t in THRESHOLDS], np.float32)
    per_face = {
        "index": np.array([p.index for p in plans], np.int64), "label": faces.labels, "pred": faces.pred,
        "region_aus": np.array(REGION_AUS, np.int64), "au_drop_logit": faces.au_drop.astype(np.float32),
        "au_drop_prob": faces.au_drop_prob.astype(np.float32), "au_cam_mass": faces.au_mass.astype(np.float32),
        "unit_drop_logit": faces.unit_drop.astype(np.float32), "unit_drop_prob": faces.unit_drop_prob.astype(np.float32),
        "unit_cam_mass": faces.masses.astype(np.float32),
        "agreement": faces.agreement.astype(np.float32), "area_agreement": faces.area_agreement.astype(np.float32),
        "patch_moved": moved.astype(np.float32),
        "patch_cam_mass": faces.patch_mass.astype(np.float32),
    }
    details = {"intervention": "counterfactual", "threshold": threshold,
               "threshold_chosen_on": "validation" if val_table is not None else "given",
               "n_faces": len(plans), "n_agreement": int(np.sum(~np.isnan(faces.agreement))),
               "units": [[u.name for u in class_list] for class_list in units]}
    return InterventionResult(metrics, per_face, curves, details)
