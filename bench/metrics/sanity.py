"""Sanity check of Adebayo et al. (2018): cascading model-parameter randomisation.

A map that explains the classifier must change when the classifier's weights are destroyed. The
cascade re-initialises the model from the top, cumulatively: first the head (every parameterised
module outside ``model.backbone``), then the backbone's named stages from the last
(``backbone.layer_names`` / ``layer_module``), and last whatever the named stages left out (stems,
patch embeddings), so the final step is a fully random model. Models without a ``backbone`` fall
back to their parameterised children in reverse order. At each step the CAMs of the same faces and
targets are recomputed and compared with the trained model's CAMs.

Similarity: Spearman rank correlation per face (tie-aware average ranks; two flat maps count as
identical, 1, and one flat map against a structured one as 0), and SSIM (Wang et al., 2004; 11-px
Gaussian window, σ 1.5) as a second view. Maps are min-max normalised and compared at
``SIMILARITY_SIZE`` px (CAMs are at most 28x28 natively; finer grids add only interpolation).

Summary (``cascade_summary``): per cascade step, the mean |ρ| over faces (and the signed mean, kept
as a diagnostic). A map that anti-correlates with its trained self is as weight-dependent as one
that keeps its ranking, so signs must not cancel, neither over faces nor over steps. Headlines, both
in [0, 1] and best at 0: ``sanity_rho_final``, the mean |ρ| at the fully randomised model, and
``sanity_auc``, the area under the mean-|ρ| curve with the steps spread evenly over [0, 1]
(trapezoid; one step: its value), i.e. how early in the cascade the maps stop resembling the
trained ones. Adebayo et al. show the curves and set no pass threshold; neither do we. A
weight-independent map (an edge detector, a fixed centre blob) stays at 1 on both.

Re-initialisation calls each module's own ``reset_parameters`` (PyTorch's default init, BatchNorm
running statistics included), under a seeded, forked RNG; parameters owned directly by a module
without one (cls tokens, position embeddings) are shuffled, which keeps their distribution and
destroys what was learnt.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SIMILARITY_SIZE = 56
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
SSIM_C1, SSIM_C2 = 0.01 ** 2, 0.03 ** 2   # for maps in [0, 1]


@dataclass(frozen=True)
class CascadeStep:
    name: str                      # "head", a backbone layer name, "rest", or a child's name
    modules: tuple[nn.Module, ...]


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def cascade_steps(model: nn.Module) -> list[CascadeStep]:
    """The randomisation order, top first; every step adds parameters that earlier steps did not touch."""
    backbone = getattr(model, "backbone", None)
    named = getattr(backbone, "layer_names", None)
    steps: list[CascadeStep] = []
    if isinstance(backbone, nn.Module) and named:
        head = tuple(child for name, child in model.named_children() if child is not backbone and _has_parameters(child))
        own = [p for p in model.parameters(recurse=False)]
        steps.append(CascadeStep("head", head + ((_DirectParameters(model),) if own else ())))
        for name in reversed(tuple(named)):
            steps.append(CascadeStep(name, (backbone.layer_module(name),)))
        steps.append(CascadeStep("rest", (model,)))
    else:
        children = [(name, child) for name, child in model.named_children() if _has_parameters(child)]
        steps = [CascadeStep(name, (child,)) for name, child in reversed(children)]
        steps.append(CascadeStep("rest", (model,)))
    return _drop_empty(steps)


class _DirectParameters(nn.Module):
    """Stands for the parameters a module owns itself (not through children), as a cascade member."""

    def __init__(self, owner: nn.Module):
        super().__init__()
        object.__setattr__(self, "owner", owner)

    def parameters(self, recurse: bool = True) -> Iterable[nn.Parameter]:  # type: ignore[override]
        return self.owner.parameters(recurse=False)

    def modules(self) -> Iterable[nn.Module]:  # type: ignore[override]
        return iter(())


def _drop_empty(steps: list[CascadeStep]) -> list[CascadeStep]:
    seen: set[int] = set()
    kept = []
    for step in steps:
        new = {id(p) for m in step.modules for p in m.parameters()} - seen
        if new:
            kept.append(step)
            seen |= new
    return kept


@torch.no_grad()
def reinitialise(modules: Iterable[nn.Module], done: set[int], generator_seed: int) -> set[int]:
    """Re-initialise every parameter of ``modules`` not in ``done`` (ids); returns the updated set.

    Modules with ``reset_parameters`` use it; parameters of modules without it are shuffled.
    """
    devices = sorted({p.device.index for m in modules for p in m.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(generator_seed)
        for top in modules:
            for module in (top.modules() if not isinstance(top, _DirectParameters) else ()):
                own = [p for p in module.parameters(recurse=False) if id(p) not in done]
                if not own:
                    continue
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
                else:
                    for p in own:
                        _shuffle_(p)
                done |= {id(p) for p in own}
            if isinstance(top, _DirectParameters):
                for p in top.parameters():
                    if id(p) not in done:
                        _shuffle_(p)
                        done.add(id(p))
    return done


def _shuffle_(p: torch.Tensor) -> None:
    flat = p.data.view(-1)
    flat.copy_(flat[torch.randperm(flat.numel(), device="cpu").to(flat.device)])


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """(B, N) -> (B, N) ranks 0..N-1, tied values sharing their average rank (batched)."""
    ordered = values.sort(1).values.contiguous()
    values = values.contiguous()
    low = torch.searchsorted(ordered, values, right=False)
    high = torch.searchsorted(ordered, values, right=True)
    return (low + high - 1).double() / 2


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, ...) x (B, ...) -> (B,) Spearman rank correlation of each pair of maps.

    A flat map has no ranking: two flat maps are identical (1), a flat and a structured one share
    nothing (0).
    """
    ra, rb = average_ranks(a.flatten(1).float()), average_ranks(b.flatten(1).float())
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    va, vb = (ra * ra).sum(1), (rb * rb).sum(1)
    flat_a, flat_b = va <= 1e-12, vb <= 1e-12
    rho = (ra * rb).sum(1) / (va * vb).clamp_min(1e-24).sqrt()
    rho = torch.where(flat_a | flat_b, (flat_a & flat_b).double(), rho)
    return rho.float()


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, H, W) maps in [0, 1] -> (B,) mean SSIM (Gaussian window, valid region)."""
    a, b = a.float()[:, None], b.float()[:, None]
    size = min(SSIM_WINDOW, a.shape[-1], a.shape[-2])
    taps = torch.arange(size, device=a.device, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-0.5 * (taps / SSIM_SIGMA) ** 2)
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).view(1, 1, size, size)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mu_a ** 2 + mu_b ** 2 + SSIM_C1) * (var_a + var_b + SSIM_C2))
    return s.flatten(1).mean(1)


def cascade_summary(rho: np.ndarray) -> dict[str, np.ndarray | float]:
    """Per-face Spearman ρ (steps, faces) -> curves and headline scores (see the module docstring).

    ``abs_curve`` / ``signed_curve``: (steps,) mean |ρ| / mean ρ over faces; ``face_final`` and
    ``face_auc``: (faces,) each face's |ρ| at the last step and its own area, whose means over faces
    are exactly ``rho_final`` and ``auc`` (the area is linear in the curve).
    """
    rho = np.asarray(rho, dtype=np.float64)
    if rho.ndim != 2 or rho.shape[0] == 0 or rho.shape[1] == 0:
        nan = float("nan")
        return {"abs_curve": np.zeros(0), "signed_curve": np.zeros(0), "face_final": np.zeros(0),
                "face_auc": np.zeros(0), "rho_final": nan, "auc": nan}
    magnitude = np.abs(rho)
    steps = rho.shape[0]
    if steps == 1:
        face_auc = magnitude[0]
    else:
        face_auc = (magnitude.sum(0) - (magnitude[0] + magnitude[-1]) / 2) / (steps - 1)   # trapezoid, dx = 1/(S-1)
    return {"abs_curve": magnitude.mean(1), "signed_curve": rho.mean(1), "face_final": magnitude[-1],
            "face_auc": face_auc, "rho_final": float(magnitude[-1].mean()), "auc": float(face_auc.mean())}
