"""Faithfulness of a CAM to the classifier: deletion / insertion AUC (RISE) and ROAD.

A map is faithful when the pixels it ranks first are the ones the classifier needs. All three
metrics perturb the input in the order of the CAM and read the model's softmax confidence in the
target class (the true label, whose CAM is explained), batched over images on the device:

- **Deletion** (Petsiuk et al., RISE 2018): replace the top-ranked fraction f of pixels by the
  baseline, f = 0, 1/steps, ..., 1; AUC of the mean confidence curve. Lower is better.
- **Insertion**: start from the baseline and put back the top-ranked fraction f. Higher is better.
- **ROAD** (Rong et al., 2022): remove the most (MoRF) or least (LeRF) relevant fraction
  f in {0.1, ..., 0.9} and fill the hole by noisy linear imputation (each removed pixel is the
  weighted mean of its 8 neighbours, plus N(0, 0.01²) noise), so the shape of the hole carries
  no class information. Score = mean over f of (conf_LeRF − conf_MoRF) / 2, as
  pytorch-grad-cam's ``ROADCombined``. Higher is better.

Baseline (deletion and insertion): the image blurred with a Gaussian of σ = side / 16. The same
canvas serves both, so they are mirror images of each other (a CAM with no ranking information
gives deletion AUC = insertion AUC up to sampling noise, which the tests check), and a blurred face
keeps its overall layout, so the removed pixels do not draw a sharp grey hole whose shape alone
could move the classifier (ROAD's objection to constant baselines). RISE's insertion canvas is also
a blur; σ = side / 16 (4 px at 64 px, 14 px at 224 px) erases the detail of a single AU region.

Confidences are softmax probabilities, not logits: their scale is the same for every method's head
(WILDCAT's pooled scores and a linear head's logits are not comparable), and AUCs stay in [0, 1].

Ties in the ranking (flat maps, upsampled plateaus) are broken at random with a seeded generator,
never by pixel position, which would delete the top rows first.

Why not pytorch-grad-cam's own ROAD (grad-cam 1.5.7, ``pytorch_grad_cam/metrics/``): it perturbs
one image at a time in a host loop (``perturbation_confidence.py``, the loop at line 29) and solves
each imputation with scipy's ``spsolve`` on the CPU (``road.py``:133); it scores raw logits through
``ClassifierOutputTarget``; and it keeps the pixels with ``mask < percentile`` (line 64), so a map
with ties (a flat CAM) loses every pixel instead of the asked fraction. Here the same linear system
(same neighbour weights, same noise) is solved for the whole batch on the device by conjugate
gradients, and the tests check the result against the library's imputer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Predict = Callable[[torch.Tensor], torch.Tensor]   # normalised input (B, 3, H, W) -> logits (B, K)

ROAD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ROAD_NOISE = 0.01          # std of the imputation noise, in normalised input units (pytorch-grad-cam)
BLUR_FRACTION = 1 / 16     # baseline blur: σ = image side × this
#: Relative residual at which the imputer's conjugate gradients stop. 1e-4 (the old value) stopped
#: early: gaps to the exact solve of 3.5e-3 at 224 px; 1e-6 reaches float32's floor (docs/metrics.md).
IMPUTE_TOLERANCE = 1e-6


def neighbour_sum(u: torch.Tensor) -> torch.Tensor:
    """Weighted sum of each pixel's in-image 8 neighbours, ROAD's weights: 1/6 direct, 1/12 diagonal.

    The 3x3 kernel is ([1, 2, 1] ⊗ [1, 2, 1] − 4·centre) / 12, applied as shifted adds: on a CPU a
    depthwise ``conv2d`` is 10-100x slower than these few element-wise passes, on a GPU they are as fast.
    """
    p = F.pad(u, (1, 1, 1, 1))
    rows = p[..., :, :-2] + p[..., :, 2:]
    rows.add_(p[..., :, 1:-1], alpha=2)
    out = rows[..., :-2, :] + rows[..., 2:, :]
    return out.add_(rows[..., 1:-1, :], alpha=2).sub_(u, alpha=4).mul_(1 / 12)


def target_confidence(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) softmax probability of each sample's target class."""
    return logits.float().softmax(1).gather(1, target[:, None])[:, 0]


def blur_baseline(x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with reflect padding (σ defaults to side / 16)."""
    H, W = x.shape[-2:]
    sigma = sigma if sigma is not None else BLUR_FRACTION * min(H, W)
    radius = max(1, min(int(math.ceil(3 * sigma)), min(H, W) - 1))
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.dtype)
    C = x.shape[1]
    out = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def pixel_ranks(cam: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, H, W) map -> (B, H·W) long rank of each pixel, 0 = most relevant; ties broken at random."""
    flat = cam.flatten(1).float()
    B, N = flat.shape
    shuffle = torch.rand(B, N, generator=generator, device=generator.device).to(flat.device).argsort(dim=1)
    order_in_shuffle = flat.gather(1, shuffle).argsort(dim=1, descending=True, stable=True)
    order = shuffle.gather(1, order_in_shuffle)                       # pixel indices, most relevant first
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(N, device=flat.device).expand(B, N))
    return ranks


def fraction_counts(n_pixels: int, fractions: torch.Tensor) -> torch.Tensor:
    return torch.round(fractions.double() * n_pixels).long()


