"""Decode once: real datasets become memory-mapped uint8 arrays, built once per split and reused.

A dataset module lists its images as ``Item``s (file, label, optional face box, optional own
landmarks, optional subject) per split; ``load_splits`` turns that catalogue into ``Splits``:

1. every split is decoded, cropped to its box and resized to ``image_size`` once, into
   ``<cache>/<dataset>-<root hash>/<split>-<key>/images.npy`` (opened memory-mapped afterwards);
   the key hashes the file list, sizes, mtimes, boxes and preprocessing parameters, so any change
   rebuilds it. A build goes to a temporary folder, writes ``COMPLETE`` last and is renamed into
   place, so a torn cache is never read (a folder without the marker is rebuilt);
2. unreadable images are skipped and counted (``Splits.skipped``); past ``data.max_skipped`` of a
   split the run stops with one line;
3. landmarks (the dataset's own or a detector cache written by ``bench landmarks``) are mapped
   through the stored crop/resize of each image, so they always match the decoded pixels (they are
   not part of the key: re-detecting landmarks never re-decodes images);
4. validation is carved from train (``bench/data/splits.py``).

The cache folder is ``$BENCH_CACHE`` or ``~/.cache/au-cam-bench`` (never inside the data root,
which may be read-only or shared). Delete it freely: it is rebuilt on demand.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from au.codebook import CLASS_NAMES
from au.landmark_cache import LandmarkCache
from bench.data.registry import Splits
from bench.data.splits import carve
from bench.data.synthetic import Arrays
from bench.errors import UserError

CACHE_VERSION = 1
RESAMPLE = "bilinear"          # antialiased in PIL when shrinking
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Item:
    """One image of a catalogue. ``box`` (x1, y1, x2, y2, pixels) is the face crop (None: whole image);
    ``landmarks`` (68, 2) are the dataset's own points in file pixels (None: look them up by id)."""

    id: str
    path: Path
    label: int
    box: tuple[float, float, float, float] | None = None
    landmarks: np.ndarray | None = None
    subject: str | None = None


@dataclass
class Catalog:
    """What a dataset offers before decoding: items per split (``train`` and ``test``; ``val``
    only if the dataset has an official one) and its class names."""

    splits: dict[str, list[Item]]
    class_names: tuple[str, ...] = CLASS_NAMES
    root: Path = Path(".")
    own_landmarks: bool = False
    notes: dict = field(default_factory=dict)


#: dataset name -> function(DataConfig) -> Catalog (used by the loaders and ``bench landmarks``).
CATALOGS: dict[str, Callable[..., Catalog]] = {}


def register_catalog(name: str):
    def wrap(fn):
        CATALOGS[name] = fn
        return fn
    return wrap


# --- locations ------------------------------------------------------------------------------------

def data_root(config, dataset: str, layout: str) -> Path:
    """``data.root`` or ``$BENCH_DATA``; a one-line error naming ``layout`` when neither is set."""
    raw = (getattr(config, "root", "") or os.environ.get("BENCH_DATA", "")).strip()
    if not raw:
        raise UserError(f"{dataset} needs its data, which is licensed and never downloaded: give --data-root DIR "
                        f"(or --set data.root=DIR, or BENCH_DATA=DIR) pointing at {layout}")
    root = Path(raw).expanduser().resolve()
    if not root.is_dir():
        raise UserError(f"{dataset}: data root {root} does not exist; point --data-root (or BENCH_DATA) at {layout}")
    return root


def cache_root() -> Path:
    raw = os.environ.get("BENCH_CACHE", "").strip()
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "au-cam-bench"


def dataset_cache_dir(dataset: str, root: Path) -> Path:
    digest = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:10]
    return cache_root() / f"{dataset}-{digest}"


def landmark_cache(dataset: str, root: Path, detector: str) -> LandmarkCache:
    return LandmarkCache(dataset_cache_dir(dataset, root) / f"landmarks-{detector}")


# --- decoding --------------------------------------------------------------------------------------

def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


def cache_key(items: list[Item], image_size: int, root: Path) -> str:
    """Hash of everything that changes the decoded pixels: files, sizes, mtimes, boxes, parameters."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "size": image_size, "resample": RESAMPLE}).encode())
    for item in items:
        size, mtime = _stat(item.path)
        try:
            rel = str(item.path.relative_to(root))
        except ValueError:
            rel = str(item.path)
        box = None if item.box is None else [round(float(v), 3) for v in item.box]
        h.update(json.dumps([rel, size, mtime, box]).encode())
    return h.hexdigest()[:20]


def decode_image(path: Path, box, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(size, size, 3) uint8 and the affine (x0, y0, sx, sy) taking file pixels to output pixels.

    The box is clamped to the image and resampled directly (PIL ``resize(box=...)``), so a point at
    pixel centre x maps to ``(x + 0.5 - x0) * sx - 0.5``.
    """
    with Image.open(path) as im:
        im = im.convert("RGB")
        W, H = im.size
        x1, y1, x2, y2 = (0.0, 0.0, float(W), float(H)) if box is None else (float(v) for v in box[:4])
        if not np.isfinite([x1, y1, x2, y2]).all():
            raise ValueError("no usable face box")
        x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(float(W), x2), min(float(H), y2)
        if x2 - x1 < 1 or y2 - y1 < 1:
            raise ValueError(f"face box {tuple(box)} lies outside the {W}x{H} image")
        out = im.resize((size, size), Image.Resampling.BILINEAR, box=(x1, y1, x2, y2))
        arr = np.asarray(out, dtype=np.uint8)
    return arr, np.array([x1, y1, size / (x2 - x1), size / (y2 - y1)], dtype=np.float64)


