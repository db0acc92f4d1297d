"""Result store: one JSON file per trial, written atomically; polars reads them back.

Layout: ``<results>/<run>/trials/<spec id>.json`` with the spec, status (ok | failed), error,
result rows (one per evaluated method), timings and provenance; ``<results>/<run>/maps/<spec id>.npz``
holds the trial's per-class average maps and gallery faces for figures. A file is written to a temporary
name in the same folder and renamed, so a reader never sees half a file and nothing finished is
lost if the process dies. Unreadable files are reported and ignored (their trial reruns).
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bench.plan.spec import TrialSpec


def process_umask() -> int:
    """The umask, read without changing it (``os.umask`` can only be read by setting it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write) -> None:
    """Write through ``write(binary file)`` to a temporary name beside ``path``, then rename.

    The file gets the permissions of a plain ``open`` (0666 minus the umask): ``mkstemp`` makes
    it owner-only, and collaborators on a shared results folder must be able to read it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fchmod(fh.fileno(), 0o666 & ~process_umask())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode()))


class RunStore:
    def __init__(self, run_dir: Path | str):
        self.run_dir = Path(run_dir)
        self.trials_dir = self.run_dir / "trials"
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.maps_dir = self.run_dir / "maps"

    def trial_path(self, spec_id: str) -> Path:
        return self.trials_dir / f"{spec_id}.json"

    def checkpoint_path(self, spec_id: str) -> Path:
        return self.checkpoint_dir / f"{spec_id}.pt"

    def maps_path(self, spec_id: str) -> Path:
        return self.maps_dir / f"{spec_id}.npz"

    def write_maps(self, spec_id: str, arrays: dict[str, np.ndarray]) -> Path:
        """Figure arrays of one trial (``bench.metrics.base.FigureMaps``), written atomically like records."""
        path = self.maps_path(spec_id)
        atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))
        return path

    def read_maps(self, spec_id: str) -> dict[str, np.ndarray] | None:
        """The trial's figure arrays, or None when the trial has none (older runs, failed trials)."""
        path = self.maps_path(spec_id)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError) as exc:
            warnings.warn(f"ignoring unreadable map file {path} ({exc})")
            return None

    def write(self, spec: TrialSpec, status: str, rows: list[dict[str, Any]], *, error: str | None = None,
              timings: dict[str, float] | None = None, provenance: dict[str, Any] | None = None,
              history: list[dict[str, Any]] | None = None, data: dict[str, Any] | None = None,
              identity: dict[str, Any] | None = None) -> Path:
        record = {
            "id": spec.id, "spec": spec.to_dict(), "setting": spec.setting, "status": status, "error": error,
            "rows": rows, "timings": timings or {}, "provenance": provenance or {},
            "history": history or [], "data": data or {}, "identity": identity or {},
        }
        path = self.trial_path(spec.id)
        atomic_write_text(path, json.dumps(record, indent=1, default=str))
        return path

    def records(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.trials_dir.glob("*.json")):
            try:
                record = json.loads(path.read_text())
                if not isinstance(record, dict) or "status" not in record:
                    raise ValueError("not a trial record")
            except (OSError, ValueError) as exc:
                warnings.warn(f"ignoring unreadable result file {path} ({exc}); its trial will rerun")
                continue
            out.append(record)
        return out

    def finished_ids(self) -> set[str]:
        """Trials whose every row is ok: a failed trial, or one with a failed extractor row, is run
        again by the next ``bench run``."""
        return {r["id"] for r in self.records()
                if r["status"] == "ok" and all(row.get("status", "ok") == "ok" for row in r.get("rows", []))}

    def frame(self) -> pl.DataFrame:
        """One row per (trial, evaluated method); failed trials give one row with status=failed."""
        rows = []
        for record in self.records():
            spec = record["spec"]
            base = {"run": self.run_dir.name, "trial_id": record["id"], "status": record["status"],
                    "error": record.get("error"), "dataset": spec["dataset"], "au": spec["au"],
                    "seed": spec["seed"], "profile": spec["profile"], "train_method": spec["method"],
                    "setting": record.get("setting")}
            if record["status"] == "ok":
                for row in record["rows"]:
                    rows.append({**base, **{k: v for k, v in row.items() if not isinstance(v, (dict, list))}})
            else:
                for method in spec["evaluate"]:
                    rows.append({**base, "method": method})
        if not rows:
            return pl.DataFrame()
        return pl.DataFrame(rows, infer_schema_length=None)


def run_dirs(results_dir: Path | str) -> list[Path]:
    """Run folders under ``results_dir`` that hold trials, oldest first by last change."""
    root = Path(results_dir)
    runs = [p for p in root.iterdir() if (p / "trials").is_dir()] if root.is_dir() else []
    return sorted(runs, key=lambda p: (p / "trials").stat().st_mtime)
