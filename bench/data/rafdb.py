"""RAF-DB (basic), read from the official layout; train and test come from the file names.

    basic/EmoLabel/list_patition_label.txt        "train_00001.jpg 5" (codes 1-7, below)
    basic/Image/aligned/train_00001_aligned.jpg   100x100 aligned faces (default)
    basic/Image/original/train_00001.jpg          with --set data.rafdb_images=original:
    basic/Annotation/boundingbox/train_00001_boundingbox.txt   cropped from this box, +30%

The box file holds ``x_min y_min x_max y_max``: that is how independent RAF-DB loaders read it
and how a crop lands on the face. The reference code passes ``(v2, v1, v4, v3)`` to PIL's crop,
i.e. it swaps x and y; ``tests/test_data_rafdb.py`` pins the order on a fixture with a known face.
RAF-DB has no 68-point landmarks: run ``bench landmarks rafdb`` once (dlib, offline).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.data.cache import Catalog, Item, data_root, load_splits, register_catalog
from bench.data.registry import Splits, register_dataset
from bench.errors import UserError

#: RAF-DB code -> canonical index (Neutral 0, Happiness 1, Surprise 2, Fear 3, Anger 4, Disgust 5, Sadness 6).
RAF_TO_CANONICAL = {1: 2, 2: 3, 3: 5, 4: 1, 5: 6, 6: 4, 7: 0}
BOX_ENLARGE = 0.30           # the reference's bbx_upscale: 15% added on every side
LAYOUT = ("RAF-DB's basic/ folder (basic/EmoLabel/list_patition_label.txt with basic/Image/aligned/*_aligned.jpg, "
          "or basic/Image/original + basic/Annotation/boundingbox)")


def find_basic(root: Path) -> Path | None:
    for candidate in (root, root / "basic", root / "RAF-DB" / "basic", root / "RAF-DB", root / "rafdb" / "basic",
                      root / "rafdb", root / "RAF" / "basic"):
        if (candidate / "EmoLabel" / "list_patition_label.txt").is_file():
            return candidate
    return None


def read_box(path: Path) -> tuple[float, float, float, float]:
    values = [float(v) for v in path.read_text().replace(",", " ").split()[:4]]
    if len(values) != 4:
        raise ValueError(f"{path} holds fewer than 4 numbers")
    return tuple(values)


def enlarge(box, factor: float = BOX_ENLARGE) -> tuple[float, float, float, float]:
    """Grow a box by ``factor`` of its width/height, half on each side (clamped later, at decode)."""
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * factor / 2, (y2 - y1) * factor / 2
    return (x1 - dx, y1 - dy, x2 + dx, y2 + dy)


@register_catalog("rafdb")
def catalog(config) -> Catalog:
    root = data_root(config, "rafdb", LAYOUT)
    basic = find_basic(root)
    if basic is None:
        raise UserError(f"rafdb: no basic/EmoLabel/list_patition_label.txt under {root}; point --data-root "
                        f"(or BENCH_DATA) at {LAYOUT}")
    variant = getattr(config, "rafdb_images", "aligned")
    if variant not in ("aligned", "original"):
        raise UserError(f"bad data.rafdb_images {variant!r}: expected aligned or original")
    image_dir = basic / "Image" / variant
    if not image_dir.is_dir():
        raise UserError(f"rafdb: {image_dir} is missing; unpack Image/{variant} there or choose "
                        f"--set data.rafdb_images={'original' if variant == 'aligned' else 'aligned'}")
    box_dir = basic / "Annotation" / "boundingbox"
    if variant == "original" and not box_dir.is_dir():
        raise UserError(f"rafdb: {box_dir} is missing; data.rafdb_images=original needs the face boxes")
    splits: dict[str, list[Item]] = {"train": [], "test": []}
    label_file = basic / "EmoLabel" / "list_patition_label.txt"
    for n, line in enumerate(label_file.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            name, code = parts[0], int(parts[1])
            label = RAF_TO_CANONICAL[code]
        except (IndexError, ValueError, KeyError):
            raise UserError(f"rafdb: {label_file}:{n} is not '<name>.jpg <code 1-7>': {line.strip()!r}") from None
        split = "train" if name.startswith("train") else "test" if name.startswith("test") else None
        if split is None:
            raise UserError(f"rafdb: {label_file}:{n}: {name!r} starts with neither train nor test")
        stem = Path(name).stem
        if variant == "aligned":
            path = image_dir / f"{stem}_aligned{Path(name).suffix or '.jpg'}"
            box = None
        else:
            path = image_dir / name
            box_file = box_dir / f"{stem}_boundingbox.txt"
            try:
                box = enlarge(read_box(box_file))
            except (OSError, ValueError):
                box = (np.nan,) * 4      # decoding then fails and the image is counted as skipped
        splits[split].append(Item(id=str(path.relative_to(basic)), path=path, label=label, box=box))
    return Catalog(splits=splits, root=basic, options={"rafdb_images": variant})


@register_dataset("rafdb")
def rafdb(config, seed: int) -> Splits:
    return load_splits("rafdb", catalog(config), config, seed, LAYOUT)
