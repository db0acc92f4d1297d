"""``bench landmarks DATASET``: detect 68 points for every image once and cache them (resumable).

Training never runs a detector; it reads this cache (``bench/data/cache.py``). Images already in
the cache are skipped, results are flushed every ``FLUSH_EVERY`` images, so an interrupted run
resumes where it stopped. Faces are searched inside the dataset's own face box when it has one.
"""
from __future__ import annotations

import time
from typing import List, Optional

import typer
from rich.console import Console

from bench.errors import UserError

console = Console(stderr=True, soft_wrap=True)
FLUSH_EVERY = 256
FLUSH_SECONDS = 30.0
SHOW_UNREADABLE = 20         # unreadable files named in the summary (all are in the returned dict)


def register(app: typer.Typer) -> None:
    app.command("landmarks")(landmarks)


def landmarks(
    dataset: str = typer.Argument(..., help="Dataset whose images get landmarks: rafdb | affectnet | folder."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Dataset folder (default: $BENCH_DATA)."),
    detector: str = typer.Option("dlib", help="dlib (offline) | face-alignment (needs its weights cached)."),
    profile: str = typer.Option("paper", help="Profile whose data options select the images (e.g. rafdb_images)."),
    set_: List[str] = typer.Option([], "--set", help="Override a config field: key=value (repeatable)."),
    device: str = typer.Option("cpu", help="face-alignment: torch device."),
) -> None:
    """Detect 68 iBUG landmarks for every image of DATASET and write its landmark cache."""
    from bench.config.settings import parse_override, resolve
    from bench.data.cache import CATALOGS

    overrides = [parse_override(s) for s in set_]
    if data_root:
        overrides.append(("data.root", data_root))
    config = resolve(profile, overrides)
    if dataset not in CATALOGS:
        raise UserError(f"bench landmarks works on {', '.join(sorted(CATALOGS))}, not {dataset!r} "
                        "(synthetic faces come with exact landmarks)")
    catalog = CATALOGS[dataset](config.data)
    summary = extract(catalog, dataset, detector, device)
    console.print(f"{dataset}: {summary['images']} images in {summary['cache']}: {summary['found']} found, "
                  f"{summary['missed']} missed, {summary['several']} with several faces "
                  f"({summary['new']} detected now, {summary['unreadable']} unreadable)")
    shown = summary["unreadable_paths"][:SHOW_UNREADABLE]
    for path, error in shown:
        console.print(f"  unreadable: {path}: {error}")
    if summary["unreadable"] > len(shown):
        console.print(f"  ... and {summary['unreadable'] - len(shown)} more unreadable (rerun after repairing them; "
                      "they are retried, never cached)")


def extract(catalog, dataset: str, detector_name: str, device: str = "cpu", progress: bool = True) -> dict:
    """Run the detector over the catalogue's images missing from the cache; returns the summary."""
    import numpy as np
    from PIL import Image
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from au.detectors import DetectorUnavailable, make_detector
    from bench.data.cache import landmark_cache

    cache = landmark_cache(dataset, catalog.root, detector_name)
    done = cache.ids()
    items = {it.id: it for split in catalog.splits.values() for it in split}
    todo = [it for key, it in sorted(items.items()) if key not in done]
    unreadable: list[tuple[str, str]] = []
    if todo:
        try:
            detector = make_detector(detector_name, device)
        except DetectorUnavailable as exc:
            raise UserError(str(exc)) from None
        cache.write_meta({"dataset": dataset, "detector": detector_name, "root": str(catalog.root),
                          "coordinates": "file pixels, x right, y down, 0-based pixel centres"})
        ids, points, faces = [], [], []
        last = time.monotonic()
        columns = [TextColumn(f"{dataset} landmarks ({detector_name})"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn()]
        with Progress(*columns, console=console, disable=not progress) as bar:
            task = bar.add_task("detect", total=len(todo))
            for item in todo:
                try:
                    with Image.open(item.path) as im:
                        image = np.asarray(im.convert("RGB"))
                except Exception as exc:       # unreadable: left out of the cache, so a later run retries it
                    unreadable.append((str(item.path), " ".join(f"{type(exc).__name__}: {exc}".split())))
                    bar.advance(task)
                    continue
                region = item.box if item.box is not None and np.isfinite(item.box).all() else None
                found = detector.detect(image, region)
                ids.append(item.id)
                points.append(found.points if found.points is not None else np.full((68, 2), np.nan, np.float32))
                faces.append(found.faces)
                bar.advance(task)
                if len(ids) >= FLUSH_EVERY or time.monotonic() - last > FLUSH_SECONDS:
                    cache.append(ids, np.stack(points), faces)
                    ids, points, faces, last = [], [], [], time.monotonic()
            if ids:
                cache.append(ids, np.stack(points), faces)
        cache.compact()
    summary = cache.summary()
    return {**summary, "new": len(todo) - len(unreadable), "unreadable": len(unreadable),
            "unreadable_paths": unreadable, "cache": str(cache.directory)}
