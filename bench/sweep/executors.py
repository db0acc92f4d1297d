"""Executors run trial specs: Ray Tune (default) or in-process (``--executor local``, for debugging).

Both call ``execute_trial``, which wraps ``bench.train.trial.run_trial`` so that a trial that raises is
recorded as failed (with its error) and the sweep goes on.
"""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.errors import UserError
from bench.plan.spec import TrialSpec
from bench.store.records import RunStore

# Quiet, local-friendly Ray defaults (all overridable from the environment).
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_DEDUP_LOGS": "0",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1",   # CPU-only trials must not see the GPUs
}


def init_ray(address: str | None = None) -> None:
    """Join ``address`` (auto | ray://host:port) or start a quiet local Ray."""
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    import ray

    if ray.is_initialized():
        return
    init: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "warning",
                            "configure_logging": True}
    if address:
        init["address"] = address
    else:
        init["num_cpus"] = os.cpu_count()
    ray.init(**init)


def check_gpus(gpus_per_trial: float) -> None:
    """Refuse a GPU request the cluster cannot meet: Ray would leave the trials pending forever."""
    import ray

    available = ray.cluster_resources().get("GPU", 0)
    if gpus_per_trial > 0 and available < gpus_per_trial:
        raise UserError(
            f"--gpus-per-trial {gpus_per_trial} but the Ray cluster has {available:g} GPUs; "
            "use --gpus-per-trial 0 on CPU machines (Ray would leave the trials pending forever)"
        )


@dataclass
class TrialOutcome:
    spec: TrialSpec
    status: str          # ok | failed
    error: str | None = None


def execute_trial(spec: TrialSpec, run_dir: str, reporter: Callable[[dict], None] | None = None,
                  reraise: bool = False) -> TrialOutcome:
    """Run one trial; on failure write a failed record with the error instead of stopping the sweep."""
    from bench.train.trial import run_trial  # heavy imports stay out of CLI start-up

    store = RunStore(run_dir)
    try:
        failures = run_trial(spec, store, reporter)["failures"]
        if failures:                  # the trained model's other rows landed; these rows did not
            return TrialOutcome(spec, "failed", failed_rows_message(failures))
        return TrialOutcome(spec, "ok")
    except Exception as exc:  # noqa: BLE001 - any trial error is recorded, the sweep goes on
        error = f"{type(exc).__name__}: {exc}"
        store.write(spec, "failed", [], error=error + "\n" + traceback.format_exc(limit=8))
        if reraise:
            raise
        return TrialOutcome(spec, "failed", error)
    finally:
        _release_memory()


def failed_rows_message(failures: dict[str, str]) -> str:
    """One line for a trial whose model trained but some extractors' rows failed."""
    parts = "; ".join(f"{name}: {' '.join(error.split())[:200]}" for name, error in failures.items())
    return f"{len(failures)} of its rows failed (the others landed): {parts}"