def _as_input(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


@torch.no_grad()
def deletion_insertion(predict: Predict, x: torch.Tensor, target: torch.Tensor, ranks: torch.Tensor,
                       baseline: torch.Tensor, steps: int, channels_last: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample confidence curves (B, steps + 1) for deletion and insertion.

    Point k has the top ``round(k / steps · H·W)`` pixels removed (deletion: set to ``baseline``)
    or inserted (insertion: taken from ``x`` on the ``baseline`` canvas). One forward of 2B per point.
    """
    B, _, H, W = x.shape
    counts = fraction_counts(H * W, torch.linspace(0, 1, steps + 1))
    ranks = ranks.view(B, 1, H, W)
    deletion, insertion = [], []
    for n in counts.tolist():
        top = ranks < n
        both = torch.cat([torch.where(top, baseline, x), torch.where(top, x, baseline)])
        conf = target_confidence(predict(_as_input(both, channels_last)), target.repeat(2))
        deletion.append(conf[:B])
        insertion.append(conf[B:])
    return torch.stack(deletion, 1), torch.stack(insertion, 1)


def curve_auc(curves: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """(B, P) curves over ``fractions`` (P,) -> (B,) trapezoidal area."""
    return torch.trapezoid(curves, fractions.to(curves), dim=1)


def impute_linear(x: torch.Tensor, missing: torch.Tensor, *, noise: float = ROAD_NOISE,
                  generator: torch.Generator | None = None, tol: float = IMPUTE_TOLERANCE, max_iter: int | None = None
                  ) -> torch.Tensor:
    """ROAD's noisy linear imputation of the ``missing`` pixels (B, 1, H, W bool), batched.

    Each missing pixel equals the weighted mean of its in-image neighbours (weights of ``neighbour_sum``);
    known pixels stay. The resulting sparse system, symmetric positive definite on the missing
    pixels, is solved for all images and channels at once by Jacobi-preconditioned conjugate
    gradients (matrix-free: one 3x3 stencil per iteration), then ``noise`` is added.

    The iteration stops when the largest residual is below ``tol`` times the largest right-hand side
    (checked every 16 steps), or after ``max_iter`` (default 4 · side + 64) steps. With the default
    ``tol`` the result matches pytorch-grad-cam's float64 direct solve to the gaps measured in
    docs/metrics.md (at most 2e-4 at 224 px: float32's floor on a 90 % hole; 1e-5 at 64 px).
    """
    B, C, H, W = x.shape
    x = x.float()
    m = missing.to(x.dtype).expand(B, 1, H, W)
    neighbours = neighbour_sum
    weight_sum = neighbours(torch.ones(1, C, H, W, device=x.device, dtype=x.dtype))   # < 1 at the border
    rhs = m * neighbours(x * (1 - m))

    def operator(u: torch.Tensor) -> torch.Tensor:
        return (weight_sum * u).sub_(neighbours(u)).mul_(m)

    # Start from the known neighbours' weighted mean (0 where none): close to the answer near edges.
    known_weight = neighbours((1 - m).expand(B, C, H, W))
    u = rhs / known_weight.clamp_min(1e-6) * (known_weight > 0)
    precondition = 1.0 / weight_sum
    r = rhs - operator(u)
    p = precondition * r
    rz = (r * p).sum((2, 3), keepdim=True)
    threshold = tol * float(rhs.abs().amax())
    limit = max_iter if max_iter is not None else 4 * max(H, W) + 64
    for it in range(limit):
        Ap = operator(p)
        alpha = rz / (p * Ap).sum((2, 3), keepdim=True).clamp_min_(1e-30)
        u.addcmul_(alpha, p)
        r.addcmul_(alpha, Ap, value=-1)
        if it % 16 == 15 and float(r.abs().amax()) <= threshold:   # one host read per 16 steps
            break
        z = precondition * r
        rz_next = (r * z).sum((2, 3), keepdim=True)
        p = z.addcmul_(rz_next / rz.clamp_min_(1e-30), p)
        rz = rz_next
    if noise > 0:
        device = generator.device if generator is not None else u.device
        u.addcmul_(m, torch.randn(u.shape, generator=generator, device=device, dtype=u.dtype).to(u.device),
                   value=noise)
    return torch.where(m > 0, u, x)


@dataclass
class RoadCurves:
    morf: torch.Tensor      # (B, F) confidence with the most relevant fraction f removed
    lerf: torch.Tensor      # (B, F) confidence with the least relevant fraction f removed

    @property
    def score(self) -> torch.Tensor:
        """(B,) ROAD combined: mean over f of (LeRF − MoRF) / 2; higher = more faithful."""
        return ((self.lerf - self.morf) / 2).mean(1)


@torch.no_grad()
def road(predict: Predict, x: torch.Tensor, target: torch.Tensor, ranks: torch.Tensor, *,
         fractions: Sequence[float] = ROAD_FRACTIONS, noise: float = ROAD_NOISE,
         generator: torch.Generator | None = None, channels_last: bool = False) -> RoadCurves:
    """MoRF and LeRF confidence curves with noisy linear imputation (one forward of 2B per fraction)."""
    B, _, H, W = x.shape
    counts = fraction_counts(H * W, torch.tensor(list(fractions)))
    ranks = ranks.view(B, 1, H, W)
    morf, lerf = [], []
    for n in counts.tolist():
        missing = torch.cat([ranks < n, ranks >= H * W - n])
        imputed = impute_linear(torch.cat([x, x]), missing, noise=noise, generator=generator)
        conf = target_confidence(predict(_as_input(imputed.to(x.dtype), channels_last)), target.repeat(2))
        morf.append(conf[:B])
        lerf.append(conf[B:])
    return RoadCurves(torch.stack(morf, 1), torch.stack(lerf, 1))
