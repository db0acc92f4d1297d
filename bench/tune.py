"""``bench tune``: search λ, the alignment layer(s) and the learning rate with Ray Tune.

The paper ablates exactly these (λ in Fig. 5, layers 1-5 and their combinations in Table 3).
Trials train with AU alignment and are scored on the **validation** split only (the test split is
never touched): the objective is validation CL, or CL/100 + w · ATT-COS (mean over the aligned
layers) by flag. A random-search algorithm proposes configurations and an ASHA scheduler stops
weak ones early. The best configuration is written as a TOML file of overrides that
``bench run --config FILE`` applies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import UserError

#: Alignment-layer sets tried (paper Table 3 rows).
LAYER_CHOICES = ("layer5", "layer4", "layer3", "layer5,layer4", "layer5,layer4,layer3")


@dataclass(frozen=True)
class TuneRequest:
    method: str
    dataset: str
    profile: str
    overrides: tuple[tuple[str, Any], ...]
    seed: int = 0
    num_samples: int = 8
    objective: str = "cl"            # cl | cl+att
    att_weight: float = 1.0
    weight_range: tuple[float, float] = (0.1, 20.0)
    layers: tuple[str, ...] = LAYER_CHOICES


def objective_value(val_cl: float, val_att: float | None, objective: str, att_weight: float) -> float:
    if objective == "cl":
        return val_cl
    if objective == "cl+att":
        return val_cl / 100 + att_weight * (val_att if val_att is not None and math.isfinite(val_att) else 0.0)
    raise UserError(f"bad --objective {objective!r}: expected cl or cl+att")


def search_space(request: TuneRequest, base_lr: float) -> dict[str, Any]:
    from ray import tune

    return {
        "au.weight": tune.loguniform(*request.weight_range),
        "au.layers": tune.choice(list(request.layers)),
        "train.lr": tune.loguniform(base_lr / 10, base_lr * 10),
    }


def _trainable(config: dict) -> None:
    """One tuning trial: train with AU on, report the objective on validation every epoch."""
    import torch
    from ray import tune

    from au import get_codebook
    from bench.config import resolve
    from bench.evaluate import evaluate
    from bench.data.placement import place
    from bench.train import build_session, fit

    torch.set_num_threads(config["threads"])
    sampled = [(k, config[k]) for k in ("au.weight", "au.layers", "train.lr")]
    overrides = [*config["overrides"], *sampled, ("train.select_on", "val"), ("train.checkpoint", False)]
    cfg = resolve(config["profile"], overrides, config["dataset"], config["method"])
    session = build_session(config["method"], config["dataset"], config["seed"], cfg, align=True)
    needs_att = config["objective"] != "cl"
    val = place(session.data.val, session.device)

    def val_attention(s, epoch) -> dict[str, float]:
        if not needs_att:
            return {}
        metrics = evaluate(s.model, [s.trained], *val, codebook=get_codebook(cfg.au.codebook), edge=cfg.au.edge,
                           class_names=s.data.class_names, batch_size=cfg.train.eval_batch_size, device=s.device,
                           layers=s.align_layers)[s.trained.name]
        return {"val_att_cos": sum(metrics[f"att_cos_{n}"] for n in s.align_layers) / len(s.align_layers)}

    def report(metrics: dict) -> None:
        metrics["objective"] = objective_value(metrics["val_cl"], metrics.get("val_att_cos"), config["objective"],
                                               config["att_weight"])
        tune.report(metrics)

    fit(session, report, None, val_attention)


def run_tune(request: TuneRequest, out_dir: Path, *, cpus_per_trial: float, gpus_per_trial: float,
             max_concurrent: int, address: str | None) -> dict[str, Any]:
    """Run the search; write ``best.toml`` (overrides) and ``trials.csv`` to ``out_dir``."""
    import polars as pl
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    from bench.config import resolve
    from bench.executors import check_gpus, init_ray
    from bench.store import atomic_write_text

    base = resolve(request.profile, list(request.overrides), request.dataset, request.method)
    init_ray(address)
    check_gpus(gpus_per_trial)
    param_space = {
        **search_space(request, base.train.lr),
        "method": request.method, "dataset": request.dataset, "profile": request.profile,
        "overrides": [list(kv) for kv in request.overrides], "seed": request.seed,
        "objective": request.objective, "att_weight": request.att_weight, "threads": max(1, int(cpus_per_trial)),
    }
    epochs = base.train.epochs
    tuner = tune.Tuner(
        tune.with_resources(_trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial}),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric="objective", mode="max", num_samples=request.num_samples,
            search_alg=BasicVariantGenerator(random_state=request.seed),
            scheduler=ASHAScheduler(time_attr="training_iteration", max_t=epochs,
                                    grace_period=max(1, min(2, epochs)), reduction_factor=2),
            max_concurrent_trials=max_concurrent or None, reuse_actors=True,
        ),
        run_config=tune.RunConfig(storage_path=str((out_dir / "ray").resolve()), name="tune", verbose=0),
    )
    grid = tuner.fit()
    best = grid.get_best_result(metric="objective", mode="max", scope="all")
    if best is None or best.config is None or best.metrics is None:
        errors = "; ".join(str(e).splitlines()[-1] for e in grid.errors[:3]) or "no trial reported"
        raise RuntimeError(f"bench tune found no finished trial ({errors})")
    chosen = {k: best.config[k] for k in ("au.weight", "au.layers", "train.lr")}
    out_dir.mkdir(parents=True, exist_ok=True)
    layers = ", ".join(f'"{name}"' for name in chosen["au.layers"].split(","))
    atomic_write_text(out_dir / "best.toml", (
        f"# bench tune --method {request.method} --dataset {request.dataset} --profile {request.profile}\n"
        f"# objective {request.objective}: best {best.metrics['objective']:.4f} on the validation split\n"
        f"[au]\nweight = {chosen['au.weight']:.6g}\nlayers = [{layers}]\n\n[train]\nlr = {chosen['train.lr']:.6g}\n"
    ))
    rows = []
    for result in grid:
        if result.config is None:
            continue
        metrics = result.metrics or {}
        rows.append({"au.weight": result.config["au.weight"], "au.layers": result.config["au.layers"],
                     "train.lr": result.config["train.lr"], "epochs": metrics.get("epoch"),
                     "val_cl": metrics.get("val_cl"), "val_att_cos": metrics.get("val_att_cos"),
                     "objective": metrics.get("objective"), "error": str(result.error) if result.error else None})
    pl.DataFrame(rows, infer_schema_length=None).write_csv(out_dir / "trials.csv")
    return {"best": chosen, "objective": best.metrics["objective"], "trials": len(rows)}


def config_overrides(path: Path) -> list[tuple[str, Any]]:
    """A TOML file of overrides (``bench tune``'s best.toml) as dotted ``(key, value)`` pairs."""
    import tomllib

    if not path.is_file():
        raise UserError(f"--config {path}: no such file (bench tune writes results/<run>/tune/best.toml)")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"--config {path} is not valid TOML: {exc}") from None

    def flatten(node: dict, prefix: str) -> list[tuple[str, Any]]:
        out = []
        for key, value in node.items():
            if isinstance(value, dict):
                out += flatten(value, f"{prefix}{key}.")
            else:
                out.append((f"{prefix}{key}", value))
        return out

    return flatten(raw, "")
