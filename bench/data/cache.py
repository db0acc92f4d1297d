"""Decode once: real datasets become memory-mapped uint8 arrays, one cache entry per key, reused.

A dataset module lists its images as ``Item``s (file, label, optional face box, optional own
landmarks, optional subject) per split; ``load_splits`` turns that catalogue into ``Splits``:

1. every split is decoded, cropped to its box and resized to ``image_size`` once, into the entry
   ``<cache>/<dataset>/<split>-<key>/images.npy`` (``entries.py``: built under a lock into a
   temporary folder, ``COMPLETE`` last, renamed into place; other keys are kept). The key hashes
   the relative paths, sizes, content digests (``digests.py``), boxes and preprocessing
   parameters, never the root or mtimes: a copy of the data elsewhere reuses the entry, and any
   change of content gets its own. Decoding streams: images go to the file with ``pwrite`` as they are decoded, so the
   builder never holds the dataset in memory;
2. unreadable images (corrupt, truncated, zero bytes, missing) are skipped, counted and their
   paths recorded; past ``data.max_skipped`` of a split the run stops with one line. Their rows
   stay in the file as holes and the split simply does not index them;
3. landmarks (the dataset's own or a detector cache written by ``bench landmarks``) are mapped
   through the stored crop/resize of each image, so they match the decoded pixels, then sanitised
   (``sanitise.py``). They are not part of the key: re-detecting landmarks never re-decodes;
4. validation is carved from train (``bench/data/splits.py``) as a view: no pixel is copied.

Trials map ``images.npy`` read-only: the page cache holds it once per node. The cache folder is
``$BENCH_CACHE`` or ``~/.cache/au-cam-bench`` (never inside the data root, which may be read-only
or shared); ``bench cache list|prune`` shows and removes entries.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from au.codebook import CLASS_NAMES
from au.landmark_cache import LandmarkCache
from bench.data import entries
from bench.data.arrays import Arrays, RowView
from bench.data.digests import content_digests
from bench.data.npy import NpyWriter
from bench.data.registry import SPLITS, Splits, make_stats
from bench.data.sanitise import digest, sanitise, without_landmarks
from bench.data.splits import carve
from bench.errors import UserError

CACHE_VERSION = 2              # 2: rows of unreadable images stay as holes (no compaction)
RESAMPLE = "bilinear"          # antialiased in PIL when shrinking
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DECODE_WINDOW = 4              # decode tasks in flight per worker thread (bounds the builder's memory)
DECODE_CHUNK = 16              # images per decode task
LANDMARK_CHUNK = 1024          # landmarks mapped at a time (float64 temporaries of ~1 MiB)


@dataclass(slots=True)
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
    only if the dataset has an official one) and its class names. ``dropped`` counts the rows
    left out by label (per split, by code or folder name); ``options`` are the loader choices that
    change what the numbers mean (image variant, contempt), for the fingerprint."""

    splits: dict[str, list[Item]]
    class_names: tuple[str, ...] = CLASS_NAMES
    root: Path = Path(".")
    own_landmarks: bool = False
    notes: dict = field(default_factory=dict)
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    options: dict = field(default_factory=dict)


#: dataset name -> function(DataConfig) -> Catalog (used by the loaders and ``bench landmarks``).
CATALOGS: dict[str, Callable[..., Catalog]] = {}


def register_catalog(name: str):
    def wrap(fn):
        CATALOGS[name] = fn
        return fn
    return wrap


# --- locations ------------------------------------------------------------------------------------

