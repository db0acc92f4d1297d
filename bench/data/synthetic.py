"""Procedural faces with exact 68-point landmarks and AU-driven expressions.

Every image is drawn from its landmarks, and every expression moves the landmarks the way its AUs
do (brows raise or lower, lids open or tighten, lip corners rise or fall, the jaw drops...), at
random intensities. Identity (face shape, feature spacing, skin, hair), pose, lighting and
background vary. A profile can add a class-correlated "shortcut" patch to the background of
*training* images only, so the value of looking at the face (what AU alignment encourages) is
measurable: a model that learns the shortcut fails on the clean test split.

Deterministic by seed: the same (seed, split, size, options) always gives the same arrays.

Counterfactuals: every face is drawn from a ``FacePlan`` (identity, AU intensities, pose, patch and
the picture's random draws), so ``render_face`` can draw the same face again with any of its AUs
switched off or with another class's patch added, and nothing else changed (interventions,
``bench/metrics/interventions.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from au.codebook import CLASS_NAMES, get_codebook
from au.landmarks import MIRROR
from bench.data.arrays import Arrays  # noqa: F401  (re-exported: the split container lives in arrays.py)

SUPERSAMPLE = 3

# --- the mean face, in face units: x in [-1, 1] across the jaw, y down, eyes near y = -0.25 ----

def _template() -> np.ndarray:
    pts = np.zeros((68, 2), dtype=np.float64)
    t = np.linspace(0, 1, 17)
    pts[0:17, 0] = -np.cos(np.pi * t) * (1 - 0.2 * np.sin(np.pi * t))
    pts[0:17, 1] = -0.3 + 1.3 * np.sin(np.pi * t)
    u = np.linspace(0, 1, 5)
    pts[17:22, 0] = -0.78 + 0.6 * u
    pts[17:22, 1] = -0.50 - 0.09 * np.sin(np.pi * (0.3 + 0.7 * u))
    pts[27:31] = [[0, -0.28], [0, -0.14], [0, 0.0], [0, 0.14]]
    pts[31:36] = [[-0.17, 0.24], [-0.09, 0.27], [0, 0.29], [0.09, 0.27], [0.17, 0.24]]
    pts[36:42] = [[-0.58, -0.25], [-0.48, -0.31], [-0.36, -0.31], [-0.26, -0.25], [-0.36, -0.20], [-0.48, -0.20]]
    pts[48:55] = [[-0.36, 0.56], [-0.22, 0.48], [-0.08, 0.45], [0, 0.47], [0.08, 0.45], [0.22, 0.48], [0.36, 0.56]]
    pts[55:60] = [[0.22, 0.64], [0.10, 0.68], [0, 0.69], [-0.10, 0.68], [-0.22, 0.64]]
    pts[60:65] = [[-0.29, 0.56], [-0.10, 0.54], [0, 0.54], [0.10, 0.54], [0.29, 0.56]]
    pts[65:68] = [[0.10, 0.565], [0, 0.57], [-0.10, 0.565]]
    # Right side = mirror of the left side for brows and eyes.
    for i in list(range(17, 22)) + list(range(36, 42)):
        pts[MIRROR[i]] = [-pts[i, 0], pts[i, 1]]
    return pts


TEMPLATE = _template()

BROW_L, BROW_R = [17, 18, 19, 20, 21], [22, 23, 24, 25, 26]
INNER_BROW, OUTER_BROW = [19, 20, 21, 22, 23, 24], [17, 18, 19, 24, 25, 26]
UPPER_LID, LOWER_LID = [37, 38, 43, 44], [40, 41, 46, 47]
UPPER_LIP, LOWER_LIP = [49, 50, 51, 52, 53], [55, 56, 57, 58, 59]
INNER_UP, INNER_LOW = [61, 62, 63], [65, 66, 67]
CORNERS, INNER_CORNERS = [48, 54], [60, 64]
MOUTH = list(range(48, 68))


def _side(idx: list[int]) -> np.ndarray:
    """-1 for image-left points, +1 for image-right points (by template x)."""
    return np.sign(TEMPLATE[idx, 0])


def apply_au(pts: np.ndarray, au: int, k: np.ndarray) -> None:
    """Move landmarks (N, 68, 2) in place as FACS action unit ``au`` does, at intensity k (N,)."""
    k = k[:, None]
    if au == 1:
        pts[:, INNER_BROW, 1] -= 0.13 * k * np.array([0.5, 1, 1, 1, 1, 0.5])
    elif au == 2:
        pts[:, OUTER_BROW, 1] -= 0.13 * k * np.array([1, 1, 0.5, 0.5, 1, 1])
    elif au == 4:
        pts[:, BROW_L + BROW_R, 1] += 0.08 * k
        pts[:, [20, 21, 22, 23], 0] -= 0.07 * k * _side([20, 21, 22, 23])
    elif au == 5:
        pts[:, UPPER_LID, 1] -= 0.07 * k
    elif au == 6:
        pts[:, LOWER_LID, 1] -= 0.04 * k
    elif au == 7:
        pts[:, UPPER_LID, 1] += 0.03 * k
        pts[:, LOWER_LID, 1] -= 0.03 * k
    elif au == 9:
        pts[:, 31:36, 1] -= 0.06 * k
        pts[:, [31, 35], 0] += 0.04 * k * _side([31, 35])
    elif au == 10:
        pts[:, UPPER_LIP, 1] -= 0.07 * k
        pts[:, INNER_UP, 1] -= 0.05 * k
    elif au in (12, 14):
        pts[:, CORNERS + INNER_CORNERS, 0] += 0.09 * k * _side(CORNERS + INNER_CORNERS)
        pts[:, CORNERS + INNER_CORNERS, 1] -= (0.12 if au == 12 else 0.03) * k
    elif au == 15:
        pts[:, CORNERS + INNER_CORNERS, 1] += 0.11 * k
    elif au == 16:
        pts[:, LOWER_LIP, 1] += 0.07 * k
        pts[:, INNER_LOW, 1] += 0.05 * k
    elif au == 17:
        pts[:, LOWER_LIP, 1] -= 0.04 * k
        pts[:, [7, 8, 9], 1] -= 0.05 * k
    elif au == 20:
        pts[:, CORNERS + INNER_CORNERS, 0] += 0.1 * k * _side(CORNERS + INNER_CORNERS)
        pts[:, CORNERS, 1] += 0.02 * k
    elif au == 23:
        pts[:, MOUTH, 0] *= 1 - 0.12 * k
    elif au == 24:
        mid = (pts[:, INNER_UP, 1] + pts[:, INNER_LOW, 1]) / 2
        pts[:, INNER_UP, 1] += (mid - pts[:, INNER_UP, 1]) * k
        pts[:, INNER_LOW, 1] += (mid - pts[:, INNER_LOW, 1]) * k
    elif au == 25:
        pts[:, INNER_LOW, 1] += 0.06 * k
        pts[:, LOWER_LIP, 1] += 0.04 * k
    elif au in (26, 27):
        drop = (0.16 if au == 26 else 0.24) * k
        pts[:, INNER_LOW + LOWER_LIP, 1] += drop
        jaw_w = np.sin(np.pi * np.linspace(0, 1, 17)) ** 2
        pts[:, 0:17, 1] += drop * jaw_w
        if au == 27:
            pts[:, MOUTH, 0] *= 1 - 0.1 * k
    else:
        raise ValueError(f"synthetic faces cannot move AU{au}")


@dataclass(frozen=True)
class SyntheticOptions:
    image_size: int = 64
    shortcut: float = 0.0      # probability that a training image carries the class patch
    codebook: str = "paper"    # which AUs each expression moves


@dataclass(frozen=True)
class SyntheticSplit:
    """Enough to draw a generated split's faces again: ``generate(split, size, seed, options)``."""

    split: str
    size: int
    seed: int
    options: SyntheticOptions