def _release_memory() -> None:
    """A reused Ray worker (or the local process) must not keep the last trial's tensors."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class LocalExecutor:
    """Trials one after another in this process, with a rich progress bar.

    ``threads`` is the torch thread count, as in a Ray trial with that many CPUs: CPU reductions
    depend on it, and the same seed must give the same numbers under either executor.
    """

    console: Console
    threads: int = 1

    def run(self, specs: list[TrialSpec], run_dir: Path) -> list[TrialOutcome]:
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self._run(specs, run_dir)
        finally:
            torch.set_num_threads(previous)

    def _run(self, specs: list[TrialSpec], run_dir: Path) -> list[TrialOutcome]:
        outcomes = []
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[status]}"), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=False) as progress:
            sweep = progress.add_task("trials", total=len(specs), status="")
            for spec in specs:
                epochs = progress.add_task(spec.label, total=None, status="starting")

                def report(metrics: dict[str, Any], task=epochs) -> None:
                    progress.update(task, total=metrics["epochs"], completed=min(metrics["epoch"], metrics["epochs"]),
                                    status=f"loss {metrics['train_loss']:.3f}  best CL {metrics['best_cl']:.1f}")

                outcome = execute_trial(spec, str(run_dir), report)
                progress.update(epochs, status=outcome.status if outcome.status == "ok" else "[red]failed")
                progress.advance(sweep)
                outcomes.append(outcome)
        return outcomes


@dataclass
class RayExecutor:
    """Every spec is one Ray Tune trial (``tune.Tuner`` + ``tune.with_resources``)."""

    console: Console
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int = 0
    address: str | None = None
    max_failures: int = 0
    callbacks: list = field(default_factory=list)      # Ray Tune logger callbacks (bench run --log)

    def check_resources(self) -> None:
        """Start or join Ray and refuse a GPU request the cluster cannot meet (before any planning)."""
        init_ray(self.address)
        check_gpus(self.gpus_per_trial)

    def run(self, specs: list[TrialSpec], run_dir: Path) -> list[TrialOutcome]:
        from ray import tune

        self.check_resources()
        trainable = tune.with_resources(_ray_trainable, {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial})
        progress = _RayProgress(self.console, specs)
        tuner = tune.Tuner(
            trainable,
            param_space={"spec": tune.grid_search([s.to_dict() for s in specs]),
                         # absolute: Tune runs each trial with its own working directory
                         "run_dir": str(run_dir.resolve()),
                         "threads": max(1, int(self.cpus_per_trial))},
            tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=self.max_concurrent or None),
            run_config=tune.RunConfig(
                storage_path=str((run_dir / "ray").resolve()), name=time.strftime("sweep-%Y%m%d-%H%M%S"), verbose=0,
                failure_config=tune.FailureConfig(max_failures=self.max_failures),
                callbacks=[progress.callback(), *self.callbacks],
            ),
        )
        with progress:
            tuner.fit()
        self.console.print()
        store = RunStore(run_dir)
        by_id = {r["id"]: r for r in store.records()}
        outcomes = []
        for spec in specs:
            record = by_id.get(spec.id)
            if record is None:
                outcomes.append(TrialOutcome(spec, "failed", "the trial wrote no result (worker lost?)"))
            elif record["status"] == "ok":
                failures = {row["method"]: row.get("error") or "?" for row in record.get("rows", [])
                            if row.get("status", "ok") != "ok"}
                outcomes.append(TrialOutcome(spec, "failed", failed_rows_message(failures)) if failures
                                else TrialOutcome(spec, "ok"))
            else:
                outcomes.append(TrialOutcome(spec, record["status"], (record.get("error") or "").split("\n")[0] or None))
        return outcomes


def _ray_trainable(config: dict) -> None:
    """The Ray Tune function trainable: one spec, metrics reported every epoch."""
    import torch
    from ray import tune

    torch.set_num_threads(config["threads"])
    spec = TrialSpec.from_dict(config["spec"])
    execute_trial(spec, config["run_dir"], reporter=lambda m: tune.report(m), reraise=True)


class _RayProgress:
    """A live rich table of the Ray trials (status, epoch, latest metrics), fed by a Tune callback.

    Tune pickles its run config (callbacks included) into the experiment folder, and a rich Live
    holds locks, so the callback finds the live table through a class attribute instead.
    """

    active: "_RayProgress | None" = None

    def __init__(self, console: Console, specs: list[TrialSpec]):
        from rich.live import Live

        self.labels = {s.id: s.label for s in specs}
        self.rows: dict[str, dict[str, Any]] = {s.id: {"status": "PENDING"} for s in specs}
        self.live = Live(self._render(), console=console, refresh_per_second=2, transient=False)

    def _render(self):
        from rich.table import Table

        table = Table(title="ray trials", expand=False)
        for col in ("trial", "status", "epoch", "train loss", "selection CL"):
            table.add_column(col)
        for spec_id, row in self.rows.items():
            epoch = f"{row['epoch']}/{row['epochs']}" if "epoch" in row else ""
            loss = f"{row['train_loss']:.3f}" if "train_loss" in row else ""
            cl = f"{row['best_cl']:.1f}" if "best_cl" in row else ""
            colour = {"TERMINATED": "green", "ERROR": "red", "RUNNING": "yellow"}.get(row["status"], "white")
            table.add_row(self.labels[spec_id], f"[{colour}]{row['status']}[/]", epoch, loss, cl)
        return table

    def update(self, trial, status: str, result: dict | None = None) -> None:
        spec_id = TrialSpec.from_dict(trial.config["spec"]).id
        row = self.rows.setdefault(spec_id, {})
        row["status"] = status
        row.update({k: v for k, v in (result or {}).items() if k in ("epoch", "epochs", "train_loss", "best_cl")})
        self.live.update(self._render())

    def __enter__(self):
        _RayProgress.active = self
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        _RayProgress.active = None
        return self.live.__exit__(*exc)

    def callback(self):
        from ray.tune import Callback

        def update(trial, status, result=None):
            if _RayProgress.active is not None:
                _RayProgress.active.update(trial, status, result)

        class ProgressCallback(Callback):
            def on_trial_start(self, iteration, trials, trial, **info):
                update(trial, "RUNNING")

            def on_trial_result(self, iteration, trials, trial, result, **info):
                update(trial, "RUNNING", result)

            def on_trial_complete(self, iteration, trials, trial, **info):
                update(trial, "TERMINATED")

            def on_trial_error(self, iteration, trials, trial, **info):
                update(trial, "ERROR")

        return ProgressCallback()
