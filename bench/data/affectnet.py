"""AffectNet, from either public release; the official validation set is the test split.

(a) ``Manually_Annotated_Images/<dir>/<file>`` with ``training.csv`` / ``validation.csv``
    (subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks, expression,
    ...). Faces are cropped from the CSV box and the CSV's 68 points ("x;y;x;y;...") are mapped
    into the crop by the decode step.
(b) ``train_set|val_set/images/<id>.jpg`` with ``annotations/<id>_exp.npy`` (and ``<id>_lnd.npy``,
    136 numbers x, y, x, y, ..., when present); images are used as given (face crops).

Codes 0-6 map to the canonical 7 classes; 7 (contempt) is kept as an 8th class only with
``data.contempt=true``; 8-10 (none, uncertain, no face) are always dropped. Dropped rows are
counted by code (``Catalog.dropped``, then each record's ``data.dropped_labels``); a code outside
0-10, or an annotation that cannot be read, is an error naming the file (and line).
"""
from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import numpy as np

from au.codebook import CLASS_NAMES
from bench.data.cache import (IMAGE_EXTENSIONS, Catalog, Item, data_root, dataset_cache_dir, load_splits,
                              register_catalog)
from bench.data.registry import Splits, register_dataset
from bench.errors import UserError
from bench.files import atomic_write

#: AffectNet code -> canonical index (0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger, 7 Contempt).
AFFECTNET_TO_CANONICAL = {0: 0, 1: 1, 2: 6, 3: 2, 4: 3, 5: 5, 6: 4}
CONTEMPT_CODE = 7
KNOWN_CODES = range(11)       # 0-6 basic, 7 contempt, 8 none, 9 uncertain, 10 no face
EXPECTED_CODES = "0-10 (0-6 basic expressions, 7 contempt, 8 none, 9 uncertain, 10 no face)"
CSV_COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
               "expression")
LAYOUT = ("an AffectNet folder holding either Manually_Annotated_Images/ with training.csv and validation.csv, "
          "or train_set/ and val_set/ each with images/ and annotations/<id>_exp.npy")


def label_map(contempt: bool) -> dict[int, int]:
    return {**AFFECTNET_TO_CANONICAL, CONTEMPT_CODE: 7} if contempt else dict(AFFECTNET_TO_CANONICAL)


def _bases(root: Path) -> list[Path]:
    return [root, root / "AffectNet", root / "affectnet", root / "AffectNet_original", root / "Manually_Annotated"]


def _find(root: Path, *names: str) -> Path | None:
    for base in _bases(root):
        for sub in ("", "Manually_Annotated_file_lists", "Manually_Annotated"):
            path = base / sub / names[0] if sub else base / names[0]
            if path.exists() and all((path.parent / n).exists() for n in names[1:]):
                return path
    return None


def parse_landmarks(text: str) -> np.ndarray | None:
    """136 numbers separated by ';' (or ','), as (68, 2); None when there are not 136 numbers."""
    values = text.replace(",", ";").strip(" ;").split(";")
    if len(values) != 136:
        values = [v for v in values if v.strip()]
        if len(values) != 136:
            return None
    try:
        return np.array(values, dtype=np.float32).reshape(68, 2)      # converted in C, not per value in Python
    except ValueError:
        return None


def _check_code(code: int, where: str) -> None:
    if code not in KNOWN_CODES:
        raise UserError(f"affectnet: {where}: expression code {code} is not an AffectNet code; expected "
                        f"{EXPECTED_CODES}; fix or remove that annotation")


def _header_columns(first_row: list[str]) -> dict[str, int] | None:
    """Column name -> index when ``first_row`` is a header (any order; recognised by its names),
    None when it is a data row (a header-less copy in the official order)."""
    names = [cell.strip().lstrip("\ufeff").strip() for cell in first_row]
    if not set(names) & set(CSV_COLUMNS):
        return None
    return {name: i for i, name in enumerate(names) if name}


def _read_csv(path: Path, images: Path, mapping: dict[int, int]) -> tuple[list[Item], dict[str, int]]:
    """Items of ``training.csv``/``validation.csv``; errors name the file and its real line (header = 1)."""
    items, dropped = [], {}
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        first = next(reader, None)
        if first is None:
            return [], {}
        col = _header_columns(first)
        if col is not None:
            missing = [c for c in CSV_COLUMNS if c not in col]
            if missing:
                raise UserError(f"affectnet: {path}:1 (header) lacks column(s) {', '.join(missing)}; expected "
                                f"{', '.join(CSV_COLUMNS)} (any order)")
            rows = ((reader.line_num, row) for row in reader)
        else:                                         # header-less copy: the official column order
            col = {name: i for i, name in enumerate(CSV_COLUMNS)}
            first_line = reader.line_num
            rows = iter([(first_line, first), *((reader.line_num, row) for row in reader)])
        for n, row in rows:
            if not row or not any(cell.strip() for cell in row):
                continue
            try:
                code = int(float(row[col["expression"]]))
                x, y = float(row[col["face_x"]]), float(row[col["face_y"]])
                w, h = float(row[col["face_width"]]), float(row[col["face_height"]])
            except (IndexError, ValueError):
                raise UserError(f"affectnet: {path}:{n} is not a valid row: {','.join(row)[:80]!r}") from None
            _check_code(code, f"{path}:{n}")
            if code not in mapping:
                dropped[str(code)] = dropped.get(str(code), 0) + 1
                continue
            rel = row[col["subDirectory_filePath"]].strip()
            items.append(Item(id=rel, path=images / rel, label=mapping[code], box=(x, y, x + w, y + h),
                              landmarks=parse_landmarks(row[col["facial_landmarks"]])))
    return items, dropped