_SPLIT_SALT = {"train": 11, "val": 23, "test": 37}

#: ``render_face(..., patch=KEEP)``: the face's own patch as generated (its class patch on the training
#: faces that drew one, none elsewhere). ``patch=None`` draws no patch, ``patch=c`` the patch of class c.
KEEP = "keep"


@dataclass(frozen=True)
class FaceDraws:
    """The random draws of one face's picture (background, blobs, skin, hair, lips, lighting, noise).

    Drawn from the split's stream in the order the picture uses them, so a face can be drawn again
    (with AUs off or a patch added) without replaying the stream.
    """

    top: np.ndarray
    bottom: np.ndarray
    blobs: tuple[tuple[float, float, float, tuple[int, int, int]], ...]   # (cx, cy, r, colour), supersampled px
    skin: np.ndarray
    hair: tuple[int, int, int]
    lips: tuple[int, int, int]
    direction: np.ndarray
    gain: float
    noise: np.ndarray


@dataclass(frozen=True)
class FacePlan:
    """Everything one generated face depends on: its identity, expression, pose, patch and draws."""

    index: int
    label: int
    image_size: int
    identity: np.ndarray          # (68, 2) face units: the face's shape before its expression
    aus: tuple[int, ...]          # its class's AUs, in the order they are applied
    intensity: np.ndarray         # (len(aus),) in [0.6, 1)
    half_width: float             # pixels per face unit
    angle: float
    cos: float
    sin: float
    centre: np.ndarray            # (2,) pixels
    patch: bool                   # drawn with its class patch (some training faces)
    draws: FaceDraws


