"""A real two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head and a worker
node, each with its own raylet and one CPU), driven by ``bench run --address`` in a subprocess.

1. Trials spread over both nodes and every record lands in the one results folder.
2. Removing the worker node mid-sweep loses nothing: with ``--max-failures 2`` its trial is
   retried on the head node and resumes from its last epoch checkpoint.
docs/cluster.md describes exactly these steps.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = [sys.executable, "-c", "from bench.cli.main import main; main()"]


@pytest.fixture(scope="module")
def cluster():
    from bench.sweep.executors import RAY_ENV

    saved = {key: os.environ.get(key) for key in RAY_ENV}
    os.environ.update(RAY_ENV)          # the raylets (and the workers they start) get the driver's settings
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster, worker
    finally:
        cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _bench_run(cluster, results: Path, run_name: str, epochs: int, *extra: str) -> list[str]:
    return [*BENCH, "run", "--methods", "cam", "--datasets", "synthetic", "--profile", "smoke", "--au", "both",
            "--executor", "ray", "--address", cluster.address, "--cpus-per-trial", "1",
            "--results-dir", str(results), "--run-name", run_name, "--set", f"train.epochs={epochs}", *extra]


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((run_dir / "evaluations").glob("*.json"))]


def _wait_for_two_checkpoints(proc, checkpoints: Path, stderr: Path, seconds: float) -> bool:
    """Until both trials have an epoch checkpoint (so both run at once, one per node) or the sweep ends."""
    deadline = time.monotonic() + seconds
    while len(list(checkpoints.glob("*.pt"))) < 2:
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, stderr.read_text()[-3000:]
        time.sleep(0.2)
    return True


@pytest.mark.slow
def test_trials_spread_over_both_nodes_into_one_results_folder(cluster, tmp_path):
    """Enough epochs that the second trial starts while the first runs: one CPU per node puts them on
    different nodes, and both records land in the one run folder."""
    cluster, worker = cluster
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as log:
        proc = subprocess.Popen(_bench_run(cluster, tmp_path, "spread", 30), stdout=subprocess.DEVNULL, stderr=log,
                                env=_env())
        try:
            _wait_for_two_checkpoints(proc, tmp_path / "spread" / "checkpoints", stderr, 420)
            assert proc.wait(timeout=600) == 0, stderr.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    records = _records(tmp_path / "spread")
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)
    nodes = {r["provenance"]["ray_node_id"] for r in records}
    assert nodes == {cluster.head_node.node_id, worker.node_id}
    assert not list((tmp_path / "spread" / "checkpoints").glob("*.pt"))


@pytest.mark.slow
def test_losing_the_worker_node_mid_sweep_loses_nothing(cluster, tmp_path):
    """Both trials are past their first epoch when the worker node goes; the trial it ran is retried
    on the head and resumes after its last checkpointed epoch; every epoch is in its history."""
    cluster, worker = cluster
    epochs = 60
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as log:
        proc = subprocess.Popen(_bench_run(cluster, tmp_path, "loss", epochs, "--max-failures", "2"),
                                stdout=subprocess.DEVNULL, stderr=log, env=_env())
        try:
            both = _wait_for_two_checkpoints(proc, tmp_path / "loss" / "checkpoints", stderr, 420)
            assert both, "the sweep ended before both trials were running: " + stderr.read_text()[-2000:]
            cluster.remove_node(worker)
            assert proc.wait(timeout=600) == 0, stderr.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    records = _records(tmp_path / "loss")
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)
    resumed = [r for r in records if r["timings"]["resumed_from_epoch"] > 0]
    assert len(resumed) == 1, [r["timings"]["resumed_from_epoch"] for r in records]
    assert resumed[0]["provenance"]["ray_node_id"] == cluster.head_node.node_id
    for record in records:
        assert [h["epoch"] for h in record["history"]] == list(range(epochs))
    assert not list((tmp_path / "loss" / "checkpoints").glob("*.pt"))