def _read_npy_split(split_dir: Path, mapping: dict[int, int], index_dir: Path) -> tuple[list[Item], dict[str, int]]:
    """Items of one ``train_set``/``val_set``; the parsed annotations are cached (one .npy per file
    is slow to read on every run) under a key of the annotation listing (names, sizes, mtimes)."""
    ann, img = split_dir / "annotations", split_dir / "images"
    entries = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(ann)
                     if e.name.endswith("_exp.npy") or e.name.endswith("_lnd.npy"))
    key = hashlib.sha256(repr((str(split_dir), entries)).encode()).hexdigest()[:16]
    index = index_dir / f"annotations-{split_dir.name}-{key}.npz"
    if index.is_file():
        with np.load(index) as z:
            ids, codes, points = z["ids"].tolist(), z["codes"], z["points"]
    else:
        names = {e[0] for e in entries}
        ids = sorted(name[:-len("_exp.npy")] for name in names if name.endswith("_exp.npy"))
        codes = np.zeros(len(ids), dtype=np.int64)
        points = np.full((len(ids), 68, 2), np.nan, dtype=np.float32)
        for i, stem in enumerate(ids):
            try:
                codes[i] = int(np.asarray(np.load(ann / f"{stem}_exp.npy", allow_pickle=False)).reshape(-1)[0])
            except (OSError, ValueError, IndexError, EOFError) as exc:
                raise UserError(f"affectnet: {ann / f'{stem}_exp.npy'} cannot be read as an expression code "
                                f"({type(exc).__name__}); expected a .npy holding one of {EXPECTED_CODES}; "
                                "restore it or remove that image's annotations") from None
            if f"{stem}_lnd.npy" in names:
                try:
                    lnd = np.asarray(np.load(ann / f"{stem}_lnd.npy", allow_pickle=False), dtype=np.float32)
                    if lnd.size == 136:
                        points[i] = lnd.reshape(68, 2)
                except (OSError, ValueError):
                    pass
        atomic_write(index, lambda fh: np.savez(fh, ids=np.asarray(ids, dtype=str), codes=codes, points=points))
    files = {}
    for entry in os.scandir(img):
        stem, ext = os.path.splitext(entry.name)
        if ext.lower() in IMAGE_EXTENSIONS:
            files[stem] = entry.name
    items, dropped = [], {}
    for i, stem in enumerate(ids):
        code = int(codes[i])
        _check_code(code, str(ann / f"{stem}_exp.npy"))
        if code not in mapping:
            dropped[str(code)] = dropped.get(str(code), 0) + 1
            continue
        name = files.get(stem, f"{stem}.jpg")          # a missing image is counted as skipped at decode
        lm = points[i] if np.isfinite(points[i]).all() else None
        items.append(Item(id=f"{split_dir.name}/images/{name}", path=img / name, label=mapping[code], landmarks=lm))
    return items, dropped


@register_catalog("affectnet")
def catalog(config) -> Catalog:
    root = data_root(config, "affectnet", LAYOUT)
    contempt = bool(getattr(config, "contempt", False))
    mapping = label_map(contempt)
    names = CLASS_NAMES + (("Contempt",) if contempt else ())
    train_csv = _find(root, "training.csv", "validation.csv")
    if train_csv is not None:
        images = None
        for base in [train_csv.parent, train_csv.parent.parent, *_bases(root)]:
            for cand in (base / "Manually_Annotated_Images", base / "Manually_Annotated" / "Manually_Annotated_Images"):
                if cand.is_dir():
                    images = cand
                    break
            if images:
                break
        if images is None:
            raise UserError(f"affectnet: found {train_csv} but no Manually_Annotated_Images/ folder next to it; "
                            f"expected {LAYOUT}")
        train, dropped_train = _read_csv(train_csv, images, mapping)
        test, dropped_test = _read_csv(train_csv.parent / "validation.csv", images, mapping)
        return Catalog(splits={"train": train, "test": test}, class_names=names, root=images.parent,
                       own_landmarks=True, notes={"release": "manually_annotated"},
                       dropped={"train": dropped_train, "test": dropped_test},
                       options={"release": "manually_annotated", "contempt": contempt})
    for base in _bases(root):
        if all((base / s / "annotations").is_dir() and (base / s / "images").is_dir() for s in ("train_set", "val_set")):
            index_dir = dataset_cache_dir("affectnet", base)
            train, dropped_train = _read_npy_split(base / "train_set", mapping, index_dir)
            test, dropped_test = _read_npy_split(base / "val_set", mapping, index_dir)
            has_points = any(it.landmarks is not None for it in train + test)
            return Catalog(splits={"train": train, "test": test}, class_names=names, root=base,
                           own_landmarks=has_points, notes={"release": "train_set/val_set"},
                           dropped={"train": dropped_train, "test": dropped_test},
                           options={"release": "train_set/val_set", "contempt": contempt})
    raise UserError(f"affectnet: nothing recognisable under {root}; point --data-root (or BENCH_DATA) at {LAYOUT}")


@register_dataset("affectnet")
def affectnet(config, seed: int) -> Splits:
    return load_splits("affectnet", catalog(config), config, seed, LAYOUT)
