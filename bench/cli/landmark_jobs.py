"""The detection work of ``bench landmarks``: chunks of images claimed under a lock, detected in this
process or by Ray actors across a cluster, appended to the dataset's resumable landmark cache.

The catalogue's images, sorted by id, are cut into chunks of ``CHUNK`` images. A chunk's lock is
named by a digest of its ids, so every invocation on the same images (on another node, or a rerun)
agrees on it. A worker takes the chunk's lock (first without waiting), re-reads the cache (shards
anyone wrote since), detects only the chunk's images still absent, appends them as one shard and
releases the lock. Hence:

- two invocations at once never detect the same image: the second finds the chunk locked, does
  other chunks, and comes back to it at the end (waiting for the lock), when it is complete;
- a killed run loses at most the chunks in flight, and a rerun skips everything in the cache.

Workers are Ray actors (each loads its detector once) fed one chunk at a time, at most two in
flight each, so fast and slow workers balance; with ``--workers 1`` and no ``--address`` all of it
runs in this process (for debugging). Locks come from ``bench.files`` (``flock``, or lock files on
filesystems without it; ``BENCH_LOCKS=file`` on NFS, where ``flock`` locks one node only).
"""
from __future__ import annotations

import hashlib
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from bench.errors import UserError
from bench.files import exclusive_lock

CHUNK = 64                  # images per chunk: one lock, one shard, the most a kill can lose per worker
BATCH = 16                  # images read and handed to the detector at a time (bounds worker memory)
IN_FLIGHT = 2               # chunks queued per Ray worker


@dataclass(frozen=True)
class Chunk:
    index: int
    rows: tuple[tuple[str, str, tuple | None], ...]     # (image id, path, face box or None)

    @property
    def claim(self) -> str:
        return hashlib.sha256("\n".join(r[0] for r in self.rows).encode()).hexdigest()[:24]


def make_chunks(items, size: int | None = None) -> list[Chunk]:
    """All of a catalogue's items (any order, any splits) as chunks of ``size`` ids in id order."""
    size = size or CHUNK
    rows = []
    for item in sorted({it.id: it for it in items}.values(), key=lambda it: it.id):
        box = item.box if item.box is not None and np.isfinite(item.box).all() else None
        rows.append((item.id, str(item.path), None if box is None else tuple(float(v) for v in box[:4])))
    return [Chunk(i, tuple(rows[s:s + size])) for i, s in enumerate(range(0, len(rows), size))]


def claim_path(cache_dir: Path, chunk: Chunk) -> Path:
    return Path(cache_dir) / ".claims" / f"{chunk.claim}.lock"