def map_landmarks(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """File-pixel landmarks (N, 68, 2) -> decoded-image pixels, with each image's affine (N, 4)."""
    x0y0, s = affine[:, None, :2], affine[:, None, 2:]
    return ((points + 0.5 - x0y0) * s - 0.5).astype(np.float32)


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _build(items: list[Item], image_size: int, final: Path, meta: dict) -> None:
    tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n = len(items)
    images = np.lib.format.open_memmap(tmp / "all.npy", mode="w+", dtype=np.uint8,
                                       shape=(n, image_size, image_size, 3))
    affine = np.zeros((n, 4), dtype=np.float64)
    ok = np.zeros(n, dtype=bool)
    errors: list[tuple[str, str]] = []

    def work(i: int):
        try:
            images[i], affine[i] = decode_image(items[i].path, items[i].box, image_size)
            ok[i] = True
        except Exception as exc:      # corrupt, truncated, unreadable or missing: skipped and counted
            return items[i].id, " ".join(f"{type(exc).__name__}: {exc}".split())
        return None

    with ThreadPoolExecutor(_workers()) as pool:
        for err in pool.map(work, range(n), chunksize=64):
            if err is not None:
                errors.append(err)
    kept = np.flatnonzero(ok)
    if len(kept) == n:
        images.flush()
        del images
        os.replace(tmp / "all.npy", tmp / "images.npy")
    else:                               # compact: copy the decodable rows into a right-sized array
        out = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8,
                                        shape=(len(kept), image_size, image_size, 3))
        for start in range(0, len(kept), 1024):
            out[start:start + 1024] = images[kept[start:start + 1024]]
        out.flush()
        del out, images
        (tmp / "all.npy").unlink()
    np.savez(tmp / "index.npz", source=kept, affine=affine[kept])
    meta = {**meta, "total": n, "kept": int(len(kept)), "skipped": n - int(len(kept)), "errors": errors[:20]}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    for name in ("images.npy", "index.npz", "meta.json"):   # on disk before the marker says so
        fd = os.open(tmp / name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    (tmp / "COMPLETE").write_text("ok\n")          # the marker goes last
    if final.exists():
        shutil.rmtree(final, ignore_errors=True)
    try:
        os.replace(tmp, final)
    except OSError:                     # another process finished the same build first
        shutil.rmtree(tmp, ignore_errors=True)


def _is_complete(folder: Path) -> bool:
    return (folder / "COMPLETE").is_file() and (folder / "images.npy").is_file() and (folder / "index.npz").is_file()


@dataclass
class Decoded:
    images: np.ndarray          # (M, S, S, 3) uint8, memory-mapped (copy-on-write)
    source: np.ndarray          # (M,) index of each row into the split's item list
    affine: np.ndarray          # (M, 4) file pixels -> decoded pixels
    meta: dict
    folder: Path
    built: bool                 # True when this call (re)built the cache


def decode_split(items: list[Item], image_size: int, folder: Path, split: str, root: Path) -> Decoded:
    """The decoded split from ``folder`` (built there first if absent, stale or torn)."""
    key = cache_key(items, image_size, root)
    final = folder / f"{split}-{key}"
    built = False
    if not _is_complete(final):
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / f".{split}.lock", "w")
        try:
            try:
                import fcntl

                fcntl.flock(lock, fcntl.LOCK_EX)     # concurrent trials: one builds, the others wait
            except ImportError:
                pass
            if not _is_complete(final):
                _build(items, image_size, final, {"split": split, "key": key, "image_size": image_size})
                built = True
        finally:
            lock.close()
        for stale in folder.glob(f"{split}-*"):      # older keys of this split are garbage now
            if stale.is_dir() and stale != final:
                shutil.rmtree(stale, ignore_errors=True)
    meta = json.loads((final / "meta.json").read_text())
    with np.load(final / "index.npz") as z:
        source, affine = z["source"], z["affine"]
    images = np.load(final / "images.npy", mmap_mode="c")
    if images.shape[0] != len(source):
        shutil.rmtree(final, ignore_errors=True)      # inconsistent: rebuild
        return decode_split(items, image_size, folder, split, root)
    return Decoded(images, source, affine, meta, final, built)


# --- landmarks -------------------------------------------------------------------------------------

