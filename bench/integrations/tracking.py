"""Experiment tracking for ``bench run --log tensorboard|mlflow|wandb``: Ray Tune's own logger callbacks.

Each trial's ``tune.report`` results (per-epoch metrics, then the final row flattened by
``bench.sweep.report_row.final_metrics``) reach the trackers through Ray Tune's ``LoggerCallback`` classes, so they work
for local and cluster runs alike:

- ``tensorboard``: ``ray.tune.logger.TBXLoggerCallback``, event files in each trial's folder under
  ``<run>/ray/`` (offline; ``tensorboard --logdir results/<run>/ray``). Writing needs only
  tensorboardX (part of ``ray[tune]``); the ``tensorboard`` extra adds the viewer.
- ``mlflow``: ``ray.air.integrations.mlflow.MLflowLoggerCallback``, one MLflow run per trial in the
  experiment named after the run, stored in ``<run>/mlruns`` unless ``MLFLOW_TRACKING_URI`` is set.
  MLflow 3 refuses local file stores unless ``MLFLOW_ALLOW_FILE_STORE=true``; a local store is the
  point here, so it is set (only when the store is local and the variable is unset).
- ``wandb``: ``ray.air.integrations.wandb.WandbLoggerCallback``, project ``$WANDB_PROJECT`` or
  ``au-cam-bench``, grouped by run, files under ``<run>/``; ``WANDB_MODE=offline`` (or ``disabled``)
  is passed on, so W&B works without an account.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import urlparse

from bench.errors import UserError

KINDS = ("tensorboard", "mlflow", "wandb")
#: the module each tracker's callback needs, and the project extra that installs it
_NEEDS = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}
WANDB_DEFAULT_PROJECT = "au-cam-bench"


def parse_kinds(kinds: Iterable[str]) -> list[str]:
    """``["tensorboard,mlflow", "wandb"]`` -> ``["tensorboard", "mlflow", "wandb"]`` (deduplicated, checked)."""
    out: list[str] = []
    for entry in kinds:
        for kind in (part.strip().lower() for part in str(entry).split(",")):
            if not kind:
                continue
            if kind not in KINDS:
                raise UserError(f"--log {kind!r} is not a tracker; choose from {', '.join(KINDS)} "
                                "(repeat --log or give a comma list, e.g. --log tensorboard,mlflow)")
            if kind not in out:
                out.append(kind)
    return out


def _require(kind: str) -> None:
    module = _NEEDS[kind]
    try:
        importlib.import_module(module)
    except ImportError:
        raise UserError(f"--log {kind} needs the {module} package, which is not installed; "
                        f"install it with: pip install 'au-cam-bench[{kind}]'") from None


def _tensorboard(run_dir: Path):
    from ray.tune.logger import TBXLoggerCallback

    return TBXLoggerCallback()


def mlflow_tracking_uri(run_dir: Path) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else a file store at ``<run_dir>/mlruns``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or (Path(run_dir).resolve() / "mlruns").as_uri()


def _is_local(uri: str) -> bool:
    return urlparse(uri).scheme in ("", "file")


def _mlflow(run_dir: Path):
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    uri = mlflow_tracking_uri(run_dir)
    if _is_local(uri):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or Path(run_dir).name
    return MLflowLoggerCallback(tracking_uri=uri, experiment_name=experiment, tags={"bench_run": Path(run_dir).name})


def _wandb(run_dir: Path):
    from ray.air.integrations.wandb import WandbLoggerCallback

    options: dict[str, Any] = {"dir": str(Path(run_dir).resolve())}
    if os.environ.get("WANDB_MODE"):
        options["mode"] = os.environ["WANDB_MODE"]
    return WandbLoggerCallback(project=os.environ.get("WANDB_PROJECT") or WANDB_DEFAULT_PROJECT,
                               group=Path(run_dir).name, **options)


_BUILDERS: dict[str, Callable[[Path], Any]] = {"tensorboard": _tensorboard, "mlflow": _mlflow, "wandb": _wandb}


def tune_callbacks(kinds: Sequence[str], run_dir: Path) -> list:
    """Ray Tune logger callbacks for ``kinds`` (for ``tune.RunConfig(callbacks=...)``).

    An unknown kind or a tracker whose package is missing raises ``UserError`` with the fix.
    """
    chosen = parse_kinds(kinds)
    for kind in chosen:
        _require(kind)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return [_BUILDERS[kind](run_dir) for kind in chosen]