def data_root(config, dataset: str, layout: str) -> Path:
    """``data.root`` or ``$BENCH_DATA``, resolved; a one-line error naming ``layout`` when unusable."""
    given = (getattr(config, "root", "") or "").strip()
    raw = given or os.environ.get("BENCH_DATA", "").strip()
    origin = "--data-root (or data.root)" if given else "BENCH_DATA"
    if not raw:
        raise UserError(f"{dataset} needs its data, which is licensed and never downloaded: give --data-root DIR "
                        f"(or --set data.root=DIR, or BENCH_DATA=DIR) pointing at {layout}")
    root = Path(raw).expanduser().resolve()
    if root.is_file():
        raise UserError(f"{dataset}: {origin} {root} is a file, not a folder; point it at the folder holding {layout}")
    if not root.is_dir():
        raise UserError(f"{dataset}: data root {root} (from {origin}) does not exist; point it at {layout}")
    return root


def cache_root() -> Path:
    raw = os.environ.get("BENCH_CACHE", "").strip()
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "au-cam-bench"


def decoded_dir(dataset: str) -> Path:
    """Decoded entries of a dataset, keyed by content (any copy of the data shares them)."""
    return cache_root() / dataset


def dataset_cache_dir(dataset: str, root: Path) -> Path:
    """What belongs to one root of a dataset (detected landmarks, a parsed annotation index)."""
    digest_ = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:10]
    return cache_root() / f"{dataset}-{digest_}"


def landmark_cache(dataset: str, root: Path, detector: str) -> LandmarkCache:
    return LandmarkCache(dataset_cache_dir(dataset, root) / f"landmarks-{detector}")


# --- decoding --------------------------------------------------------------------------------------

def digest_index(root: Path) -> Path:
    """Where the content digests of the files under ``root`` are remembered (``bench.data.digests``)."""
    return cache_root() / "digests" / f"{hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:10]}.json"


def cache_key(items: list[Item], image_size: int, root: Path) -> str:
    """Hash of everything that changes the decoded pixels: relative paths, sizes, content digests,
    boxes, parameters. Not the root or mtimes: a copy of the data elsewhere has the same key."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "size": image_size, "resample": RESAMPLE}).encode())
    contents = content_digests([item.path for item in items], digest_index(root))
    for item, (size, content) in zip(items, contents):
        try:
            rel = str(item.path.relative_to(root))
        except ValueError:
            rel = str(item.path)
        box = None if item.box is None else [round(float(v), 3) for v in item.box]
        h.update(json.dumps([rel, size, content, box]).encode())
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
    """Decode workers: the CPUs this process may use (its affinity, e.g. a Slurm or Ray allotment), at most 16."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(16, cpus))