def _read(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


class ChunkWorker:
    """Detects chunks into one landmark cache; a plain object in-process, a Ray actor on a cluster."""

    def __init__(self, cache_dir: str, detector, device: str = "cpu"):
        """``detector``: a detector name (built here: a Ray actor loads its own) or a built detector."""
        import au.detectors as detectors
        from au.landmark_cache import LandmarkCache

        self.cache = LandmarkCache(cache_dir)
        self.detector = detectors.make_detector(detector, device) if isinstance(detector, str) else detector

    def ready(self) -> bool:
        return True

    def run(self, chunk: Chunk, wait: bool) -> dict:
        """Detect the chunk's absent images under its lock; ``busy`` when held and ``wait`` is False."""
        with exclusive_lock(claim_path(self.cache.directory, chunk), wait=wait) as got:
            if not got:
                return {"index": chunk.index, "busy": True}
            self.cache.refresh()
            todo = [row for row in chunk.rows if not self.cache.has(row[0])]
            ids: list[str] = []
            points: list[np.ndarray] = []
            faces: list[int] = []
            unreadable: list[tuple[str, str]] = []
            start = time.perf_counter()
            for s in range(0, len(todo), BATCH):
                images, regions, keys = [], [], []
                for key, path, box in todo[s:s + BATCH]:
                    try:
                        images.append(_read(path))
                    except Exception as exc:     # unreadable: left out of the cache, so a later run retries it
                        unreadable.append((path, _one_line(exc)))
                        continue
                    regions.append(box)
                    keys.append(key)
                for key, found in zip(keys, detect_batch(self.detector, images, regions)):
                    ids.append(key)
                    points.append(found.points if found.points is not None else np.full((68, 2), np.nan, np.float32))
                    faces.append(found.faces)
            if ids:
                self.cache.append(ids, np.stack(points), faces)
        return {"index": chunk.index, "busy": False, "detected": len(ids), "unreadable": unreadable,
                "seconds": time.perf_counter() - start}


def detect_batch(detector, images: list[np.ndarray], regions: list) -> list:
    """The detector's own batched call where it has one, else one image at a time."""
    if hasattr(detector, "detect_batch"):
        return detector.detect_batch(images, regions)
    return [detector.detect(image, region) for image, region in zip(images, regions)]


# --- executors ------------------------------------------------------------------------------------

class InProcess:
    """One worker in this process: chunks run one by one as they are submitted."""

    capacity = 1

    def __init__(self, worker: ChunkWorker):
        self.worker, self.pending = worker, deque()

    def submit(self, chunk: Chunk, wait: bool) -> None:
        self.pending.append((chunk, wait))

    def next_done(self) -> dict:
        return self.worker.run(*self.pending.popleft())

    def close(self) -> None:
        pass


class RayActors:
    """``workers`` Ray actors, each with ``cpus``/``gpus`` and its own detector, fed chunk by chunk."""

    def __init__(self, cache_dir: str, detector: str, device: str, workers: int, address: str | None,
                 cpus: float, gpus: float):
        from bench.sweep.executors import init_ray

        init_ray(address)
        import ray

        self.ray = ray
        have = ray.cluster_resources()
        for kind, each in (("CPU", cpus), ("GPU", gpus)):
            if each > 0 and workers * each > have.get(kind, 0):
                raise UserError(f"--workers {workers} x --{kind.lower()}s-per-task {each:g} needs {workers * each:g} "
                                f"{kind}s but the Ray cluster has {have.get(kind, 0):g}; lower --workers (Ray would "
                                "leave the other workers pending forever)")
        actor = ray.remote(ChunkWorker).options(num_cpus=cpus, num_gpus=gpus)
        self.actors = [actor.remote(cache_dir, detector, device) for _ in range(workers)]
        ray.get([a.ready.remote() for a in self.actors])      # detectors loaded: timing starts after
        self.load = {i: 0 for i in range(workers)}
        self.flight: dict = {}
        self.capacity = IN_FLIGHT * workers

    def submit(self, chunk: Chunk, wait: bool) -> None:
        i = min(self.load, key=self.load.get)
        self.load[i] += 1
        self.flight[self.actors[i].run.remote(chunk, wait)] = i

    def next_done(self) -> dict:
        done, _ = self.ray.wait(list(self.flight), num_returns=1)
        self.load[self.flight.pop(done[0])] -= 1
        return self.ray.get(done[0])

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)


# --- the driver -----------------------------------------------------------------------------------

def detect_missing(chunks: list[Chunk], missing: dict[int, int], pool, on_done: Callable[[int, dict], None]) -> None:
    """Run every chunk with absent images through ``pool``: first without waiting for a chunk another
    process holds, then those again, waiting (by then they are usually complete)."""
    by_index = {c.index: c for c in chunks}
    queue = deque((c, False) for c in chunks if missing.get(c.index))
    flying = 0
    while queue or flying:
        while queue and flying < pool.capacity:
            pool.submit(*queue.popleft())
            flying += 1
        result = pool.next_done()
        flying -= 1
        if result["busy"]:
            queue.append((by_index[result["index"]], True))
            continue
        on_done(missing[result["index"]], result)
