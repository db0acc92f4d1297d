"""``bench tune``: per-AU-mode search (learning rate w/o AU; learning rate, λ and layers w/ AU)."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from bench.errors import UserError

console = Console(stderr=True, soft_wrap=True, highlight=False)

AU_CHOICES = {"off": (False,), "on": (True,), "both": (False, True)}


def tune_command(
    method: str = typer.Option(..., help="Method to tune."),
    dataset: str = typer.Option("synthetic", help="Dataset."),
    profile: str = typer.Option("demo", help="Profile name or .toml path."),
    data_root: Optional[Path] = typer.Option(None, help="Dataset root (sets data.root; default $BENCH_DATA)."),
    set_: List[str] = typer.Option([], "--set", help="Fixed overrides: key=value."),
    au: str = typer.Option("both", help="AU modes to tune: off (lr) | on (lr, λ, layers) | both."),
    num_samples: int = typer.Option(8, help="Configurations to try per AU mode."),
    objective: str = typer.Option("cl", help="W/ AU: cl (validation CL) | cl+att (CL/100 + w·ATT-COS on "
                                             "validation). W/o AU the objective is always validation CL."),
    att_weight: float = typer.Option(1.0, help="w in the cl+att objective."),
    seed: int = typer.Option(0, help="Seed for the data, the models and the search."),
    results_dir: Path = typer.Option(Path("results"), help="Where run folders live."),
    run_name: Optional[str] = typer.Option(None, help="Folder for the search (default: tune-<method>-<dataset>)."),
    cpus_per_trial: float = typer.Option(1.0, help="CPUs per trial."),
    gpus_per_trial: float = typer.Option(0.0, help="GPUs per trial (fractional allowed)."),
    max_concurrent: int = typer.Option(0, help="Most trials at once (0: as resources allow)."),
    address: Optional[str] = typer.Option(None, help="Join a Ray cluster (auto | ray://host:port)."),
) -> None:
    """Tune each AU mode on its own objective on the validation split (Ray Tune, random search + ASHA).
    The data, AU-map coverage and one dry step are checked first, as `bench run` does."""
    from bench.config.settings import parse_override, resolve
    from bench.data import dataset_names
    from bench.cli.paths import absolute_data_root, data_root_override
    from bench.integrations.tune import MODE_NAMES, TuneRequest, objective_value, preflight, run_tune
    from methods import get_method

    get_method(method)
    if dataset not in dataset_names():
        raise UserError(f"unknown dataset {dataset!r}; known datasets: {', '.join(dataset_names())}")
    if au not in AU_CHOICES:
        raise UserError(f"bad --au {au!r}: expected off, on or both")
    if num_samples < 1:
        raise UserError(f"bad --num-samples {num_samples}: expected at least 1 configuration per AU mode")
    objective_value(0.0, 0.0, objective, att_weight)          # validates --objective
    overrides = absolute_data_root(tuple(parse_override(item) for item in set_))
    overrides += data_root_override(data_root, [dataset], overrides)
    resolve(profile, list(overrides), dataset, method)         # validates the profile and --set
    profile_key = str(Path(profile).resolve()) if profile.endswith(".toml") else profile
    out_dir = (results_dir / (run_name or f"tune-{method}-{dataset}")).resolve()
    request = TuneRequest(method, dataset, profile_key, overrides, seed, num_samples, objective, att_weight,
                          modes=AU_CHOICES[au])
    with console.status("checking the data and the model") as status:     # bench run's preflight
        notes = preflight(request, say=lambda line: status.update(line))
    for note in notes:
        console.print(note, markup=False)
    result = run_tune(request, out_dir, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                      max_concurrent=max_concurrent, address=address)
    console.print(f"{result['trials']} trials" + (f"; layer sets offered w/ AU: {' | '.join(result['layers'])}"
                                                   if result["layers"] else ""))
    for au_flag in request.modes:
        mode = result["modes"][MODE_NAMES[au_flag]]
        chosen = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in mode["best"].items())
        console.print(f"{'w/ ' if au_flag else 'w/o'} AU: best {mode['objective_name']} {mode['objective']:.4f} "
                      f"with {chosen}")
    root = next((str(v) for k, v in overrides if k == "data.root" and v), "")
    console.print(f"wrote {out_dir / 'best.toml'} and {out_dir / 'trials.csv'}; use: "
                  f"bench run --methods {method} --datasets {dataset} --profile {profile}"
                  + (f" --data-root {shlex.quote(root)}" if root else "") + f" --config {out_dir / 'best.toml'}")


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_command)
