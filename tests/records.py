"""Write evaluation records by hand, as a finished job would, for store and reporting tests."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

from bench.plan.spec import setting_digest
from bench.store.records import RunStore


def write_evaluation(run_dir, method="cam", dataset="synthetic", au=True, seed=0, profile="smoke", rows=None,
                     status="ok", error=None, trained=None, overrides=(), model_id=None, created=None, maps=None,
                     faces=None, eval_id=None, **sections):
    """One evaluation record (and its maps / per-face files); returns its path."""
    trained = trained or method
    overrides = tuple(tuple(kv) for kv in overrides)
    cell = json.dumps([trained, dataset, au, seed, profile, [list(kv) for kv in overrides]])
    model_id = model_id or hashlib.sha256(cell.encode()).hexdigest()[:16]
    eval_id = eval_id or hashlib.sha256(f"{model_id}/{method}".encode()).hexdigest()[:16]
    created = created or datetime.now(timezone.utc).isoformat(timespec="microseconds")
    store = RunStore(run_dir)
    if maps is not None:
        store.evaluations.write_maps(eval_id, maps)
    if faces is not None:
        store.evaluations.write_faces(eval_id, faces)
    record = {
        "id": eval_id, "kind": "evaluation", "created": created,
        "spec": {"method": trained, "evaluate": [method], "dataset": dataset, "au": au, "seed": seed,
                 "profile": profile, "overrides": [list(kv) for kv in overrides], "model_id": model_id},
        "setting": setting_digest(profile, overrides), "model": {"id": model_id, "created": created},
        "status": status, "error": error, "rows": rows if rows is not None else [{"method": method}],
        "timings": {}, "provenance": {}, "history": [], "data": {}, "identity": {}, **sections,
    }
    return store.evaluations.write(record)
