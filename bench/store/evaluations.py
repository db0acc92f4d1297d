"""Evaluation records: ``<run>/evaluations/<evaluation id>.json`` (+ ``.maps.npz``, ``.faces.parquet``).

One record per (model, extractor, evaluation settings): its row of metrics (CL, CAM-COS, ATT-COS per
layer, per-class values, confusion matrix, extended metrics when asked), the cell it belongs to,
the model it evaluated, timings and provenance. Beside it, the figure arrays and the per-face
results (one row per test face: label, prediction, per-face cosines and scores), which the
significance tests pair across AU modes. Everything is written atomically; the record last, so a
record that exists always has its maps and faces.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

from bench.files import atomic_write, atomic_write_text


class EvaluationStore:
    def __init__(self, run_dir: Path | str):
        self.dir = Path(run_dir) / "evaluations"

    def path(self, eval_id: str) -> Path:
        return self.dir / f"{eval_id}.json"

    def maps_path(self, eval_id: str) -> Path:
        return self.dir / f"{eval_id}.maps.npz"

    def faces_path(self, eval_id: str) -> Path:
        return self.dir / f"{eval_id}.faces.parquet"

    def write(self, record: dict[str, Any]) -> Path:
        path = self.path(record["id"])
        atomic_write_text(path, json.dumps(record, indent=1, default=str))
        return path

    def write_maps(self, eval_id: str, arrays: dict) -> None:
        import numpy as np

        atomic_write(self.maps_path(eval_id), lambda fh: np.savez_compressed(fh, **arrays))

    def write_faces(self, eval_id: str, columns: dict) -> None:
        """Per-face results as parquet (columns of equal length: face, label, pred, ...)."""
        import polars as pl

        frame = pl.DataFrame(columns)
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        atomic_write(self.faces_path(eval_id), lambda fh: fh.write(buffer.getvalue()))

    def read_maps(self, eval_id: str) -> dict | None:
        import numpy as np

        path = self.maps_path(eval_id)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError) as exc:
            warnings.warn(f"ignoring unreadable map file {path} ({exc})")
            return None

    def read_faces(self, eval_id: str):
        import polars as pl

        path = self.faces_path(eval_id)
        if not path.is_file():
            return None
        try:
            return pl.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - a damaged file is reported and ignored
            warnings.warn(f"ignoring unreadable per-face file {path} ({exc})")
            return None

    def records(self) -> list[dict[str, Any]]:
        return read_records(sorted(self.dir.glob("*.json")) if self.dir.is_dir() else [],
                            "it will be evaluated again")


def read_records(paths, consequence: str) -> list[dict[str, Any]]:
    """The JSON records at ``paths``; an unreadable one is named in a warning and left out."""
    out = []
    for path in paths:
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict) or "status" not in record:
                raise ValueError("not a result record")
        except (OSError, ValueError) as exc:
            warnings.warn(f"ignoring unreadable result file {path} ({exc}); {consequence}")
            continue
        out.append(record)
    return out
