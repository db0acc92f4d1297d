"""``bench tune``: hyperparameter search for λ, alignment layers and learning rate."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from bench.errors import UserError

console = Console(stderr=True, soft_wrap=True, highlight=False)


def tune_command(
    method: str = typer.Option(..., help="Method to tune."),
    dataset: str = typer.Option("synthetic", help="Dataset."),
    profile: str = typer.Option("demo", help="Profile name or .toml path."),
    set_: List[str] = typer.Option([], "--set", help="Fixed overrides: key=value."),
    num_samples: int = typer.Option(8, help="Configurations to try."),
    objective: str = typer.Option("cl", help="cl (validation CL) | cl+att (CL/100 + w·ATT-COS on validation)."),
    att_weight: float = typer.Option(1.0, help="w in the cl+att objective."),
    seed: int = typer.Option(0, help="Seed for the data, the models and the search."),
    results_dir: Path = typer.Option(Path("results"), help="Where run folders live."),
    run_name: Optional[str] = typer.Option(None, help="Folder for the search (default: tune-<method>-<dataset>)."),
    cpus_per_trial: float = typer.Option(1.0, help="CPUs per trial."),
    gpus_per_trial: float = typer.Option(0.0, help="GPUs per trial (fractional allowed)."),
    max_concurrent: int = typer.Option(0, help="Most trials at once (0: as resources allow)."),
    address: Optional[str] = typer.Option(None, help="Join a Ray cluster (auto | ray://host:port)."),
) -> None:
    """Search λ, the alignment layer(s) and the learning rate on the validation split (ASHA)."""
    from bench.config import parse_override, resolve
    from bench.data import dataset_names
    from bench.tune import TuneRequest, objective_value, run_tune
    from methods import get_method

    get_method(method)
    if dataset not in dataset_names():
        raise UserError(f"unknown dataset {dataset!r}; known datasets: {', '.join(dataset_names())}")
    objective_value(0.0, 0.0, objective, att_weight)          # validates --objective
    overrides = tuple(parse_override(item) for item in set_)
    resolve(profile, list(overrides), dataset, method)         # validates the profile and --set
    profile_key = str(Path(profile).resolve()) if profile.endswith(".toml") else profile
    out_dir = (results_dir / (run_name or f"tune-{method}-{dataset}")).resolve()
    request = TuneRequest(method, dataset, profile_key, overrides, seed, num_samples, objective, att_weight)
    result = run_tune(request, out_dir, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                      max_concurrent=max_concurrent, address=address)
    best = result["best"]
    console.print(f"{result['trials']} trials; best objective {result['objective']:.4f} with "
                  f"au.weight={best['au.weight']:.4g}, au.layers={best['au.layers']}, train.lr={best['train.lr']:.3g}")
    console.print(f"wrote {out_dir / 'best.toml'} and {out_dir / 'trials.csv'}; use: "
                  f"bench run --methods {method} --datasets {dataset} --profile {profile} --config {out_dir / 'best.toml'}")


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_command)