def _decoder(items: list[Item], image_size: int, meta: dict):
    """The entry builder: decode every item into ``images.npy`` (row i = item i), streaming, in
    parallel (``decode_pool``: forked workers each decode and ``pwrite`` a shard of rows)."""
    from bench.data.decode_pool import decode_rows, make_pool

    def build(tmp: Path) -> dict:
        n = len(items)
        affine = np.zeros((n, 4), dtype=np.float64)
        ok = np.zeros(n, dtype=bool)
        errors: list[tuple[int, str]] = []
        with NpyWriter(tmp / "images.npy", (n, image_size, image_size, 3)) as out:
            def collect(results) -> None:
                for i, row_affine, error in results:
                    if error is None:
                        affine[i], ok[i] = row_affine, True
                    else:
                        errors.append((i, error))

            workers = _workers()
            chunk = max(DECODE_CHUNK, min(256, -(-n // (workers * 8))))       # a few shards per worker, at least
            with make_pool(workers) as pool:
                pending: deque = deque()
                for start in range(0, n, chunk):            # bounded: never one future per image
                    rows = [(i, items[i].path, items[i].box) for i in range(start, min(start + chunk, n))]
                    pending.append(pool.submit(decode_rows, str(out.path), out.offset, image_size, rows))
                    if len(pending) >= DECODE_WINDOW * workers:
                        collect(pending.popleft().result())
                while pending:
                    collect(pending.popleft().result())
        kept = np.flatnonzero(ok)
        np.savez(tmp / "index.npz", source=kept, affine=affine[kept])
        errors.sort()
        return {**meta, "image_set": entries.image_set((item.path for item in items), Path(meta["root"])),
                "total": n, "kept": int(len(kept)), "skipped": n - int(len(kept)),
                "skipped_paths": [str(items[i].path) for i, _ in errors],
                "errors": [(items[i].id, message) for i, message in errors[:20]]}
    return build


@dataclass
class Decoded:
    images: RowView             # (M, S, S, 3) uint8: the kept rows of the memory-mapped file
    source: np.ndarray          # (M,) index of each row into the split's item list
    affine: np.ndarray          # (M, 4) file pixels -> decoded pixels
    meta: dict
    folder: Path
    built: bool                 # True when this call built the entry


def decode_split(items: list[Item], image_size: int, folder: Path, split: str, root: Path,
                 dataset: str = "", options: dict | None = None) -> Decoded:
    """The decoded split from its entry under ``folder`` (built there first if absent or torn)."""
    key = cache_key(items, image_size, root)
    entry = folder / f"{split}-{key}"
    meta = {"dataset": dataset or folder.name.rsplit("-", 1)[0], "split": split, "key": key,
            "image_size": image_size, "root": str(root),
            "cropped": any(item.box is not None for item in items), "options": options}
    built = False
    for attempt in range(2):
        built = entries.ensure(entry, _decoder(items, image_size, meta)) or built
        try:
            meta = entries.read_meta(entry)
            with np.load(entry / "index.npz") as z:
                source, affine = z["source"], z["affine"]
            store = np.load(entry / "images.npy", mmap_mode="r")
            if store.shape[0] != len(items) or len(source) != meta["kept"]:
                raise ValueError("inconsistent entry")
            break
        except (OSError, ValueError, KeyError):     # pruned meanwhile, or damaged: build it again
            if attempt:
                raise
            entries._discard(entry)
    entries.touch(entry)
    return Decoded(RowView(store, source), source, affine, meta, entry, built)


# --- landmarks -------------------------------------------------------------------------------------

def resolve_landmarks(name: str, catalog: Catalog, config, layout_hint: str) -> tuple[Callable, str]:
    """A function items -> (N, 68, 2) file-pixel landmarks, by ``data.landmarks``; and the source name."""
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
                        f"--data-root {catalog.root} --profile <your run's profile>` and use --set data.landmarks=auto")
    detectors = ["dlib", "face-alignment"] if choice == "auto" else [choice]
    for det in detectors:
        cache = landmark_cache(name, catalog.root, det)
        if cache.exists():
            return (lambda items, cache=cache: cache.get([it.id for it in items])[0]), det
    raise UserError(f"no landmarks for {name} at {catalog.root}: run `bench landmarks {name} --data-root {catalog.root}"
                    f"{'' if choice == 'auto' else ' --detector ' + choice} --profile <your run's profile>` once, so "
                    f"the same images are detected (or --set data.landmarks=none to train without AU maps)")


# --- the whole pipeline -----------------------------------------------------------------------------

def _arrays(decoded: Decoded, items: list[Item], points: np.ndarray, image_size: int) -> Arrays:
    """The split's arrays; landmarks mapped into the decoded frame and sanitised in chunks, so the
    temporaries stay small on AffectNet-sized splits."""
    source = decoded.source
    labels = np.fromiter((items[i].label for i in source), dtype=np.int64, count=len(source))
    landmarks = np.empty((len(source), 68, 2), dtype=np.float32)
    for start in range(0, len(source), LANDMARK_CHUNK):
        rows = slice(start, start + LANDMARK_CHUNK)
        landmarks[rows] = map_landmarks(points[source[rows]], decoded.affine[rows])
    sanitise(landmarks, image_size, inplace=True)
    subjects = None
    if len(source) and all(items[i].subject is not None for i in source):
        subjects = np.array([items[i].subject for i in source])
    return Arrays(images=decoded.images, labels=labels, landmarks=landmarks, subjects=subjects)


def _check_skipped(name: str, split: str, meta: dict, limit: float) -> None:
    if meta["skipped"] > limit * meta["total"]:
        first = meta["errors"][0] if meta["errors"] else ("?", "?")
        path = meta["skipped_paths"][0] if meta.get("skipped_paths") else first[0]
        raise UserError(f"{name} {split}: {meta['skipped']} of {meta['total']} images could not be read "
                        f"({100 * meta['skipped'] / meta['total']:.1f}% > data.max_skipped={limit:g}; first: "
                        f"{path}: {first[1]}); repair or remove them, or raise --set data.max_skipped")


def load_splits(name: str, catalog: Catalog, config, seed: int, layout_hint: str) -> Splits:
    """Decode (or reuse) every split, attach sanitised landmarks, carve validation from train."""
    folder = decoded_dir(name)
    lookup, source = resolve_landmarks(name, catalog, config, layout_hint)
    arrays: dict[str, Arrays] = {}
    skipped: dict[str, int] = {}
    skipped_paths: dict[str, list[str]] = {}
    identity: dict[str, list[str]] = {}
    for split, items in catalog.splits.items():
        if not items:
            raise UserError(f"{name}: the {split} split at {catalog.root} has no images; expected {layout_hint}")
        decoded = decode_split(items, config.image_size, folder, split, catalog.root, name, catalog.options)
        meta = decoded.meta
        skipped[split], skipped_paths[split] = int(meta["skipped"]), list(meta.get("skipped_paths", []))
        _check_skipped(name, split, meta, float(getattr(config, "max_skipped", 0.01)))
        arrays[split] = _arrays(decoded, items, lookup(items), config.image_size)
        identity[split] = [meta["key"], digest(arrays[split].labels)]
    carved = None
    if "val" not in arrays:
        train = arrays["train"]
        fraction = float(getattr(config, "val_fraction", 0.1))
        keep, held = carve(train.labels, fraction, seed, train.subjects)
        arrays["val"], arrays["train"] = train.take(held), train.take(keep)
        carved = [fraction, digest(held)]
    landmark_digest = digest(*(arrays[s].landmarks for s in SPLITS))
    fingerprint = hashlib.sha256(json.dumps({
        "dataset": name, "version": CACHE_VERSION, "resample": RESAMPLE,
        "image_size": config.image_size, "options": catalog.options, "classes": list(catalog.class_names),
        "splits": identity, "landmarks": [source, landmark_digest], "carve": carved,
    }, sort_keys=True, default=str).encode()).hexdigest()[:16]
    stats = make_stats(name, str(catalog.root), source, landmark_digest, arrays,
                       {s: without_landmarks(arrays[s].landmarks) for s in SPLITS},
                       _dropped_by_split(catalog.dropped), skipped, skipped_paths)
    return Splits(train=arrays["train"], val=arrays["val"], test=arrays["test"], class_names=catalog.class_names,
                  fingerprint=fingerprint, skipped=skipped, stats=stats)


def _dropped_by_split(dropped: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Rows dropped by label, as train/test: an official validation split's drops count as train's."""
    out: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    for split, counts in dropped.items():
        target = out["test" if split == "test" else "train"]
        for code, n in counts.items():
            target[str(code)] = target.get(str(code), 0) + int(n)
    return out


def missing_landmarks(arrays: Arrays) -> int:
    """Images without usable landmarks (invalid for the AU loss and the cosine metrics)."""
    return without_landmarks(arrays.landmarks)


def preflight(name: str, config) -> None:
    """Raise the dataset's one-line UserError (no data, bad layout, no landmarks) before any trial
    starts; lists files only, decodes nothing. Datasets without a catalogue (synthetic) pass."""
    if name in CATALOGS:
        catalog = CATALOGS[name](config)
        resolve_landmarks(name, catalog, config, "its documented layout")