def face_plans(split: str, size: int, seed: int, options: SyntheticOptions) -> Iterator[FacePlan]:
    """The plans of the ``size`` faces of ``split``, in order, drawn lazily from the split's stream.

    Vectorised draws (identity, expression intensities, pose, patches) come first for the whole split,
    then each face's picture draws, face by face: one face's plan holds its noise, never the split's.
    """
    rng = np.random.default_rng([seed, _SPLIT_SALT[split], size, options.image_size])
    n_classes = len(CLASS_NAMES)
    labels = np.arange(size) % n_classes
    rng.shuffle(labels)
    codebook = get_codebook(options.codebook)

    # Identity: per-face shape of the template.
    pts = np.repeat(TEMPLATE[None], size, axis=0)
    pts[:, :, 0] *= rng.uniform(0.88, 1.08, size)[:, None]
    pts[:, :, 1] *= rng.uniform(0.92, 1.08, size)[:, None]
    eye_shift = rng.uniform(-0.05, 0.05, size)[:, None]
    pts[:, 36:48, 0] += eye_shift * np.sign(pts[:, 36:48, 0])
    pts[:, MOUTH, 0] *= rng.uniform(0.88, 1.12, size)[:, None]
    pts[:, 17:27, 1] += rng.uniform(-0.05, 0.05, size)[:, None]

    # Expression: each AU of the class at a random intensity (applied per face by ``face_landmarks``).
    width = max((len(a) for a in codebook.aus_per_class), default=0)
    intensity = np.zeros((size, width))
    for c in range(n_classes):
        rows = np.flatnonzero(labels == c)
        if len(rows) == 0:
            continue
        for j, _ in enumerate(codebook.aus_per_class[c]):
            intensity[rows, j] = rng.uniform(0.6, 1.0, len(rows))

    # Pose: scale, rotation, translation into pixels.
    S = options.image_size
    half_width = S * rng.uniform(0.30, 0.36, size)
    angle = np.deg2rad(rng.uniform(-10, 10, size))
    centre = S / 2 + S * rng.uniform(-0.06, 0.06, (size, 2))
    centre[:, 1] -= S * 0.03
    cos, sin = np.cos(angle), np.sin(angle)

    patched = (rng.random(size) < options.shortcut) if split == "train" else np.zeros(size, bool)
    for i in range(size):
        aus = codebook.aus_per_class[labels[i]]
        yield FacePlan(index=i, label=int(labels[i]), image_size=S, identity=pts[i].copy(), aus=aus,
                       intensity=intensity[i, :len(aus)].copy(), half_width=float(half_width[i]),
                       angle=float(angle[i]), cos=float(cos[i]), sin=float(sin[i]), centre=centre[i].copy(),
                       patch=bool(patched[i]), draws=_face_draws(rng, S))


