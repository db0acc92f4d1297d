"""The GPU path in one command: speed against bare PyTorch, the whole grid at paper size, one table.

    scripts/gpu_check.sh               # on a GPU machine (at most ~8 minutes on one GPU)
    scripts/gpu_check.sh --cpu-tiny    # the same logic on a CPU at tiny sizes (the test suite runs it)

1. ``bench perf`` at the paper profile's model, image size and batch (CAM, AMP on, random init):
   harness img/s ÷ bare-PyTorch img/s, target >= 0.95 (``bench.sweep.perf.measure``, what ``bench perf``
   prints).
2. ``bench run --methods all --datasets synthetic --profile paper-dry --gpus-per-trial 0.25``: every
   method w/o and w/ AU at paper size on synthetic faces, one short epoch, four trials per GPU;
   every trial must finish.
3. One Markdown table: the perf ratio, then each trial's training img/s, peak GPU memory and peak
   host RSS, read back from the trial records. Exit status 1 if a trial failed or (on a GPU) the
   ratio missed its target; on a CPU the ratio is printed but not judged (a shared CPU is noise).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RATIO_TARGET = 0.95


@dataclass(frozen=True)
class Mode:
    """What one run of the check does; ``GPU`` and ``CPU_TINY`` differ only in sizes and resources."""

    name: str
    perf_profile: str
    perf_overrides: tuple[str, ...]
    perf_steps: int
    grid_profile: str
    methods: str
    au: str
    grid_overrides: tuple[str, ...]
    gpus_per_trial: float
    cpus_per_trial: float | None     # None: the machine's CPUs shared by the trials one GPU holds
    grid_timeout_s: int              # the grid is stopped (and the check fails) past this
    judge_ratio: bool


# Paper-size model, image and batch (224), as `bench perf --profile paper --set model.pretrained=false`;
# the synthetic splits only need one batch. The grid trains paper-dry (the paper's models and sizes)
# for one epoch of 4 batches of 56, four trials to a GPU; with the perf step it fits 8 minutes.
GPU = Mode(
    name="gpu", perf_profile="paper",
    perf_overrides=("model.pretrained=false", "data.train_size=224", "data.val_size=7", "data.test_size=7"),
    perf_steps=5, grid_profile="paper-dry", methods="all", au="both",
    grid_overrides=("train.batch_size=56", "train.eval_batch_size=64", "data.train_size=224", "data.val_size=28",
                    "data.test_size=56"),
    gpus_per_trial=0.25, cpus_per_trial=None, grid_timeout_s=390, judge_ratio=True)

# The same steps at smoke sizes on a CPU: one CNN group (CAM with a shared GradCAM), both transformers.
CPU_TINY = Mode(
    name="cpu-tiny", perf_profile="smoke", perf_overrides=("train.batch_size=4",), perf_steps=1,
    grid_profile="smoke", methods="cam,gradcam,tscam,apvit", au="on",
    grid_overrides=("train.epochs=1",),
    gpus_per_trial=0.0, cpus_per_trial=1, grid_timeout_s=420, judge_ratio=False)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-tiny", action="store_true", help="tiny sizes on the CPU (the test suite's run)")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "results", help="where the grid's run folder goes")
    parser.add_argument("--run-name", default=None, help="run folder name (default: gpu-check-<mode>-<time>)")
    parser.add_argument("--methods", default=None, help="override the grid's methods (default: all on a GPU)")
    return parser.parse_args(argv)


def measure_perf(mode: Mode) -> dict:
    """Harness vs bare PyTorch on the same model and batch (``bench perf``'s measurement)."""
    import torch

    from bench.config.settings import parse_override, resolve
    from bench.sweep.perf import measure

    config = resolve(mode.perf_profile, [parse_override(item) for item in mode.perf_overrides])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    result = measure(config, "cam", mode.perf_steps, extractor=None)
    batch = result.batch
    bare, harness = batch / result.seconds["bare"], batch / result.seconds["harness"]
    peak = None
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated()
        torch.cuda.empty_cache()          # the grid's trials get the memory this process cached
    amp = config.train.amp and result.device.startswith("cuda")      # autocast runs on CUDA only
    return {"device": result.device, "batch": batch, "image_size": result.image_size, "amp": amp,
            "bare_images_per_second": bare, "harness_images_per_second": harness, "ratio": harness / bare,
            "peak_gpu_memory_bytes": peak}


def cpus_per_trial(mode: Mode) -> float:
    """The mode's CPUs per trial, or the machine's CPUs (one kept for the driver) over the trials
    that share one GPU, so CPUs never cap the GPU packing."""
    if mode.cpus_per_trial is not None:
        return mode.cpus_per_trial
    per_gpu = max(1, round(1 / mode.gpus_per_trial))
    return max(1, ((os.cpu_count() or 2) - 1) // per_gpu)


def run_grid(mode: Mode, results_dir: Path, run_name: str, methods: str) -> tuple[int | None, float, str]:
    """``bench run`` in a subprocess (the real command line); returns (exit code or None when it ran
    past the mode's time limit, seconds, stderr tail)."""
    command = [sys.executable, "-c", "from bench.cli.main import main; main()", "run", "--methods", methods,
               "--datasets", "synthetic", "--profile", mode.grid_profile, "--au", mode.au,
               "--executor", "ray", "--gpus-per-trial", f"{mode.gpus_per_trial:g}",
               "--cpus-per-trial", f"{cpus_per_trial(mode):g}", "--results-dir", str(results_dir),
               "--run-name", run_name]
    for item in mode.grid_overrides:
        command += ["--set", item]
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "COLUMNS": "200"}
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        # its own process group: past the limit, the driver and the Ray processes it started all stop
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=mode.grid_timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            code = None
        err.seek(0)
        tail = err.read()[-3000:]
    return code, time.perf_counter() - start, tail


def trial_rows(records: list[dict]) -> list[dict]:
    """One row per model record (one training run): method (and the extractors sharing its model), AU,
    status and speed."""
    rows = []
    for record in sorted(records, key=lambda r: (r["spec"]["method"], r["spec"]["au"], r["spec"]["seed"])):
        spec, timings = record["spec"], record.get("timings") or {}
        shared = [m for m in spec["evaluate"] if m != spec["method"]]
        rows.append({
            "method": spec["method"] + (f" (+{', '.join(shared)})" if shared else ""),
            "au": "w/ AU" if spec["au"] else "w/o AU",
            "status": record["status"],
            "images_per_second": timings.get("train_images_per_second"),
            "peak_gpu_memory_bytes": timings.get("peak_gpu_memory_bytes"),
            "peak_host_rss_bytes": timings.get("peak_host_rss_bytes"),
            "node": (record.get("provenance") or {}).get("ray_node_id") or "",
            "error": (record.get("error") or "").split("\n")[0],
        })
    return rows


def _gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**30:.2f} GiB"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def render_table(perf: dict, rows: list[dict], judge_ratio: bool) -> str:
    """The check's one Markdown table (first row: the perf ratio; then one row per trial)."""
    verdict = "target ≥ 0.95"
    if judge_ratio:
        verdict += ": met" if perf["ratio"] >= RATIO_TARGET else ": MISSED"
    else:
        verdict += " (not judged on a CPU)"
    lines = ["| check | AU | img/s | peak GPU memory | peak host RSS | result |", "|---|---|---:|---:|---:|---|",
             f"| bench perf: harness ÷ bare PyTorch (cam, batch {perf['batch']}, {perf['image_size']} px, "
             f"AMP {'on' if perf['amp'] else 'off'}) | | {_rate(perf['harness_images_per_second'])} ÷ "
             f"{_rate(perf['bare_images_per_second'])} | {_gib(perf['peak_gpu_memory_bytes'])} | | "
             f"{perf['ratio']:.3f} ({verdict}) |"]
    for row in rows:
        result = row["status"] if row["status"] == "ok" else f"{row['status']}: {row['error'][:120]}"
        lines.append(f"| {row['method']} | {row['au']} | {_rate(row['images_per_second'])} | "
                     f"{_gib(row['peak_gpu_memory_bytes'])} | {_gib(row['peak_host_rss_bytes'])} | {result} |")
    return "\n".join(lines)


