"""scripts/gpu_check.sh: its table and verdict on hand-made records, and the whole script at tiny
sizes on the CPU (``--cpu-tiny``), so the GPU path's logic is tested on every machine."""
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def _load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module          # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


gpu_check = _load_gpu_check()

PERF = {"device": "cuda", "batch": 224, "image_size": 224, "amp": True, "bare_images_per_second": 800.0,
        "harness_images_per_second": 780.0, "ratio": 0.975, "peak_gpu_memory_bytes": 3 * 2**30}


def _record(method, evaluate, au, status="ok", ips=12.5, gpu=2**31, rss=2**30, error=None):
    return {"spec": {"method": method, "evaluate": evaluate, "au": au, "seed": 0}, "status": status, "error": error,
            "timings": {"train_images_per_second": ips, "peak_gpu_memory_bytes": gpu, "peak_host_rss_bytes": rss},
            "provenance": {"ray_node_id": "n1"}}


def test_table_has_the_ratio_then_one_row_per_trial():
    records = [_record("tscam", ["tscam"], True, ips=40.0),
               _record("cam", ["cam", "gradcam", "layercam"], False, ips=100.25, gpu=3 * 2**30 // 2)]
    rows = gpu_check.trial_rows(records)
    assert [r["method"] for r in rows] == ["cam (+gradcam, layercam)", "tscam"]
    table = gpu_check.render_table(PERF, rows, judge_ratio=True).splitlines()
    assert table[2].startswith("| bench perf: harness ÷ bare PyTorch (cam, batch 224, 224 px, AMP on)")
    assert "780.0 ÷ 800.0" in table[2] and "3.00 GiB" in table[2] and "0.975 (target ≥ 0.95: met)" in table[2]
    assert table[3] == "| cam (+gradcam, layercam) | w/o AU | 100.2 | 1.50 GiB | 1.00 GiB | ok |"
    assert table[4] == "| tscam | w/ AU | 40.0 | 2.00 GiB | 1.00 GiB | ok |"
    cpu = gpu_check.render_table({**PERF, "peak_gpu_memory_bytes": None}, gpu_check.trial_rows(
        [_record("cam", ["cam"], True, gpu=None)]), judge_ratio=False)
    assert "(target ≥ 0.95 (not judged on a CPU))" in cpu and "| n/a |" in cpu


def test_verdict_fails_on_a_failed_or_missing_trial_and_on_a_missed_ratio_on_gpu():
    ok = gpu_check.trial_rows([_record("cam", ["cam"], False), _record("cam", ["cam"], True)])
    assert gpu_check.verdict(PERF, ok, 2, judge_ratio=True) == []
    assert gpu_check.verdict(PERF, ok, 3, judge_ratio=True) == ["2 trial records for 3 planned trials"]
    failed = gpu_check.trial_rows([_record("cam", ["cam"], False), _record("cam", ["cam"], True, status="failed",
                                                                           error="CUDA out of memory\ntrace")])
    assert gpu_check.verdict(PERF, failed, 2, judge_ratio=True) == ["cam w/ AU: failed"]
    assert "failed: CUDA out of memory |" in gpu_check.render_table(PERF, failed, True)
    slow = {**PERF, "ratio": 0.9}
    assert gpu_check.verdict(slow, ok, 2, judge_ratio=True) == ["harness ÷ bare img/s 0.900 < 0.95"]
    assert gpu_check.verdict(slow, ok, 2, judge_ratio=False) == []


def test_planned_trials_count_shared_extractors_once():
    assert gpu_check.planned_trials("cam,gradcam,tscam,apvit", "on") == 3
    assert gpu_check.planned_trials("all", "both") == 16


def test_gpu_trials_get_the_cpus_so_that_four_share_each_gpu(monkeypatch):
    monkeypatch.setattr(gpu_check.os, "cpu_count", lambda: 16)
    assert gpu_check.cpus_per_trial(gpu_check.GPU) == 3            # (16 - 1 for the driver) // 4
    monkeypatch.setattr(gpu_check.os, "cpu_count", lambda: 4)
    assert gpu_check.cpus_per_trial(gpu_check.GPU) == 1
    assert gpu_check.cpus_per_trial(gpu_check.CPU_TINY) == 1


def test_a_grid_past_its_time_limit_is_stopped(tmp_path):
    import dataclasses

    hurried = dataclasses.replace(gpu_check.CPU_TINY, grid_timeout_s=1)
    code, seconds, _ = gpu_check.run_grid(hurried, tmp_path, "late", "cam")
    assert code is None and seconds < 60
    assert not list(tmp_path.glob("late/models/*/model.json"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine this would run the real check")
def test_without_a_gpu_the_default_mode_refuses_in_one_line():
    out = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "--cpu-tiny" in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_cpu_tiny_runs_the_whole_check_and_its_table_matches_the_records(tmp_path):
    out = subprocess.run([str(SCRIPT), "--cpu-tiny", "--results-dir", str(tmp_path), "--run-name", "tiny"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("gpu_check (cpu-tiny) on CPU")
    table = [line for line in lines if line.startswith("| ")]
    assert table[0].startswith("| check |") and "not judged on a CPU" in table[1]
    ratio = float(re.search(r"\| (\d+\.\d{3}) \(target", table[1]).group(1))
    assert ratio > 0
    records = [json.loads(p.read_text()) for p in (tmp_path / "tiny" / "models").glob("*/model.json")]
    assert sorted(r["spec"]["method"] for r in records) == ["apvit", "cam", "tscam"]
    for record in records:
        label = record["spec"]["method"] + (" (+gradcam)" if record["spec"]["method"] == "cam" else "")
        row = next(line for line in table if line.startswith(f"| {label} |"))
        rate = f"{record['timings']['train_images_per_second']:.1f}"
        assert row.endswith("| ok |") and f"| {rate} |" in row and "| w/ AU |" in row
    assert not any(line.startswith("FAILED") for line in lines)