def plans_at(split: str, size: int, seed: int, options: SyntheticOptions, indices: Iterable[int]) -> list[FacePlan]:
    """The plans of faces ``indices`` of a split (in that order), keeping only those."""
    wanted = [int(i) for i in indices]
    if wanted and not 0 <= min(wanted) <= max(wanted) < size:
        raise ValueError(f"face indices must lie in [0, {size}) for a {split} split of {size} faces")
    keep = set(wanted)
    found: dict[int, FacePlan] = {}
    for plan in face_plans(split, size, seed, options):
        if plan.index in keep:
            found[plan.index] = plan
        if len(found) == len(keep):
            break
    return [found[i] for i in wanted]


def face_landmarks(plan: FacePlan, au_off: Iterable[int] = ()) -> np.ndarray:
    """(68, 2) float64 landmarks in pixels of the face with the AUs in ``au_off`` switched off."""
    off = set(au_off)
    unknown = off - set(plan.aus)
    if unknown:
        raise ValueError(f"face {plan.index} (class {CLASS_NAMES[plan.label]}) has no AU {sorted(unknown)}; "
                         f"its AUs are {list(plan.aus)}")
    pts = plan.identity[None].copy()
    for au, k in zip(plan.aus, plan.intensity):
        if au not in off:
            apply_au(pts, au, np.array([k]))
    x, y = pts[0, :, 0] * plan.half_width, pts[0, :, 1] * plan.half_width
    return np.stack([plan.cos * x - plan.sin * y + plan.centre[0], plan.sin * x + plan.cos * y + plan.centre[1]], -1)


def render_face(plan: FacePlan, au_off: Iterable[int] = (), patch: int | None | str = KEEP) -> np.ndarray:
    """The face of ``plan`` as uint8 (S, S, 3), with ``au_off`` switched off and ``patch`` (see ``KEEP``).

    Same identity, pose, lighting, background and noise as the generated face: with no AU off and
    the patch kept it is that face, bit for bit.
    """
    if patch == KEEP:
        patch_class = plan.label if plan.patch else None
    elif patch is None or (isinstance(patch, (int, np.integer)) and 0 <= patch < len(_SHORTCUT_COLOURS)):
        patch_class = None if patch is None else int(patch)
    else:
        raise ValueError(f"patch must be {KEEP!r}, None or a class index in [0, {len(_SHORTCUT_COLOURS)}); "
                         f"got {patch!r}")
    return _draw(face_landmarks(plan, au_off), patch_class, plan.image_size, plan.half_width, plan.angle, plan.draws)


def render_counterfactual(split: str, size: int, seed: int, options: SyntheticOptions, index: int,
                          au_off: Iterable[int] = (), patch: int | None | str = KEEP) -> np.ndarray:
    """Face ``index`` of the split ``generate(split, size, seed, options)`` with AUs off and/or a patch."""
    return render_face(plans_at(split, size, seed, options, [index])[0], au_off, patch)


