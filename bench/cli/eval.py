"""``bench eval``: evaluate the models a run folder keeps, training nothing.

For a new metric, a new post-hoc extractor, an extended evaluation or corrected evaluation code:
every kept model of the run (filtered by --methods/--datasets/--au/--seeds) is evaluated as Ray
work like training (same executors, GPUs, failures recorded per evaluation), and only the
evaluations that are missing for the current code and settings run.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from bench.errors import UserError


def register(app: typer.Typer) -> None:
    app.command(name="eval")(evaluate_run)


def evaluate_run(
    run: str = typer.Option(..., "--run", help="Run folder name under --results-dir whose kept models are evaluated."),
    results_dir: Path = typer.Option(Path("results"), help="Where run folders live."),
    methods: str = typer.Option("", help="Extractors to evaluate (default: those already evaluated in the run); 'all' for every method."),
    datasets: str = typer.Option("", help="Only these datasets (default: all in the run)."),
    au: str = typer.Option("both", help="AU mode of the models: off | on | both."),
    seeds: str = typer.Option("", help="Only these seeds (default: all in the run)."),
    eval_: str = typer.Option("base", "--eval", help="base | extended | interventions, or a comma-separated mix."),
    set_: List[str] = typer.Option([], "--set", help="Override an evaluation setting: eval.key=value, repeatable."),
    data_root: Optional[Path] = typer.Option(None, help="Dataset root, when the data moved since training or the models were imported (the data must have the same content)."),
    executor: str = typer.Option("ray", help="ray | local (in-process, for debugging)."),
    cpus_per_trial: float = typer.Option(1.0, help="CPUs (and torch threads) per evaluation job."),
    gpus_per_trial: float = typer.Option(0.0, help="Ray: GPUs per job (fractional allowed)."),
    max_concurrent: int = typer.Option(0, help="Ray: most jobs at once (0: as resources allow)."),
    address: Optional[str] = typer.Option(None, help="Ray: join a cluster (auto | ray://host:port)."),
    max_failures: int = typer.Option(0, help="Ray: retry a failing job this many times."),
    reuse_older_code: bool = typer.Option(False, "--reuse-older-code", help="Also evaluate models whose training code changed since (their rows are marked)."),
) -> None:
    """Evaluate the kept models of a run (new metrics, new post-hoc methods): trains nothing."""
    from bench.cli.main import _grid_arguments, console, eval_overrides, run_sweep
    from bench.config.settings import parse_override
    from bench.store.records import RunStore, is_run_dir
    from bench.sweep.executors import LocalExecutor, RayExecutor

    run_dir = results_dir / run
    if not is_run_dir(run_dir):
        raise UserError(f"no run {run!r} under {results_dir}/; train models first with `bench run --run-name {run}`")
    if executor not in ("ray", "local"):
        raise UserError(f"bad --executor {executor!r}: expected ray or local")
    extra = [parse_override(item) for item in set_]
    for key, _ in extra:
        if not key.startswith("eval."):
            raise UserError(f"bench eval changes evaluation settings only (eval.*), not {key}: a training setting "
                            "needs new models, so use `bench run --set ...`")
    extra.extend(eval_overrides(eval_))
    if data_root is not None:
        if not data_root.is_dir():
            raise UserError(f"--data-root {data_root} is not a folder; point it at the folder that holds the dataset")
        extra.append(("data.root", str(data_root.expanduser().resolve())))
    store = RunStore(run_dir)
    models = [r for r in store.models.records() if r.get("status") == "ok" and r.get("spec")]
    if not models:
        raise UserError(f"{run_dir} keeps no trained model (runs made before models were kept, or with "
                        "train.keep_models=false); train them with `bench run`")
    evaluated = sorted({row["method"] for r in store.records() for row in r.get("rows") or [] if row.get("method")}
                       | {r["extractor"] for r in models if r.get("imported") and r.get("extractor")})
    settings: dict[str, tuple[str, tuple, list[dict]]] = {}
    for record in models:
        spec = record["spec"]
        stored = tuple((k, v) for k, v in spec.get("overrides") or []
                       if not str(k).startswith("eval.") and not (data_root is not None and k == "data.root"))
        key = json.dumps([spec["profile"], stored], sort_keys=True, default=list)   # values may be lists
        settings.setdefault(key, (spec["profile"], stored, []))[2].append(spec)
    if executor == "ray":
        runner = RayExecutor(console, cpus_per_trial, gpus_per_trial, max_concurrent, address, max_failures)
        if gpus_per_trial > 0:
            runner.check_resources()
    else:
        runner = LocalExecutor(console, int(max(1, cpus_per_trial)))
    for profile, stored, specs in settings.values():
        wanted_methods = methods or ",".join(evaluated or sorted({s["method"] for s in specs}))
        wanted_datasets = datasets or ",".join(sorted({s["dataset"] for s in specs}))
        wanted_seeds = seeds or ",".join(str(v) for v in sorted({s["seed"] for s in specs}))
        method_list, dataset_list, au_modes, seed_list = _grid_arguments(wanted_methods, wanted_datasets, au, wanted_seeds)
        au_modes = [m for m in au_modes if any(s["au"] == m for s in specs)]
        dataset_list = [d for d in dataset_list if any(s["dataset"] == d for s in specs)]
        if not au_modes or not dataset_list:
            continue
        run_sweep(runner, run_dir, method_list, dataset_list, au_modes, seed_list, profile, stored + tuple(extra),
                  True, gpus_per_trial=gpus_per_trial, cpus_per_trial=cpus_per_trial, train=False,
                  reuse_older_code=reuse_older_code, executor=executor)
