"""Executors run jobs: each a Ray Tune trial (default) or in-process (``--executor local``, for debugging).

Both call ``execute_job``, which wraps ``bench.sweep.jobs.run_job`` so that a job that raises is
recorded as failed (its model and each of its evaluations, with the error) and the sweep goes on.
Errors that can only repeat (a non-finite loss, an identity mismatch, a user error) are not retried
by Ray's ``max_failures``: the trial ends at once with its message.
"""
from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.errors import UserError
from bench.plan.spec import Job
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
class JobOutcome:
    job: Job
    status: str          # ok | failed
    error: str | None = None


def cannot_heal(exc: BaseException) -> bool:
    """Failures that a retry would only repeat: the same inputs give the same error."""
    from bench.plan.identity import IdentityMismatchError
    from bench.train.health import NonFiniteLossError

    return isinstance(exc, (IdentityMismatchError, NonFiniteLossError, UserError))


def execute_job(job: Job, run_dir: str, reporter: Callable[[dict], None] | None = None,
                reraise: bool = False) -> JobOutcome:
    """Run one job; on failure write failed records with the error instead of stopping the sweep."""
    from bench.sweep.jobs import record_failure, run_job  # heavy imports stay out of CLI start-up

    store = RunStore(run_dir)
    try:
        failures = run_job(job, store, reporter)
        if failures:                  # the model's other evaluations landed; these did not
            return JobOutcome(job, "failed", failed_rows_message(failures))
        return JobOutcome(job, "ok")
    except Exception as exc:  # noqa: BLE001 - any job error is recorded, the sweep goes on
        error = f"{type(exc).__name__}: {exc}"
        record_failure(job, store, error + "\n" + traceback.format_exc(limit=8))
        if reraise and not cannot_heal(exc):
            raise
        return JobOutcome(job, "failed", error)
    finally:
        _release_memory()


def failed_rows_message(failures: dict[str, str]) -> str:
    """One line for a job whose model is there but some extractors' evaluations failed."""
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

    def run(self, specs: list[Job], run_dir: Path) -> list[JobOutcome]:
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self._run(specs, run_dir)
        finally:
            torch.set_num_threads(previous)

    def _run(self, specs: list[Job], run_dir: Path) -> list[JobOutcome]:
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

                outcome = execute_job(spec, str(run_dir), report)
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

    def run(self, specs: list[Job], run_dir: Path) -> list[JobOutcome]:
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
        return [job_outcome(job, RunStore(run_dir)) for job in specs]


def job_outcome(job: Job, store: RunStore) -> JobOutcome:
    """A finished Ray trial's outcome, from the evaluation records it wrote."""
    errors = {}
    for name, eval_id in zip(job.evaluate, job.eval_ids):
        path = store.evaluations.path(eval_id)
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            errors[name] = "the trial wrote no result (worker lost?)"
            continue
        if record["status"] != "ok":
            errors[name] = (record.get("error") or "?").split("\n")[0]
        else:
            errors.update({row["method"]: row.get("error") or "?" for row in record.get("rows", [])
                           if row.get("status", "ok") != "ok"})
    if not errors:
        return JobOutcome(job, "ok")
    if len(set(errors.values())) == 1 and len(errors) == len(job.evaluate):
        return JobOutcome(job, "failed", next(iter(errors.values())))
    return JobOutcome(job, "failed", failed_rows_message(errors))


def _ray_trainable(config: dict) -> None:
    """The Ray Tune function trainable: one job, metrics reported every epoch."""
    import torch
    from ray import tune

    torch.set_num_threads(config["threads"])
    spec = Job.from_dict(config["spec"])
    execute_job(spec, config["run_dir"], reporter=lambda m: tune.report(m), reraise=True)


class _RayProgress:
    """A live rich table of the Ray trials (status, epoch, latest metrics), fed by a Tune callback.

    Tune pickles its run config (callbacks included) into the experiment folder, and a rich Live
    holds locks, so the callback finds the live table through a class attribute instead.
    """

    active: "_RayProgress | None" = None

    def __init__(self, console: Console, specs: list[Job]):
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
        spec_id = Job.from_dict(trial.config["spec"]).id
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
