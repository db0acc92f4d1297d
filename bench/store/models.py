"""Kept models: ``<run>/models/<model id>/`` holds ``weights.safetensors`` and ``model.json``.

A trained model is an artifact of its own, so any number of evaluations can be computed from it
later without training again. The folder is built under a temporary name and renamed into place,
so a model folder that exists is complete; ``model.json`` records the cell, the resolved training
configuration, the identity its id was computed from, the training history and provenance.
A failed training leaves a ``model.json`` with ``status: failed`` and no weights (the next run
trains it again). torch is imported only to read or write weights, so reporting stays light.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bench.files import atomic_write_text, unique_temp_name

WEIGHTS = "weights.safetensors"
RECORD = "model.json"


class ModelStore:
    def __init__(self, run_dir: Path | str):
        self.dir = Path(run_dir) / "models"

    def path(self, model_id: str) -> Path:
        return self.dir / model_id

    def record(self, model_id: str) -> dict[str, Any] | None:
        path = self.path(model_id) / RECORD
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def is_ready(self, model_id: str) -> bool:
        """A finished model: its record says ok and its weights are there."""
        record = self.record(model_id)
        return bool(record and record.get("status") == "ok" and (self.path(model_id) / WEIGHTS).is_file())

    def records(self) -> list[dict[str, Any]]:
        out = []
        if not self.dir.is_dir():
            return out
        for folder in sorted(self.dir.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            record = self.record(folder.name)
            if record is not None:
                out.append(record)
        return out

    def save(self, model_id: str, state_dict: dict, record: dict[str, Any]) -> Path:
        """Weights and record, published together by one rename (an older failed record is replaced)."""
        from safetensors.torch import save_file

        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / unique_temp_name(model_id)
        tmp.mkdir()
        try:
            tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
            save_file(tensors, str(tmp / WEIGHTS))
            atomic_write_text(tmp / RECORD, json.dumps({**record, "status": "ok", "error": None}, indent=1, default=str))
            final = self.path(model_id)
            if final.exists():
                if self.is_ready(model_id):          # another process finished the same model first
                    shutil.rmtree(tmp, ignore_errors=True)
                    return final
                shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            return final
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def save_failed(self, model_id: str, record: dict[str, Any], error: str) -> None:
        if self.is_ready(model_id):
            return
        atomic_write_text(self.path(model_id) / RECORD,
                          json.dumps({**record, "status": "failed", "error": error}, indent=1, default=str))

    def load_weights(self, model_id: str, device: Any = "cpu") -> dict:
        from safetensors.torch import load_file

        return load_file(str(self.path(model_id) / WEIGHTS), device=str(device))
