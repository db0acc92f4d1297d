"""Batched evaluation: CL, mean-class accuracy, CAM-COS and ATT-COS per layer, confusion matrix.

Cosines follow the paper: per test image, against the AU map of the *true* class rendered at image
resolution from the landmarks; summed per class and macro-averaged over the 6 non-neutral
classes (Neutral and images without a valid map are skipped). ATT-COS upsamples T_l (bilinear,
align_corners) and shifts it by −min when it has negative values; CAM-COS upsamples the true-class
CAM (bilinear) and min-max normalises it at image resolution. Everything accumulates on the
device; the only host transfer is at the end.

When asked (``maps=``), the same pass also keeps what Fig. 1 of the paper plots: per class, the
average layer attention, CAM and AU map at a small fixed resolution (``MAP_SIZE``), plus a few
gallery faces with their maps, so figures never need a second pass over the test set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from au import NEUTRAL, Codebook, map_cosine, render_au_maps
from au.align import layer_attention
from bench.data.feed import as_feed, rows_of
from bench.data.transforms import to_input
from methods import Method


def upsample(maps: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    return F.interpolate(maps.float()[:, None], size=size, mode="bilinear", align_corners=align_corners)[:, 0]


def attention_for_metric(feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    att = upsample(layer_attention(feature.float()), size, align_corners=True)
    low = att.flatten(1).amin(1)[:, None, None]
    return torch.where(low < 0, att - low, att)


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Per-sample min-max to [0, 1] (a constant map becomes 0), so every face weighs the same."""
    low = maps.flatten(1).amin(1)[:, None, None]
    high = maps.flatten(1).amax(1)[:, None, None]
    return torch.nan_to_num((maps - low) / (high - low).clamp_min(1e-8), nan=0.0, posinf=1.0, neginf=0.0)


