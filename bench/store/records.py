"""A run folder: kept models, evaluation records, and the one result per cell that reports show.

Layout of ``<results>/<run>/``:
- ``models/<model id>/`` (``bench.store.models``): weights + ``model.json``;
- ``evaluations/<evaluation id>.json`` (+ ``.maps.npz``, ``.faces.parquet``) (``bench.store.evaluations``);
- ``checkpoints/<model id>.pt``: the resumable state of a training in progress;
- ``trials/<id>.json``: records of the layout before models and evaluations were kept apart, read as
  they are and marked ``legacy`` (their models were not kept).

**Which result a cell shows** (``current_records``): a cell is (setting, dataset, evaluated method, AU
mode, seed). Of its records, the newest model wins; each value comes from the newest evaluation of
that model that computed it (so a base evaluation after an extended one keeps the extended columns).
Older models and evaluations stay on disk and are counted in ``notes``. Reading needs no torch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from bench.store.evaluations import EvaluationStore, read_records
from bench.store.models import ModelStore


def cell_key(record: dict[str, Any], row: dict[str, Any]) -> tuple:
    spec = record.get("spec") or {}
    return (record.get("setting"), spec.get("dataset"), row.get("method"), bool(spec.get("au")), spec.get("seed"))


def _newest(record: dict[str, Any]) -> tuple:
    """Sort key, newest first: model creation, then evaluation creation (legacy records are oldest)."""
    model = record.get("model") or {}
    return (0 if record.get("legacy") else 1, model.get("created") or "", record.get("created") or "")


class RunStore:
    def __init__(self, run_dir: Path | str):
        self.run_dir = Path(run_dir)
        self.models = ModelStore(self.run_dir)
        self.evaluations = EvaluationStore(self.run_dir)
        self.legacy_dir = self.run_dir / "trials"
        self.checkpoint_dir = self.run_dir / "checkpoints"

    def checkpoint_path(self, model_id: str) -> Path:
        return self.checkpoint_dir / f"{model_id}.pt"

    def read_maps(self, record_id: str) -> dict | None:
        arrays = self.evaluations.read_maps(record_id)
        if arrays is None and (self.run_dir / "maps" / f"{record_id}.npz").is_file():     # legacy layout
            import numpy as np

            with np.load(self.run_dir / "maps" / f"{record_id}.npz", allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        return arrays

    def faces(self, eval_id: str):
        """Per-face results of one evaluation (polars), or None (legacy records, failed evaluations)."""
        return self.evaluations.read_faces(eval_id)

    def legacy_records(self) -> list[dict[str, Any]]:
        paths = sorted(self.legacy_dir.glob("*.json")) if self.legacy_dir.is_dir() else []
        return [{**record, "legacy": True} for record in read_records(paths, "its cell shows no legacy result")]

    def records(self) -> list[dict[str, Any]]:
        """Every evaluation record (and legacy trial record), finished or failed, newest last."""
        return sorted(self.legacy_records() + self.evaluations.records(), key=_newest)

    def finished_evaluations(self) -> set[str]:
        return {r["id"] for r in self.evaluations.records()
                if r["status"] == "ok" and all(row.get("status", "ok") == "ok" for row in r.get("rows", []))}

    def current_records(self) -> tuple[list[dict[str, Any]], list[str]]:
        """One record per cell by the rule above, and notes on what was left out."""
        cells: dict[tuple, list[tuple[dict, dict]]] = {}
        for record in self.records():
            rows = record.get("rows") or [{"method": m} for m in (record.get("spec") or {}).get("evaluate", [])]
            for row in rows:
                cells.setdefault(cell_key(record, row), []).append((record, row))
        out, older_models, older_evaluations = [], 0, 0
        for entries in cells.values():
            entries.sort(key=lambda e: _newest(e[0]), reverse=True)
            newest, row = entries[0]
            model_id = (newest.get("model") or {}).get("id")
            merged = dict(row)
            for record, other in entries[1:]:
                same_model = model_id is not None and (record.get("model") or {}).get("id") == model_id
                if not same_model:
                    older_models += 1
                    continue
                older_evaluations += 1
                if newest["status"] != "ok" or record["status"] != "ok":
                    continue
                for key, value in other.items():
                    if merged.get(key) is None and value is not None:
                        merged[key] = value
            out.append({**newest, "rows": [merged]})
        notes = []
        if older_models:
            notes.append(f"{self.run_dir.name}: {older_models} result(s) of older models of the same cells are kept "
                         "on disk and not shown (the newest model of each cell is)")
        return sorted(out, key=_newest), notes

    def frame(self) -> pl.DataFrame:
        """One row per cell (the current result); failed evaluations give a row with status=failed."""
        rows = []
        records, _ = self.current_records()
        for record in records:
            spec = record["spec"]
            model = record.get("model") or {}
            base = {"run": self.run_dir.name, "trial_id": record["id"], "eval_id": record["id"],
                    "model_id": model.get("id"), "status": record["status"], "error": record.get("error"),
                    "dataset": spec["dataset"], "au": spec["au"], "seed": spec["seed"], "profile": spec["profile"],
                    "train_method": spec["method"], "setting": record.get("setting"),
                    "legacy": bool(record.get("legacy")), "imported": bool(model.get("imported")),
                    "trained_by_older_code": bool(model.get("older_code"))}
            for row in record["rows"]:
                if record["status"] == "ok":
                    rows.append({**base, **{k: v for k, v in row.items() if not isinstance(v, (dict, list))}})
                else:
                    rows.append({**base, "method": row["method"]})
        if not rows:
            return pl.DataFrame()
        return pl.DataFrame(rows, infer_schema_length=None)


def is_run_dir(path: Path) -> bool:
    return any((path / sub).is_dir() for sub in ("evaluations", "models", "trials"))


def run_dirs(results_dir: Path | str) -> list[Path]:
    """Run folders under ``results_dir`` that hold results, oldest first by last change."""
    root = Path(results_dir)
    runs = [p for p in root.iterdir() if p.is_dir() and is_run_dir(p)] if root.is_dir() else []

    def changed(p: Path) -> float:
        return max((p / sub).stat().st_mtime for sub in ("evaluations", "models", "trials") if (p / sub).is_dir())

    return sorted(runs, key=changed)
