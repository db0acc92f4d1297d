"""AU regions as axis-aligned ellipses computed from 68 iBUG landmarks.

The regions follow the reference implementation (``plot_action_units_ellipsoid``) with two
deliberate changes:
- sizes are fractions of the inter-ocular distance ``s`` instead of fixed pixels (the reference's
  20 px at 224 px, about 0.3 s for a typical crop), so maps do not depend on image resolution;
- every two-sided region is defined on one side and mirrored with the iBUG mirror permutation,
  and midline regions use symmetric quantities, so a flipped face gives the flipped map exactly.
  (The reference mixes landmarks 48/50 and 52/54 for AU10 and uses 50 instead of 54 for AU20.)

Each ellipse carries the set of AUs that draw it: the reference draws the same mouth ellipse for
AU23, AU24, AU26 and AU27, which under max-combination is one region.
"""
from __future__ import annotations

from typing import Callable

import torch

from au.landmarks import MIRROR

Tensor = torch.Tensor
# An ellipse builder: (landmarks (B,68,2), s (B,)) -> (B, 4) as (cx, cy, semi_x, semi_y).
Builder = Callable[[Tensor, Tensor], Tensor]


def _pt(L: Tensor, i: int) -> Tensor:
    return L[:, i, :]


def _ellipse(cx: Tensor, cy: Tensor, ax: Tensor, ay: Tensor) -> Tensor:
    return torch.stack([cx, cy, ax, ay], dim=-1)


def _at(i: int, ax: float, ay: float, dx: float = 0.0, dy: float = 0.0) -> Builder:
    """Ellipse centred at landmark i (shifted by (dx, dy)·s), semi-axes (ax, ay)·s.

    ``dx`` is given for the image-left side; the mirrored builder negates it.
    """
    def build(L: Tensor, s: Tensor) -> Tensor:
        p = _pt(L, i)
        return _ellipse(p[:, 0] + dx * s, p[:, 1] + dy * s, ax * s, ay * s)
    build.spec = ("at", i, ax, ay, dx, dy)  # type: ignore[attr-defined]
    return build


def _xy(ix: int, iy: int, ax: float, ay: float) -> Builder:
    """Ellipse at (x of landmark ix, y of landmark iy), semi-axes (ax, ay)·s."""
    def build(L: Tensor, s: Tensor) -> Tensor:
        return _ellipse(L[:, ix, 0], L[:, iy, 1], ax * s, ay * s)
    build.spec = ("xy", ix, iy, ax, ay)  # type: ignore[attr-defined]
    return build


def _mid(i: int, j: int, ax: float, ay: float) -> Builder:
    """Circle/ellipse at the midpoint of landmarks i and j, semi-axes (ax, ay)·s."""
    def build(L: Tensor, s: Tensor) -> Tensor:
        p = (_pt(L, i) + _pt(L, j)) / 2
        return _ellipse(p[:, 0], p[:, 1], ax * s, ay * s)
    build.spec = ("mid", i, j, ax, ay)  # type: ignore[attr-defined]
    return build


def _eye(outer: int, inner: int, top: int, bottom: int, pad_y: float, min_y: float) -> Builder:
    """Eye ellipse: x from the eye corners, y from the upper and lower lid points."""
    def build(L: Tensor, s: Tensor) -> Tensor:
        xo, xi = L[:, outer, 0], L[:, inner, 0]
        yt, yb = L[:, top, 1], L[:, bottom, 1]
        ay = torch.maximum((yb - yt).abs() / 2 + pad_y * s, min_y * s)
        return _ellipse((xo + xi) / 2, (yt + yb) / 2, (xi - xo).abs() / 2, ay)
    build.spec = ("eye", outer, inner, top, bottom, pad_y, min_y)  # type: ignore[attr-defined]
    return build


def _mirror(builder: Builder) -> Builder:
    """The same region on the other side of the face."""
    kind, *args = builder.spec  # type: ignore[attr-defined]
    m = MIRROR
    if kind == "at":
        i, ax, ay, dx, dy = args
        return _at(m[i], ax, ay, -dx, dy)
    if kind == "xy":
        ix, iy, ax, ay = args
        return _xy(m[ix], m[iy], ax, ay)
    if kind == "mid":
        i, j, ax, ay = args
        return _mid(m[i], m[j], ax, ay)
    if kind == "eye":
        outer, inner, top, bottom, pad_y, min_y = args
        return _eye(m[outer], m[inner], m[top], m[bottom], pad_y, min_y)
    raise ValueError(kind)