def generate(split: str, size: int, seed: int, options: SyntheticOptions, out: np.ndarray | None = None) -> Arrays:
    """Generate ``size`` faces of ``split`` (balanced over the 7 classes, shuffled).

    With ``out`` (a (size, S, S, 3) uint8 array, e.g. a memory-mapped cache file), faces are drawn
    into it one by one, so generating never holds the split in memory; the faces are the same.
    """
    S = options.image_size
    images = np.empty((size, S, S, 3), dtype=np.uint8) if out is None else out
    labels = np.empty(size, dtype=np.int64)
    landmarks = np.empty((size, 68, 2), dtype=np.float32)
    for plan in face_plans(split, size, seed, options):
        lm = face_landmarks(plan)
        labels[plan.index] = plan.label
        landmarks[plan.index] = lm
        images[plan.index] = _draw(lm, plan.label if plan.patch else None, S, plan.half_width, plan.angle, plan.draws)
    return Arrays(images=images, labels=labels, landmarks=landmarks)


_SHORTCUT_COLOURS = [(230, 40, 40), (40, 200, 40), (40, 80, 230), (230, 200, 30),
                     (200, 40, 200), (30, 200, 210), (250, 140, 20)]


def _patch_box(big: float, patch_class: int) -> tuple[float, float, float, float]:
    """The class patch, a square in a class-dependent corner, at supersampled size ``big``."""
    side = 0.2 * big
    corner = patch_class % 4
    x0 = 0.03 * big if corner in (0, 2) else big - side - 0.03 * big
    y0 = 0.03 * big if corner in (0, 1) else big - side - 0.03 * big
    return x0, y0, x0 + side, y0 + side


def patch_mask(image_size: int, patch_class: int) -> np.ndarray:
    """(S, S) bool: the output pixels whose centre lies inside the patch of ``patch_class``."""
    x0, y0, x1, y1 = (v / SUPERSAMPLE for v in _patch_box(image_size * SUPERSAMPLE, patch_class))
    centres = np.arange(image_size) + 0.5
    inside_x, inside_y = (centres >= x0) & (centres <= x1), (centres >= y0) & (centres <= y1)
    return inside_y[:, None] & inside_x[None, :]


def _face_draws(rng: np.random.Generator, S: int) -> FaceDraws:
    """One face's picture draws, in the order ``_draw`` once drew them from the stream."""
    big = S * SUPERSAMPLE
    top, bottom = rng.integers(20, 235, 3), rng.integers(20, 235, 3)
    blobs = []
    for _ in range(rng.integers(1, 4)):
        cx, cy, r = rng.uniform(0, big, 2).tolist() + [float(rng.uniform(0.05, 0.2) * big)]
        blobs.append((cx, cy, r, tuple(int(v) for v in rng.integers(0, 255, 3))))
    skin = np.array([rng.uniform(150, 240), rng.uniform(110, 200), rng.uniform(80, 170)])
    hair = tuple(int(v) for v in rng.integers(10, 120, 3))
    lips = tuple(int(v) for v in np.array([175, 60, 70]) * rng.uniform(0.8, 1.1))
    direction = rng.uniform(-1, 1, 2)
    gain = rng.uniform(0.8, 1.15)
    noise = rng.normal(0, 4, (S, S, 3))
    return FaceDraws(top, bottom, tuple(blobs), skin, hair, lips, direction, gain, noise)


