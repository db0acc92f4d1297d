"""A dataset's landmark cache: image id -> 68x2 float32 (NaN where no face was found).

Detection is slow (hours on AffectNet), so the cache is append-only and resumable: each flush
writes one shard (``shard-<time>-<host>.<pid>.<random>.npz`` holding ids, points and the number of
faces seen) through a temporary file and ``os.replace``, so a crash loses at most the unflushed
images, a reader never sees half a shard, and processes on several nodes can append to the same
cache at once (``bench landmarks`` coordinates them so that no image is detected twice; ``refresh``
reads what the others wrote). Later shards win when an id repeats. Training only reads this cache.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import time
import zipfile
from pathlib import Path

import numpy as np

NUM_POINTS = 68


def _unique_tag() -> str:
    """``<host>.<pid>.<random>``: unique across hosts (on a shared filesystem pids repeat across
    nodes). Same scheme as ``bench.files.unique_temp_name``, which ``au`` cannot import."""
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname() or "host")[:64]
    return f"{host}.{os.getpid()}.{secrets.token_hex(4)}"


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp.{_unique_tag()}")


def _atomic_write_bytes(path: Path, write) -> None:
    tmp = _temp_name(path)
    try:
        with open(tmp, "xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class LandmarkCache:
    """Shards of detected landmarks under one directory (one directory per dataset and detector)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self._points: dict[str, np.ndarray] | None = None
        self._faces: dict[str, int] | None = None
        self._seen: set[str] = set()          # shard file names already read

    # --- reading -----------------------------------------------------------------------------
    def _load(self) -> None:
        self._points, self._faces, self._seen = {}, {}, set()
        self.refresh()

    def refresh(self) -> int:
        """Read the shards written since the last read (by this or any other process); returns how
        many. Detection workers call it before each batch, so they skip what others have done."""
        if self._points is None:
            self._points, self._faces, self._seen = {}, {}, set()
        read = 0
        if self.directory.is_dir():
            for shard in sorted(self.directory.glob("shard-*.npz")):
                if shard.name in self._seen:
                    continue
                try:
                    with np.load(shard, allow_pickle=False) as z:
                        ids, pts, n = z["ids"], z["points"], z["faces"]
                except FileNotFoundError:
                    continue          # merged away by a compaction meanwhile: its ids are in the merged shard
                except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                    self._seen.add(shard.name)
                    continue          # unreadable shard: its images are simply detected again
                self._seen.add(shard.name)
                read += 1
                for i, key in enumerate(ids.tolist()):
                    self._points[key] = pts[i]
                    self._faces[key] = int(n[i])
        return read

    def exists(self) -> bool:
        return self.directory.is_dir() and any(self.directory.glob("shard-*.npz"))

    def ids(self) -> set[str]:
        if self._points is None:
            self._load()
        return set(self._points)

    def has(self, key: str) -> bool:
        """Whether ``key`` is in the cache as last read (``refresh`` reads newer shards)."""
        if self._points is None:
            self._load()
        return key in self._points

    def get(self, ids: list[str]) -> tuple[np.ndarray, int]:
        """(len(ids), 68, 2) float32, NaN for ids not in the cache or without a face; and #absent."""
        if self._points is None:
            self._load()
        out = np.full((len(ids), NUM_POINTS, 2), np.nan, dtype=np.float32)
        absent = 0
        for i, key in enumerate(ids):
            p = self._points.get(key)
            if p is None:
                absent += 1
            else:
                out[i] = p
        return out, absent

    def summary(self) -> dict[str, int]:
        """Counts over every cached image: found, missed (no face), several (more than one face)."""
        if self._points is None:
            self._load()
        found = sum(1 for p in self._points.values() if np.isfinite(p).all())
        several = sum(1 for n in self._faces.values() if n > 1)
        return {"images": len(self._points), "found": found, "missed": len(self._points) - found,
                "several": several}

    # --- writing -----------------------------------------------------------------------------
    def append(self, ids: list[str], points: np.ndarray, faces: list[int] | np.ndarray) -> Path | None:
        """Write one shard atomically; ``points`` (N, 68, 2) with NaN rows for missed faces."""
        if not ids:
            return None
        points = np.asarray(points, dtype=np.float32).reshape(len(ids), NUM_POINTS, 2)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"shard-{time.time_ns():020d}-{_unique_tag()}.npz"
        arrays = {"ids": np.asarray(ids, dtype=str), "points": points,
                  "faces": np.asarray(faces, dtype=np.int16)}
        _atomic_write_bytes(path, lambda fh: np.savez(fh, **arrays))
        if self._points is not None:
            self._seen.add(path.name)
            for i, key in enumerate(ids):
                self._points[key] = points[i]
                self._faces[key] = int(arrays["faces"][i])
        return path

    def write_meta(self, meta: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        blob = json.dumps(meta, indent=1, sort_keys=True).encode()
        _atomic_write_bytes(self.directory / "meta.json", lambda fh: fh.write(blob))

    def compact(self) -> None:
        """Merge all shards into one (written before the old ones are removed, so nothing is lost)."""
        shards = sorted(self.directory.glob("shard-*.npz"))
        if len(shards) <= 1:
            return
        self._load()
        ids = sorted(self._points)
        merged = self.append(ids, np.stack([self._points[k] for k in ids]), [self._faces[k] for k in ids])
        for shard in shards:
            if shard != merged:
                shard.unlink(missing_ok=True)


def read_landmarks_json(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A ``{image id: [[x, y] * 68] | null}`` JSON file (e.g. JAFFE's landmarks.json) as arrays."""
    raw = json.loads(Path(path).read_text())
    out = {}
    for key, value in raw.items():
        pts = np.full((NUM_POINTS, 2), np.nan, dtype=np.float32)
        if value is not None:
            arr = np.asarray(value, dtype=np.float32)
            if arr.size == NUM_POINTS * 2:
                pts = arr.reshape(NUM_POINTS, 2)
        out[key] = pts
    return out
