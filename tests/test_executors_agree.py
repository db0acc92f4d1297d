"""The same seed and profile give the same numbers under Ray and in-process, and Ray runs can be
streamed to TensorBoard and MLflow from the command line (read back with their own readers)."""
import json

import pytest

from test_cli import bench

ARGS = ["--methods", "cam", "--au", "off", "--profile", "smoke", "--set", "train.epochs=2"]
METRICS = ("cl", "cam_cos", "att_cos_layer5", "selection_cl", "best_epoch")


def _row(results):
    record = json.loads(next(results.rglob("evaluations/*.json")).read_text())
    assert record["status"] == "ok"
    return record, record["rows"][0]


@pytest.mark.slow
def test_ray_and_local_agree_and_ray_streams_to_trackers(tmp_path, monkeypatch):
    ray_out = bench("run", *ARGS, "--executor", "ray", "--results-dir", str(tmp_path / "ray"),
                    "--log", "tensorboard", "--log", "mlflow")
    local_out = bench("run", *ARGS, "--executor", "local", "--results-dir", str(tmp_path / "local"))
    assert ray_out.returncode == 0, ray_out.stderr[-3000:]
    assert local_out.returncode == 0, local_out.stderr[-3000:]
    ray_record, ray_row = _row(tmp_path / "ray")
    local_record, local_row = _row(tmp_path / "local")
    assert ray_record["id"] == local_record["id"]                      # same cell, same identity
    assert {k: ray_row[k] for k in METRICS} == {k: local_row[k] for k in METRICS}
    assert ray_record["history"] == [{**h, "seconds": r["seconds"]}
                                     for h, r in zip(local_record["history"], ray_record["history"])]
    assert ray_record["provenance"]["threads"] == local_record["provenance"]["threads"] == 1

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted((tmp_path / "ray").rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert [e.value for e in acc.Scalars("ray/tune/final/cam/cl")] == pytest.approx([ray_row["cl"]])
    assert len(acc.Scalars("ray/tune/train_loss")) == 3                # 2 epochs + the final row

    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")       # MLflow 3 reads local file stores only so

    store = tmp_path / "ray" / "smoke" / "mlruns"
    client = MlflowClient(tracking_uri=store.resolve().as_uri())
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    assert len(runs) == 1 and runs[0].data.metrics["final/cam/cam_cos"] == pytest.approx(ray_row["cam_cos"])
