"""Any ``<root>/<class>/<image>`` tree (e.g. ``../shared/data/jaffe``), or ``<root>/{train,test}/<class>/``.

- Class folders may use common aliases (happy, angry, sad, surprised, ...; see ``ALIASES``);
  ``contempt`` is kept only with ``data.contempt=true``, else its images are dropped and counted
  (in ``train`` for a tree without ``test/``: they were never candidates for the test split).
- ``<root>/landmarks.json`` ({relative path: 68x2 or null}) gives the dataset's own landmarks;
  otherwise ``bench landmarks folder --data-root ROOT`` writes a detector cache.
- ``<root>/labels.csv`` with ``path`` and ``subject`` columns makes every split subject-disjoint.
- Without a ``test/`` folder, ``data.test_fraction`` of the images (by subject when known) is
  held out as test with a fixed seed, so every trial seed is scored on the same test images;
  validation is then carved from the rest by the trial seed.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from au.codebook import CLASS_NAMES
from au.landmark_cache import read_landmarks_json
from bench.data.cache import IMAGE_EXTENSIONS, Catalog, Item, data_root, load_splits, register_catalog
from bench.data.registry import Splits, register_dataset
from bench.data.splits import carve
from bench.errors import UserError

ALIASES = {
    0: ("neutral", "ne", "calm", "none"),
    1: ("happiness", "happy", "ha", "joy", "smile"),
    2: ("surprise", "surprised", "su"),
    3: ("fear", "fearful", "fe", "afraid", "scared"),
    4: ("anger", "angry", "an", "mad"),
    5: ("disgust", "disgusted", "di"),
    6: ("sadness", "sad", "sa"),
    7: ("contempt", "co"),
}
ALIAS_TO_INDEX = {alias: index for index, names in ALIASES.items() for alias in names}
TEST_SPLIT_SEED = 0          # the held-out test images do not depend on the trial seed
LAYOUT = ("a folder of class folders (<root>/<class>/*.jpg|png, e.g. happy/, sad/, neutral/) or "
          "<root>/train/<class>/ and <root>/test/<class>/, with an optional landmarks.json and labels.csv")


def class_index(name: str) -> int | None:
    return ALIAS_TO_INDEX.get(name.strip().lower().replace("-", "").replace("_", ""))


def _scan(base: Path, root: Path, contempt: bool, dropped: dict[str, int]) -> list[Item]:
    items = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        index = class_index(folder.name)
        if index is None:
            known = ", ".join(sorted(ALIAS_TO_INDEX))
            raise UserError(f"folder: {folder} is not a class name; rename it to one of: {known}")
        if index == 7 and not contempt:
            n = sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            dropped[folder.name] = dropped.get(folder.name, 0) + n
            continue
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                items.append(Item(id=path.relative_to(root).as_posix(), path=path, label=index))
    return items


def _subjects(root: Path) -> dict[str, str]:
    path = root / "labels.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise UserError(f"folder: {path} needs a 'path' column (and 'subject' for subject-wise splits)")
        if "subject" not in reader.fieldnames:
            return {}
        return {row["path"].strip(): row["subject"].strip() for row in reader if row.get("subject")}


@register_catalog("folder")
def catalog(config) -> Catalog:
    root = data_root(config, "folder", LAYOUT)
    contempt = bool(getattr(config, "contempt", False))
    names = CLASS_NAMES + (("Contempt",) if contempt else ())
    dropped: dict[str, dict[str, int]] = {}
    if (root / "train").is_dir() and (root / "test").is_dir():
        splits = {s: _scan(root / s, root, contempt, dropped.setdefault(s, {}))
                  for s in ("train", "val", "test") if (root / s).is_dir()}
    else:
        items = _scan(root, root, contempt, dropped.setdefault("train", {}))
        if not items:
            raise UserError(f"folder: no images under {root}; expected {LAYOUT}")
        splits = {"all": items}
    subjects = _subjects(root)
    own = None
    if (root / "landmarks.json").is_file():
        try:
            own = read_landmarks_json(root / "landmarks.json")
        except (ValueError, AttributeError) as exc:
            raise UserError(f"folder: {root / 'landmarks.json'} is not a {{path: 68x2 list}} JSON object ({exc})") from None
    for items in splits.values():
        for item in items:
            item.subject = subjects.get(item.id)
            if own is not None:
                item.landmarks = own.get(item.id)
    if "all" in splits:
        items = splits.pop("all")
        labels = np.array([it.label for it in items])
        subj = np.array([it.subject for it in items]) if all(it.subject for it in items) else None
        keep, held = carve(labels, float(getattr(config, "test_fraction", 0.2)), TEST_SPLIT_SEED, subj, salt=1)
        splits = {"train": [items[i] for i in keep], "test": [items[i] for i in held]}
    return Catalog(splits=splits, class_names=names, root=root, own_landmarks=own is not None, dropped=dropped,
                   options={"contempt": contempt})


@register_dataset("folder")
def folder(config, seed: int) -> Splits:
    return load_splits("folder", catalog(config), config, seed, LAYOUT)