def resolve_landmarks(name: str, catalog: Catalog, config, layout_hint: str) -> tuple[Callable, str]:
    """A function ids -> (N, 68, 2) file-pixel landmarks, by ``data.landmarks``; and the source name."""
    choice = getattr(config, "landmarks", "auto") or "auto"
    if choice not in ("auto", "dataset", "dlib", "face-alignment", "none"):
        raise UserError(f"bad data.landmarks {choice!r}: expected auto, dataset, dlib, face-alignment or none")
    if choice == "none":
        return (lambda items: np.full((len(items), 68, 2), np.nan, np.float32)), "none"
    if choice in ("auto", "dataset") and catalog.own_landmarks:
        def own(items):
            out = np.full((len(items), 68, 2), np.nan, np.float32)
            for i, item in enumerate(items):
                if item.landmarks is not None:
                    out[i] = item.landmarks
            return out
        return own, "dataset"
    if choice == "dataset":
        raise UserError(f"{name} at {catalog.root} has no landmarks of its own; run `bench landmarks {name} "
                        f"--data-root {catalog.root}` and use --set data.landmarks=auto")
    detectors = ["dlib", "face-alignment"] if choice == "auto" else [choice]
    for det in detectors:
        cache = landmark_cache(name, catalog.root, det)
        if cache.exists():
            return (lambda items, cache=cache: cache.get([it.id for it in items])[0]), det
    raise UserError(f"no landmarks for {name} at {catalog.root}: run `bench landmarks {name} --data-root {catalog.root}"
                    f"{'' if choice == 'auto' else ' --detector ' + choice}` once (or --set data.landmarks=none to "
                    f"train without AU maps)")


# --- the whole pipeline -----------------------------------------------------------------------------

def _arrays(decoded: Decoded, items: list[Item], points: np.ndarray) -> Arrays:
    kept = [items[i] for i in decoded.source]
    labels = np.array([it.label for it in kept], dtype=np.int64)
    landmarks = map_landmarks(points[decoded.source], decoded.affine) if len(kept) else \
        np.zeros((0, 68, 2), np.float32)
    subjects = None
    if kept and all(it.subject is not None for it in kept):
        subjects = np.array([it.subject for it in kept])
    return Arrays(images=decoded.images, labels=labels, landmarks=landmarks, subjects=subjects)


def _take(a: Arrays, idx: np.ndarray) -> Arrays:
    return Arrays(images=np.ascontiguousarray(a.images[idx]), labels=a.labels[idx], landmarks=a.landmarks[idx],
                  subjects=None if a.subjects is None else a.subjects[idx])


def load_splits(name: str, catalog: Catalog, config, seed: int, layout_hint: str) -> Splits:
    """Decode (or reuse) every split, attach landmarks, carve validation from train."""
    folder = dataset_cache_dir(name, catalog.root)
    lookup, source = resolve_landmarks(name, catalog, config, layout_hint)
    arrays: dict[str, Arrays] = {}
    skipped: dict[str, int] = {}
    keys = []
    for split, items in catalog.splits.items():
        if not items:
            raise UserError(f"{name}: the {split} split at {catalog.root} has no images; expected {layout_hint}")
        decoded = decode_split(items, config.image_size, folder, split, catalog.root)
        meta = decoded.meta
        skipped[split] = int(meta["skipped"])
        limit = float(getattr(config, "max_skipped", 0.01))
        if meta["skipped"] > limit * meta["total"]:
            first = meta["errors"][0] if meta["errors"] else ("?", "?")
            raise UserError(f"{name} {split}: {meta['skipped']} of {meta['total']} images could not be read "
                            f"({100 * meta['skipped'] / meta['total']:.1f}% > data.max_skipped={limit:g}; first: "
                            f"{first[0]}: {first[1]}); repair or remove them, or raise --set data.max_skipped")
        arrays[split] = _arrays(decoded, items, lookup(items))
        keys.append(meta["key"])
    if "val" not in arrays:
        train = arrays["train"]
        keep, held = carve(train.labels, float(getattr(config, "val_fraction", 0.1)), seed, train.subjects)
        arrays["val"], arrays["train"] = _take(train, held), _take(train, keep)
        keys.append(hashlib.sha256(held.tobytes()).hexdigest()[:8])
    digest = hashlib.sha256(json.dumps([name, keys, source]).encode()).hexdigest()[:16]
    return Splits(train=arrays["train"], val=arrays["val"], test=arrays["test"], class_names=catalog.class_names,
                  fingerprint=digest, skipped=skipped)


def missing_landmarks(arrays: Arrays) -> int:
    """Images without usable landmarks (invalid for the AU loss and the cosine metrics)."""
    return int((~np.isfinite(arrays.landmarks).all(axis=(1, 2))).sum())


def preflight(name: str, config) -> None:
    """Raise the dataset's one-line UserError (no data, bad layout, no landmarks) before any trial
    starts; lists files only, decodes nothing. Datasets without a catalogue (synthetic) pass."""
    if name in CATALOGS:
        catalog = CATALOGS[name](config)
        resolve_landmarks(name, catalog, config, "its documented layout")