def _draw(lm: np.ndarray, patch_class: int | None, S: int, half_width: float, angle: float,
          draws: FaceDraws) -> np.ndarray:
    k = SUPERSAMPLE
    big = S * k
    P = (lm + 0.5) * k - 0.5                      # landmarks at the supersampled resolution
    unit = half_width * k                          # one face unit in supersampled pixels

    # Background: a random two-colour vertical gradient with blobs.
    ramp = np.linspace(0, 1, big)[:, None, None]
    bg = (draws.top * (1 - ramp) + draws.bottom * ramp) * np.ones((1, big, 1))
    img = Image.fromarray(bg.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for cx, cy, r, colour in draws.blobs:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)

    if patch_class is not None:   # class-coloured square in a class-dependent corner
        draw.rectangle(list(_patch_box(big, patch_class)), fill=_SHORTCUT_COLOURS[patch_class])

    skin, hair = draws.skin, draws.hair
    # Head: hair ellipse behind, then the face (jaw + forehead arc).
    centre = P[27:31].mean(0)
    up = np.array([np.sin(angle), -np.cos(angle)])
    crown = centre + up * unit * 1.15
    draw.ellipse([crown[0] - unit * 1.15, crown[1] - unit * 0.75, crown[0] + unit * 1.15, crown[1] + unit * 1.1],
                 fill=hair)
    brow_mid = (P[19] + P[24]) / 2
    theta = np.linspace(0, np.pi, 9)
    right = np.array([np.cos(angle), np.sin(angle)])
    forehead = [brow_mid + up * unit * 0.35 * np.sin(t) + right * unit * 0.98 * np.cos(t) for t in theta]
    face = [tuple(p) for p in P[0:17]] + [tuple(p) for p in forehead]
    draw.polygon(face, fill=tuple(int(v) for v in skin))

    dark = tuple(int(v) for v in skin * 0.35)
    shade = tuple(int(v) for v in skin * 0.75)
    lw = max(1, int(round(unit * 0.07)))
    # Brows.
    for idx in (BROW_L, BROW_R):
        draw.line([tuple(P[i]) for i in idx], fill=hair, width=lw * 2, joint="curve")
    # Eyes: white, iris, lids.
    for sl in (slice(36, 42), slice(42, 48)):
        eye = P[sl]
        draw.polygon([tuple(p) for p in eye], fill=(245, 245, 245))
        c = eye.mean(0)
        open_h = np.abs(eye[[1, 2], 1].mean() - eye[[4, 5], 1].mean())
        r = max(1.0, min(open_h * 0.6, unit * 0.08))
        draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=(40, 30, 25))
        draw.line([tuple(p) for p in eye[[0, 1, 2, 3]]], fill=dark, width=lw)
    # Nose, with wrinkle lines when the nostrils are raised.
    draw.line([tuple(P[i]) for i in (27, 28, 29, 30)], fill=shade, width=lw)
    draw.line([tuple(P[i]) for i in range(31, 36)], fill=dark, width=lw)
    # Cheeks: a flush under the eyes (AU6 moves the lower lids, the flush follows them).
    for i in (41, 46):
        cx, cy = P[i] + up * -unit * 0.4
        r = unit * 0.18
        draw.ellipse([cx - r, cy - r * 0.7, cx + r, cy + r * 0.7], fill=tuple(int(v) for v in skin * np.array([1.0, 0.85, 0.85])))
    # Mouth: lips, then the opening when the inner lips part.
    draw.polygon([tuple(P[i]) for i in range(48, 60)], fill=draws.lips)
    inner = [tuple(P[i]) for i in (60, 61, 62, 63, 64, 65, 66, 67)]
    draw.polygon(inner, fill=(50, 15, 20))
    draw.line([tuple(P[i]) for i in (60, 61, 62, 63, 64)], fill=(90, 25, 30), width=lw)
    # Chin line (AU17 raises it).
    draw.line([tuple(P[i]) for i in (7, 8, 9)], fill=shade, width=lw)

    # Lighting: a directional brightness gradient, then blur and downsample.
    arr = np.asarray(img.filter(ImageFilter.GaussianBlur(radius=k * 0.4)), dtype=np.float32)
    yy, xx = np.mgrid[0:big, 0:big] / big - 0.5
    light = 1 + 0.35 * (draws.direction[0] * xx + draws.direction[1] * yy)
    arr = np.clip(arr * light[..., None] * draws.gain, 0, 255)
    small = Image.fromarray(arr.astype(np.uint8), "RGB").resize((S, S), Image.BOX)
    out = np.asarray(small, dtype=np.float32) + draws.noise
    return np.clip(out, 0, 255).astype(np.uint8)