def _brow_gap(L: Tensor, s: Tensor) -> Tensor:
    """AU4: between the brows, spanning inner brow points 19 and 24."""
    a, b = _pt(L, 19), _pt(L, 24)
    c = (a + b) / 2
    ax = torch.maximum((b[:, 0] - a[:, 0]).abs() / 2, 0.15 * s)
    ay = torch.maximum((b[:, 1] - a[:, 1]).abs() / 2, 0.15 * s)
    return _ellipse(c[:, 0], c[:, 1], ax, ay)


def _mouth(L: Tensor, s: Tensor) -> Tensor:
    """AU23/24/26/27: the whole mouth, corners 48/54, top 51, bottom 57."""
    xl, xr = L[:, 48, 0], L[:, 54, 0]
    yt, yb = L[:, 51, 1], L[:, 57, 1]
    ay = torch.maximum((yb - yt).abs() / 2, 0.07 * s)
    return _ellipse((xl + xr) / 2, (yt + yb) / 2, (xr - xl).abs() / 2, ay)


def _chin(L: Tensor, s: Tensor) -> Tensor:
    """AU17: between the lower lip (57) and the chin (8), as wide as the lower lip (55..59)."""
    top, chin = _pt(L, 57), _pt(L, 8)
    ax = torch.maximum((L[:, 55, 0] - L[:, 59, 0]).abs() / 2, 0.07 * s)
    ay = torch.maximum((chin[:, 1] - top[:, 1]).abs() / 2, 0.07 * s)
    return _ellipse((top[:, 0] + chin[:, 0]) / 2, (top[:, 1] + chin[:, 1]) / 2, ax, ay)


def _pair(builder: Builder) -> list[Builder]:
    return [builder, _mirror(builder)]


# (AUs drawn by the region, builder). Sizes in units of the inter-ocular distance s.
_REGIONS: list[tuple[frozenset[int], Builder]] = []


def _add(aus: set[int], builders: list[Builder] | Builder) -> None:
    for b in builders if isinstance(builders, list) else [builders]:
        _REGIONS.append((frozenset(aus), b))


_add({1}, _pair(_at(20, 0.40, 0.32)))                    # inner brow raiser
_add({2}, _pair(_at(18, 0.40, 0.32)))                    # outer brow raiser
_add({4}, _brow_gap)                                     # brow lowerer
_add({5}, _pair(_eye(36, 39, 38, 41, 0.0, 0.07)))        # upper lid raiser
_add({6}, _pair(_at(41, 0.33, 0.33, dy=0.55)))           # cheek raiser
_add({7}, _pair(_eye(36, 39, 38, 41, 0.15, 0.07)))       # lid tightener
_add({9}, _pair(_xy(31, 29, 0.30, 0.30)))                # nose wrinkler: nostril wing x, mid-nose y
_add({10}, _pair(_at(50, 0.30, 0.30)))                   # upper lip raiser
_add({12, 15}, _pair(_at(48, 0.30, 0.30)))               # lip corner puller / depressor
_add({14}, _pair(_at(48, 0.30, 0.30, dx=-0.30)))         # dimpler
_add({16}, _pair(_at(59, 0.30, 0.30)))                   # lower lip depressor
_add({17}, _chin)                                        # chin raiser
_add({20}, _pair(_mid(48, 6, 0.30, 0.30)))               # lip stretcher
_add({23, 24, 26, 27}, _mouth)                           # lip tightener/pressor, jaw drop, mouth stretch
_add({25}, [_at(51, 0.37, 0.15), _at(57, 0.37, 0.15)])  # lips part

#: The AUs that have a region, in a fixed order.
REGION_AUS: tuple[int, ...] = tuple(sorted({au for aus, _ in _REGIONS for au in aus}))
NUM_REGIONS = len(_REGIONS)


def region_au_matrix() -> torch.Tensor:
    """(NUM_REGIONS, len(REGION_AUS)) bool: which AU draws which region."""
    m = torch.zeros(NUM_REGIONS, len(REGION_AUS), dtype=torch.bool)
    for r, (aus, _) in enumerate(_REGIONS):
        for au in aus:
            m[r, REGION_AUS.index(au)] = True
    return m


def au_ellipses(landmarks: Tensor, scale: Tensor) -> Tensor:
    """All regions for a batch: landmarks (B,68,2), scale (B,) -> (B, NUM_REGIONS, 4)."""
    return torch.stack([build(landmarks, scale) for _, build in _REGIONS], dim=1)