def verdict(perf: dict, rows: list[dict], expected_trials: int, judge_ratio: bool) -> list[str]:
    """What failed (empty: the check passed)."""
    problems = []
    if len(rows) != expected_trials:
        problems.append(f"{len(rows)} trial records for {expected_trials} planned trials")
    problems += [f"{row['method']} {row['au']}: {row['status']}" for row in rows if row["status"] != "ok"]
    if judge_ratio and perf["ratio"] < RATIO_TARGET:
        problems.append(f"harness ÷ bare img/s {perf['ratio']:.3f} < {RATIO_TARGET}")
    return problems


def planned_trials(methods: str, au: str) -> int:
    from methods import method_names
    from bench.plan.spec import group_methods

    names = method_names() if methods == "all" else [m.strip() for m in methods.split(",") if m.strip()]
    return len(group_methods(names, True)) * (2 if au == "both" else 1)


def describe_device() -> str:
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return (f"{props.name}, {props.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, "
                f"CUDA {torch.version.cuda}")
    return f"CPU ({os.cpu_count()} cores), torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    mode = CPU_TINY if args.cpu_tiny else GPU
    if mode is GPU and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible; run with --cpu-tiny to check the logic on a CPU", file=sys.stderr)
        return 2
    # a fresh run folder each time: a rerun must train, not skip the trials of an earlier check
    run_name = args.run_name or time.strftime(f"gpu-check-{mode.name}-%Y%m%d-%H%M%S")
    methods = args.methods or mode.methods
    started = time.perf_counter()
    perf = measure_perf(mode)
    code, grid_seconds, tail = run_grid(mode, args.results_dir, run_name, methods)
    run_dir = args.results_dir / run_name / "models"          # one model record per training run
    records = [json.loads(p.read_text()) for p in sorted(run_dir.glob("*/model.json"))] if run_dir.is_dir() else []
    rows = trial_rows(records)
    problems = verdict(perf, rows, planned_trials(methods, mode.au), mode.judge_ratio)
    if code is None:
        problems.append(f"the grid ran past {mode.grid_timeout_s} s and was stopped")
    elif code != 0:
        problems.append(f"bench run exited with {code}: {tail.strip().splitlines()[-1] if tail.strip() else ''}")
    print(f"gpu_check ({mode.name}) on {describe_device()}: grid {grid_seconds:.0f} s, "
          f"total {time.perf_counter() - started:.0f} s")
    print(render_table(perf, rows, mode.judge_ratio))
    for problem in problems:
        print(f"FAILED: {problem}")
    if code != 0:
        print(tail, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
