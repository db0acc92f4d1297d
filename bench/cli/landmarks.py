"""``bench landmarks DATASET``: detect 68 points for every image once and cache them (resumable).

Training never runs a detector; it reads this cache (``bench/data/cache.py``). The dataset's data
options are resolved exactly as ``bench run`` resolves them for that dataset and profile (its
``[datasets.<name>.data]`` table included, e.g. the paper profile's RAF-DB ``original`` images), and
the image set and root are printed. Detection runs in chunks under locks (``landmark_jobs.py``): in
this process with ``--workers 1``, or as Ray actors (``--workers N``, ``--address``); images
already in the cache are skipped, so an interrupted run resumes and two runs never detect an image
twice. Faces are searched inside the dataset's own face box when it has one.
"""
from __future__ import annotations

import time
from typing import List, Optional

import typer
from rich.console import Console

from bench.errors import UserError

console = Console(stderr=True, soft_wrap=True)
SHOW_UNREADABLE = 20         # unreadable files named in the summary (all are in the returned dict)


def register(app: typer.Typer) -> None:
    app.command("landmarks")(landmarks)


def landmarks(
    dataset: str = typer.Argument(..., help="Dataset whose images get landmarks: rafdb | affectnet | folder."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Dataset folder (default: $BENCH_DATA)."),
    detector: str = typer.Option("dlib", help="dlib (offline) | face-alignment (needs its weights cached)."),
    profile: str = typer.Option("paper", help="Profile whose data options (with its per-dataset table) select "
                                "the images, as in `bench run --profile`."),
    set_: List[str] = typer.Option([], "--set", help="Override a config field: key=value (repeatable)."),
    device: str = typer.Option("cpu", help="face-alignment: torch device."),
    workers: int = typer.Option(1, "--workers", min=1, help="Detection workers; above 1 (or with --address) "
                                "they are Ray actors."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster to join (auto | host:port)."),
    cpus_per_task: float = typer.Option(1.0, "--cpus-per-task", help="CPUs per Ray worker."),
    gpus_per_task: float = typer.Option(0.0, "--gpus-per-task", help="GPUs per Ray worker (face-alignment)."),
) -> None:
    """Detect 68 iBUG landmarks for every image of DATASET and write its landmark cache."""
    from bench.config.settings import parse_override, resolve
    from bench.data.cache import CATALOGS

    overrides = [parse_override(s) for s in set_]
    if data_root:
        overrides.append(("data.root", data_root))
    if dataset not in CATALOGS:
        raise UserError(f"bench landmarks works on {', '.join(sorted(CATALOGS))}, not {dataset!r} "
                        "(synthetic faces come with exact landmarks)")
    config = resolve(profile, overrides, dataset)
    catalog = CATALOGS[dataset](config.data)
    options = ", ".join(f"{k}={v}" for k, v in sorted(catalog.options.items())) or "default images"
    console.print(f"{dataset}: detecting on {catalog.root} ({options}; profile {profile}) with {detector}")
    summary = extract(catalog, dataset, detector, device, workers=workers, address=address,
                      cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task)
    rate = f", {summary['rate']:.1f} images/s" if summary.get("rate") else ""
    console.print(f"{dataset}: {summary['images']} images in {summary['cache']}: {summary['found']} found, "
                  f"{summary['missed']} missed, {summary['several']} with several faces "
                  f"({summary['new']} detected now{rate}, {summary['unreadable']} unreadable)")
    shown = summary["unreadable_paths"][:SHOW_UNREADABLE]
    for path, error in shown:
        console.print(f"  unreadable: {path}: {error}")
    if summary["unreadable"] > len(shown):
        console.print(f"  ... and {summary['unreadable'] - len(shown)} more unreadable (rerun after repairing them; "
                      "they are retried, never cached)")


def extract(catalog, dataset: str, detector_name: str, device: str = "cpu", progress: bool = True,
            workers: int = 1, address: str | None = None, cpus_per_task: float = 1.0,
            gpus_per_task: float = 0.0) -> dict:
    """Detect the catalogue's images missing from the cache; returns the summary (and ``rate``:
    images detected per second by this call, worker start-up excluded)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    import au.detectors as detectors
    from bench.cli import landmark_jobs as jobs
    from bench.data.cache import landmark_cache
    from bench.files import exclusive_lock

    cache = landmark_cache(dataset, catalog.root, detector_name)
    chunks = jobs.make_chunks([it for split in catalog.splits.values() for it in split])
    missing = {c.index: sum(1 for row in c.rows if not cache.has(row[0])) for c in chunks}
    todo = sum(missing.values())
    new, unreadable, rate = 0, [], 0.0
    if todo:
        try:
            probe = detectors.make_detector(detector_name, "cpu" if workers > 1 or address else device)
        except detectors.DetectorUnavailable as exc:
            raise UserError(str(exc)) from None
        if workers == 1 and not address:
            pool = jobs.InProcess(jobs.ChunkWorker(str(cache.directory), probe))
        else:
            del probe
            pool = jobs.RayActors(str(cache.directory), detector_name, device, workers, address,
                                  cpus_per_task, gpus_per_task)
        cache.write_meta({"dataset": dataset, "detector": detector_name, "root": str(catalog.root),
                          "options": catalog.options,
                          "coordinates": "file pixels, x right, y down, 0-based pixel centres"})
        columns = [TextColumn(f"{dataset} landmarks ({detector_name}, {workers} worker{'s' * (workers > 1)})"),
                   BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeRemainingColumn()]
        start = time.perf_counter()                  # workers are ready: start-up is not in the rate
        with Progress(*columns, console=console, disable=not progress) as bar:
            task = bar.add_task("detect", total=todo, rate="")

            def done(expected: int, result: dict) -> None:
                nonlocal new
                new += result["detected"]
                unreadable.extend(result["unreadable"])
                speed = new / max(time.perf_counter() - start, 1e-9)
                bar.update(task, advance=expected, rate=f"{speed:.1f} images/s")

            try:
                jobs.detect_missing(chunks, missing, pool, done)
            finally:
                pool.close()
        rate = new / max(time.perf_counter() - start, 1e-9)
        with exclusive_lock(cache.directory / ".compact.lock", wait=False) as free:
            if free:
                cache.compact()              # one shard; another run compacting now is left alone
    final = landmark_cache(dataset, catalog.root, detector_name)
    return {**final.summary(), "new": new, "unreadable": len(unreadable), "unreadable_paths": unreadable,
            "cache": str(final.directory), "rate": rate}
