"""Reliability with real processes: failing plugins, interrupted sweeps, corrupt files, determinism."""
import json
from pathlib import Path
import os
import signal
import subprocess
import sys
import time

from test_cli import BENCH, ENV

BOOM = '''
from methods.cam import CAM
from methods.registry import register


@register
class Boom(CAM):
    """A test-only plugin that fails in the trial, not in the preflight's dry run on 4 faces."""

    name = "boom"
    title = "Boom"

    def loss(self, output, batch):
        if batch.images.shape[0] > 4:
            raise RuntimeError("boom plugin always fails")
        return super().loss(output, batch)
'''


def _records(run_dir):
    return {json.loads(p.read_text())["id"]: json.loads(p.read_text()) for p in (run_dir / "evaluations").glob("*.json")}


def _metrics(record):
    return [{k: v for k, v in row.items()} for row in record["rows"]]


def test_a_raising_plugin_is_recorded_and_the_ray_sweep_finishes_the_others(tmp_path):
    (tmp_path / "boomplugin.py").write_text(BOOM)
    env = {**ENV, "PYTHONPATH": str(tmp_path), "BENCH_PLUGINS": "boomplugin"}
    out = subprocess.run([*BENCH, "run", "--methods", "cam,boom", "--profile", "smoke", "--results-dir", str(tmp_path),
                          "--set", "train.epochs=1"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 1, out.stderr[-2000:]
    assert "2 trained" in out.stderr and "2 failed" in out.stderr
    records = list(_records(tmp_path / "smoke").values())
    assert sorted(r["status"] for r in records) == ["failed", "failed", "ok", "ok"]
    failed = [r for r in records if r["status"] == "failed"]
    assert all("boom plugin always fails" in r["error"] for r in failed)
    assert {r["spec"]["method"] for r in failed} == {"boom"}


def test_interrupted_sweep_resumes_without_redoing_or_duplicating(tmp_path):
    args = [*BENCH, "run", "--methods", "cam", "--profile", "smoke", "--executor", "local",
            "--results-dir", str(tmp_path), "--set", "train.epochs=6"]
    run_dir = tmp_path / "smoke"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
                            start_new_session=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline:                       # first trial done, second one mid-way
            if len(list((run_dir / "evaluations").glob("*.json"))) == 1 and list((run_dir / "checkpoints").glob("*.pt")):
                break
            assert proc.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)                 # as hard as a lost node
    finally:
        proc.wait()
    first = _records(run_dir)
    assert len(first) == 1
    done_id, done = next(iter(first.items()))
    mtime = (run_dir / "evaluations" / f"{done_id}.json").stat().st_mtime_ns

    rerun = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "1 already finished, 1 to run" in rerun.stderr
    after = _records(run_dir)
    assert len(after) == 2
    assert (run_dir / "evaluations" / f"{done_id}.json").stat().st_mtime_ns == mtime
    resumed = next(r for i, r in after.items() if i != done_id)
    assert resumed["timings"]["resumed_from_epoch"] > 0
    assert [h["epoch"] for h in resumed["history"]] == list(range(6))
    assert not list((run_dir / "checkpoints").glob("*.pt"))

    # The resumed trial ends exactly where an uninterrupted run of the same seed ends.
    fresh_dir = tmp_path / "fresh"
    fresh = subprocess.run([*args[:-4], "--results-dir", str(fresh_dir), "--set", "train.epochs=6", "--au",
                            "on" if resumed["spec"]["au"] else "off"], capture_output=True, text=True, env=ENV,
                           timeout=600)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    uninterrupted = _records(fresh_dir / "smoke")[resumed["id"]]
    strip = lambda rows: [{k: v for k, v in r.items()} for r in rows]  # noqa: E731
    assert strip(uninterrupted["rows"]) == strip(resumed["rows"])


def test_corrupt_result_file_is_ignored_with_a_warning_and_its_trial_rerun(tmp_path):
    args = [*BENCH, "run", "--methods", "cam", "--profile", "smoke", "--executor", "local", "--au", "on",
            "--results-dir", str(tmp_path), "--set", "train.epochs=1"]
    assert subprocess.run(args, capture_output=True, env=ENV, timeout=600).returncode == 0
    (path,) = (tmp_path / "smoke" / "evaluations").glob("*.json")
    path.write_text('{"id": "torn", "sta')
    again = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=600)
    assert again.returncode == 0
    assert "unreadable result file" in again.stderr
    assert "0 already finished, 1 to run" in again.stderr
    assert json.loads(path.read_text())["status"] == "ok"


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    code = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[3])\n"
        "from records import write_evaluation\n"
        "for i in range(int(sys.argv[2]), int(sys.argv[2]) + 40):\n"
        "    write_evaluation(sys.argv[1], seed=i, rows=[{'method': 'cam', 'cl': float(i)}])\n"
    )
    tests_dir = str(Path(__file__).parent)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(start), tests_dir], env=ENV)
             for start in (0, 40)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    from bench.store.records import RunStore

    frame = RunStore(tmp_path).frame()
    assert sorted(frame["seed"].to_list()) == list(range(80))
