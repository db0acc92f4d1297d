"""AU importance agreement on real faces: the intervention of ``interventions.py`` replaced by
deleting one AU region (filled by ROAD's noisy linear imputation). docs/interventions.md says what
this approximation can and cannot tell.
"""
from __future__ import annotations

import numpy as np
import torch

from au import Codebook
from bench.data.transforms import to_input
from bench.metrics.base import batches, normalise_cam
from bench.metrics.faithfulness import impute_linear
from bench.metrics.interventions import (InterventionResult, _mean, _quantise, _with_eval, cam_mass, class_units,
                                         rank_agreement, unit_masks)
from methods import Method


def region_deletion_metrics(model: torch.nn.Module, method: Method, images, labels, landmarks, *,
                            codebook: Codebook, device: torch.device | str, batch_size: int = 32,
                            channels_last: bool = False, seed: int = 0) -> InterventionResult:
    """AU importance agreement on real faces, the intervention replaced by deleting one unit's region.

    ``images`` uint8 (n, H, W, 3), ``labels`` (n,), ``landmarks`` (n, 68, 2) with NaN rows for faces
    without landmarks (skipped). Each unit's region (its AU ellipses) is filled by ROAD's noisy linear
    imputation (``impute_linear``) in the normalised input; the drop of the true-class logit is its
    importance. Only ``au_importance_agreement`` and its flat-CAM floor ``au_importance_agreement_area``
    are reported (docs/interventions.md says what this approximation can and cannot tell).
    """
    device = torch.device(device)
    images = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    labels = torch.as_tensor(np.asarray(labels)).long()
    landmarks = torch.as_tensor(np.asarray(landmarks)).float()
    n = len(labels)
    if n == 0:
        raise ValueError("the region-deletion evaluation got no faces (is the sample empty?)")
    units = class_units(codebook)
    width = max((len(u) for u in units), default=0)
    H, W = images.shape[1:3]
    generator = torch.Generator(device=device).manual_seed(seed)
    drops = np.full((n, width), np.nan)
    drops_prob = np.full((n, width), np.nan)
    masses = np.full((n, width), np.nan)
    agreement = np.full(n, np.nan)
    area_agreement = np.full(n, np.nan)
    finite = torch.isfinite(landmarks.flatten(1)).all(1)

    def run() -> None:
        for sl in batches(n, batch_size):
            y = labels[sl].to(device)
            lm = landmarks[sl]
            ok = finite[sl]
            if not ok.any():
                continue
            x = to_input(images[sl].to(device), channels_last)
            output, cam = method.explain(model, x, y)
            if cam is None:
                raise ValueError(f"method {method.name!r} gives no CAM; interventions need one")
            z0 = output.logits.detach().float()
            cam = normalise_cam(cam.detach(), (H, W))
            masks = unit_masks(torch.where(ok[:, None, None], lm, torch.zeros_like(lm)).to(device), y, units, (H, W))
            mass = cam_mass(cam, masks).cpu().numpy()
            area = masks.flatten(2).sum(2).float().cpu().numpy()
            for j in range(width):
                has = torch.tensor([j < len(units[int(c)]) for c in y.tolist()], device=device) & ok.to(device)
                if not has.any():
                    continue
                rows = torch.nonzero(has).flatten()
                filled = impute_linear(x[rows].float(), masks[rows, j][:, None], generator=generator).to(x.dtype)
                with torch.no_grad():
                    z = model(filled).logits.float()          # never the labels: logits must not read them
                c = y[rows]
                drop = (z0[rows].gather(1, c[:, None]) - z.gather(1, c[:, None]))[:, 0]
                drop_p = (z0[rows].softmax(1).gather(1, c[:, None]) - z.softmax(1).gather(1, c[:, None]))[:, 0]
                idx = (rows + sl.start).cpu().numpy()
                drops[idx, j] = drop.cpu().numpy()
                drops_prob[idx, j] = drop_p.cpu().numpy()
                masses[idx, j] = mass[rows.cpu().numpy(), j]
            for r in range(sl.stop - sl.start):
                i = sl.start + r
                m = len(units[int(labels[i])])
                if bool(ok[r]) and m >= 2:
                    truth = _quantise(drops[i, :m], float(z0[r].abs().max()))
                    agreement[i] = rank_agreement(truth, masses[i, :m])
                    area_agreement[i] = rank_agreement(truth, area[r, :m])

    _with_eval(model, run)
    metrics = {"au_importance_agreement": _mean(agreement), "au_importance_agreement_area": _mean(area_agreement)}
    faces = {"label": labels.numpy(), "unit_drop_logit": drops.astype(np.float32),
             "unit_drop_prob": drops_prob.astype(np.float32), "unit_cam_mass": masses.astype(np.float32),
             "agreement": agreement.astype(np.float32), "area_agreement": area_agreement.astype(np.float32)}
    details = {"intervention": "region_deletion", "n_faces": n, "n_agreement": int(np.sum(~np.isnan(agreement))),
               "units": [[u.name for u in class_list] for class_list in units]}
    return InterventionResult(metrics, faces, {}, details)