def normalise_cam(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Upsample the raw CAM to ``size``, then min-max it there (at image resolution)."""
    return minmax(upsample(cam, size, align_corners=False))


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
    """Confusion matrix and per-class cosine sums of one extractor; with ``keep_faces``, also each
    face's prediction and cosines (kept on the device, one host transfer in ``face_arrays``)."""

    num_classes: int
    layers: tuple[str, ...]
    device: torch.device
    keep_faces: bool = False
    confusion: torch.Tensor = field(init=False)
    cam: ClassAverager = field(init=False)
    att: dict[str, ClassAverager] = field(init=False)

    def __post_init__(self):
        self.confusion = torch.zeros(self.num_classes * self.num_classes, device=self.device, dtype=torch.long)
        self.valid_maps = torch.zeros((), device=self.device, dtype=torch.long)
        self.cam = ClassAverager(self.num_classes, self.device)
        self.att = {name: ClassAverager(self.num_classes, self.device) for name in self.layers}
        self.faces: dict[str, list[torch.Tensor]] = {}

    def _keep(self, key: str, values: torch.Tensor) -> None:
        if self.keep_faces:
            self.faces.setdefault(key, []).append(values)

    def update(self, logits, cam, features, labels, au_maps, valid) -> None:
        size = tuple(au_maps.shape[-2:])
        pred = logits.argmax(1)
        self.confusion += torch.bincount(labels * self.num_classes + pred, minlength=self.num_classes ** 2)
        self.valid_maps += valid.sum()
        self._keep("pred", pred)
        nan = torch.full(valid.shape, float("nan"), device=valid.device)
        if cam is not None:
            cosine = map_cosine(normalise_cam(cam, size), au_maps)
            self.cam.add(cosine, labels, valid)
            self._keep("cam_cos", torch.where(valid, cosine.float(), nan))
        for name in self.layers:
            cosine = map_cosine(attention_for_metric(features[name], size), au_maps)
            self.att[name].add(cosine, labels, valid)
            self._keep(f"att_cos_{name}", torch.where(valid, cosine.float(), nan))

    def face_arrays(self) -> dict[str, np.ndarray]:
        """Per test face, in order: ``pred`` (int64), ``cam_cos`` and ``att_cos_<layer>`` (float32, NaN
        where the face has no valid AU map). Their per-class means over non-NaN faces, macro-averaged
        without Neutral, are exactly ``cam_cos`` and ``att_cos_<layer>`` of ``metrics``."""
        out = {}
        for key, parts in self.faces.items():
            values = torch.cat(parts).cpu().numpy()
            out[key] = values.astype(np.int64) if key == "pred" else values.astype(np.float32)
        return out

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
            "n_valid_maps": int(self.valid_maps.item()),
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


MAP_SIZE = 56          # side of the maps kept for figures: small, fixed, so every trial is comparable
GALLERY_SIZE = 6       # gallery faces per trial: the first test face of each non-neutral class


@dataclass
class MapAverager:
    """Per-class sums (C, S, S) and counts of per-sample maps, on the device."""

    num_classes: int
    size: int
    device: torch.device
    sums: torch.Tensor = field(init=False)
    counts: torch.Tensor = field(init=False)

    def __post_init__(self):
        self.sums = torch.zeros(self.num_classes, self.size, self.size, device=self.device)
        self.counts = torch.zeros(self.num_classes, device=self.device, dtype=torch.float64)

    def add(self, maps: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor | None = None) -> None:
        weight = torch.ones_like(labels, dtype=torch.float32) if keep is None else keep.float()
        self.sums.index_add_(0, labels, maps.float() * weight[:, None, None])
        self.counts.index_add_(0, labels, weight.double())

    def mean(self) -> np.ndarray:
        """(C, S, S) float32; NaN for classes without samples."""
        sums, counts = self.sums.cpu().numpy(), self.counts.cpu().numpy()
        out = np.full(sums.shape, np.nan, dtype=np.float32)
        has = counts > 0
        out[has] = sums[has] / counts[has][:, None, None]
        return out


def pick_gallery(labels: torch.Tensor, landmarks: torch.Tensor, k: int = GALLERY_SIZE) -> list[int]:
    """Host-side choice of gallery faces: the first test face with landmarks of each non-neutral class."""
    labels = labels.cpu()
    has_face = torch.isfinite(landmarks.cpu().flatten(1)).all(1)
    picked = []
    for c in sorted(set(labels.tolist()) - {NEUTRAL}):
        hits = torch.nonzero((labels == c) & has_face).flatten()
        if len(hits):
            picked.append(int(hits[0]))
    return picked[:k]


class FigureMaps:
    """Everything Fig. 1 needs, filled batch by batch during ``evaluate`` (all on the device)."""

    def __init__(self, num_classes: int, size: int, device: torch.device, gallery: list[int]):
        self.num_classes, self.size, self.device, self.gallery = num_classes, size, device, gallery
        self.au = MapAverager(num_classes, size, device)
        self.att: dict[str, dict[str, MapAverager]] = {}
        self.cam: dict[str, MapAverager] = {}
        k = len(gallery)
        self.gallery_au = torch.zeros(k, size, size, device=device)
        self.gallery_att: dict[str, torch.Tensor] = {}
        self.gallery_cam: dict[str, torch.Tensor] = {}

    def _slots(self, sl: slice) -> tuple[torch.Tensor, torch.Tensor] | None:
        pairs = [(slot, i - sl.start) for slot, i in enumerate(self.gallery) if sl.start <= i < sl.stop]
        if not pairs:
            return None
        slots, local = zip(*pairs)
        return (torch.tensor(slots, device=self.device), torch.tensor(local, device=self.device))

    def add_au(self, sl: slice, au_maps: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> None:
        self.au.add(au_maps, labels, valid)
        if (hit := self._slots(sl)) is not None:
            self.gallery_au.index_copy_(0, hit[0], au_maps[hit[1]].float())

    def add_method(self, name: str, sl: slice, labels: torch.Tensor, cam: torch.Tensor | None,
                   features: dict[str, torch.Tensor], layers: Sequence[str]) -> None:
        S, k = (self.size, self.size), len(self.gallery)
        if name not in self.att:
            self.att[name] = {layer: MapAverager(self.num_classes, self.size, self.device) for layer in layers}
            self.gallery_att[name] = torch.zeros(k, len(layers), *S, device=self.device)
            if cam is not None:
                self.cam[name] = MapAverager(self.num_classes, self.size, self.device)
                self.gallery_cam[name] = torch.zeros(k, *S, device=self.device)
        hit = self._slots(sl)
        atts = []
        for layer in layers:
            att = minmax(attention_for_metric(features[layer], S))
            self.att[name][layer].add(att, labels)
            atts.append(att)
        if hit is not None and atts:
            self.gallery_att[name].index_copy_(0, hit[0], torch.stack(atts, 1)[hit[1]])
        if cam is not None and name in self.cam:
            cam_s = normalise_cam(cam, S)
            self.cam[name].add(cam_s, labels)
            if hit is not None:
                self.gallery_cam[name].index_copy_(0, hit[0], cam_s[hit[1]])

    def arrays(self, images: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str]) -> dict[str, np.ndarray]:
        """Flat name -> array mapping (one host transfer); per-method keys are ``<method>.<what>``.

        ``*_mean`` are (C, S, S) class averages (``att_mean`` is (L, C, S, S) over ``<method>.layers``),
        NaN for classes without samples; ``gallery_*`` hold the chosen faces in ``gallery_index`` order.
        """
        idx = torch.tensor(self.gallery, dtype=torch.long)
        out = {
            "class_names": np.array(list(class_names)), "map_size": np.array(self.size),
            "au_mean": self.au.mean(), "au_count": self.au.counts.cpu().numpy(),
            "gallery_index": idx.numpy(), "gallery_label": labels.cpu()[idx].numpy(),
            "gallery_image": rows_of(images, idx) if len(idx) else np.zeros((0, 1, 1, 3), np.uint8),
            "gallery_au": self.gallery_au.cpu().numpy(),
        }
        for name, per_layer in self.att.items():
            out[f"{name}.layers"] = np.array(list(per_layer))
            out[f"{name}.count"] = next(iter(per_layer.values())).counts.cpu().numpy() if per_layer else np.zeros(0)
            out[f"{name}.att_mean"] = (np.stack([avg.mean() for avg in per_layer.values()]) if per_layer
                                       else np.zeros((0, self.num_classes, self.size, self.size), np.float32))
            out[f"{name}.gallery_att"] = self.gallery_att[name].cpu().numpy()
            if name in self.cam:
                out[f"{name}.cam_mean"] = self.cam[name].mean()
                out[f"{name}.gallery_cam"] = self.gallery_cam[name].cpu().numpy()
        # Maps live in [0, 1]: half precision (error < 5e-4) halves the file and is plenty for a figure.
        return {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in out.items()}


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class ExtractorError(RuntimeError):
    """One extractor failed on a shared model: its row fails, the other extractors' rows land."""


def _reference_index(methods: Sequence[Method]) -> int | None:
    """The first method whose ``explain`` is the base one and reads no labels: its Output *is* a clean,
    label-free forward, so the other extractors' logits can be checked against it without an extra pass."""
    for i, method in enumerate(methods):
        if type(method).explain is Method.explain and not method.needs_labels:
            return i
    return None


#: explain() must return the logits of a clean forward; this much disagreement (relative to the
#: largest logit) means the extractor handed back another forward's Output.
LOGIT_TOLERANCE = 1e-3


def evaluate(model: torch.nn.Module, methods: Sequence[Method], images: torch.Tensor, labels: torch.Tensor,
             landmarks: torch.Tensor, *, codebook: Codebook, edge: float, class_names: Sequence[str],
             batch_size: int, device: torch.device, layers: Sequence[str] = (),
             channels_last: bool = False, maps: dict[str, np.ndarray] | None = None,
             map_size: int = MAP_SIZE, gallery_size: int = GALLERY_SIZE,
             trained: Method | None = None, failures: dict[str, str] | None = None,
             faces: dict[str, dict[str, np.ndarray]] | None = None) -> dict[str, dict]:
    """Evaluate every extractor in ``methods`` on one trained model; returns metrics per method name.

    ``images`` are uint8 (N, H, W, 3) on the host; each batch moves to ``device`` once. Pass a dict
    as ``maps`` to have it filled with the figure arrays (``FigureMaps.arrays``) from this same pass.

    Predictions (CL, the confusion matrix) come from a clean forward *without labels*, whatever the
    method: labels go only to ``explain``, which may use them for the CAM of a method that declares
    ``needs_labels`` (the WSOL protocol), never for the logits. Each extractor's logits are checked
    against that clean forward: a plugin that returns another forward's Output, or whose logits move
    with the labels, would silently change CL and ATT-COS. (``trained`` is accepted for callers that
    pass it; the clean forward no longer depends on it.)

    Pass a dict as ``faces`` to have it filled per method name with ``MethodAccumulator.face_arrays``:
    each test face's prediction, CAM-COS and ATT-COS per layer, in the order of ``labels``.

    Pass a dict as ``failures`` to isolate extractors: one that raises or returns wrong logits is
    recorded there (name -> error) and left out of the result, while the others are evaluated;
    without it, the first failure raises. Non-finite logits from
    the model itself always raise.
    """
    model.eval()
    num_classes = len(class_names)
    accs: dict[str, MethodAccumulator] = {}
    has_cam: dict[str, bool] = {}
    errors: dict[str, str] = {}
    drift = {m.name: torch.zeros((), device=device) for m in methods}
    nonfinite = torch.zeros((), device=device, dtype=torch.bool)
    reference = _reference_index(methods)
    H, W = images.shape[1:3]
    figure = (FigureMaps(num_classes, map_size, device, pick_gallery(labels, landmarks, gallery_size))
              if maps is not None else None)
    source = as_feed(images, labels, landmarks, device)      # a SplitFeed (streamed, prefetched) or tensors
    for sl, (x, y, lm) in zip(batches(len(labels), batch_size), source.batches(None, batch_size, False)):
        x = to_input(x, channels_last)
        au_maps, valid = render_au_maps(lm, y, (H, W), (H, W), codebook, edge)
        if figure is not None:
            small, small_valid = render_au_maps(lm, y, (H, W), (map_size, map_size), codebook, edge)
            figure.add_au(sl, small, y, small_valid)
        explained = {}
        for i, method in enumerate(methods):
            if method.name in errors:
                continue
            try:
                explained[i] = method.explain(model, x, y)
            except Exception as exc:  # noqa: BLE001 - isolated below, or re-raised
                if failures is None:
                    raise
                errors[method.name] = f"{type(exc).__name__}: {exc}"
        if reference is not None and reference in explained:
            clean = explained[reference][0].logits.detach()
        else:
            with torch.no_grad():
                clean = model(x).logits                       # labels never reach the logits
        nonfinite |= ~torch.isfinite(clean).all()
        scale = clean.abs().amax().clamp_min(1.0)
        for i, (output, cam) in explained.items():
            method = methods[i]
            logits = output.logits.detach()
            if logits.shape != clean.shape:
                errors[method.name] = (f"explain() returned logits of shape {tuple(logits.shape)} for a batch whose "
                                       f"clean forward gives {tuple(clean.shape)}")
                continue
            drift[method.name] = torch.maximum(drift[method.name], (logits.float() - clean.float()).abs().amax() / scale)
            if method.name not in accs:
                names = tuple(layers) or tuple(k for k, v in output.features.items() if v.dim() == 4)
                accs[method.name] = MethodAccumulator(num_classes, names, device, keep_faces=faces is not None)
                has_cam[method.name] = cam is not None
            cam = None if cam is None else cam.detach()
            features = {k: v.detach() for k, v in output.features.items()}
            accs[method.name].update(clean, cam, features, y, au_maps, valid)
            if figure is not None:
                figure.add_method(method.name, sl, y, cam, features, accs[method.name].layers)
    if bool(nonfinite):
        raise ValueError("the trained model gives non-finite logits on the test split; no metric is reported")
    for name, value in zip(drift, torch.stack(list(drift.values())).tolist()):
        if name not in errors and value > LOGIT_TOLERANCE:
            errors[name] = (f"explain() returned logits that differ from a clean forward of the same batch without labels "
                            f"by up to {value:.3g} (relative): a plugin must return the Output of the unmodified batch, "
                            f"and its logits must not depend on the labels (they may steer only the CAM)")
    if errors and failures is None:
        name, error = next(iter(errors.items()))
        raise ExtractorError(f"{name}: {error}")
    if failures is not None:
        failures.update(errors)
    if figure is not None:
        maps.update({k: v for k, v in figure.arrays(images, labels, class_names).items()
                     if k.split(".")[0] not in errors})
    if faces is not None:
        faces.update({name: acc.face_arrays() for name, acc in accs.items() if name not in errors})
    return {name: acc.metrics(class_names, has_cam[name]) for name, acc in accs.items() if name not in errors}


def accuracy(model: torch.nn.Module, needs_labels: bool, images: torch.Tensor, labels: torch.Tensor, *,
             batch_size: int, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """Top-1 accuracy (%) as a device tensor (no sync): the model-selection metric.

    The forward never gets the labels (``needs_labels`` is kept for callers; labels may steer a CAM,
    never a prediction)."""
    model.eval()
    correct = torch.zeros((), device=device, dtype=torch.long)
    with torch.no_grad():
        for x, y, _ in as_feed(images, labels, None, device).batches(None, batch_size, False):
            x = to_input(x, channels_last)
            logits = model(x).logits
            correct += (logits.argmax(1) == y).sum()
    return correct.double() * 100 / max(len(labels), 1)
