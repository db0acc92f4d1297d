"""The ``bench`` command line: run the grid, print the table, list methods, measure speed.

Heavy libraries (torch, timm, ray) are imported inside the commands, so ``bench --help`` is fast.
Bad input ends in one line on stderr and exit code 2; a failed trial is reported in the summary
and makes ``bench run`` exit 1 after the rest of the sweep has finished.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from bench.errors import UserError, is_user_error, one_line

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Benchmark CAM methods for facial expression recognition with and without AU alignment.")
console = Console(stderr=True, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _seeds(value: str) -> list[int]:
    try:
        return [int(v) for v in _split(value)]
    except ValueError:
        raise UserError(f"bad --seeds {value!r}: expected integers like 0,1,2") from None


@app.command()
def run(
    methods: str = typer.Option("cam", help="Comma-separated method names, or 'all'."),
    datasets: str = typer.Option("synthetic", help="Comma-separated dataset names."),
    au: str = typer.Option("both", help="AU alignment: off | on | both."),
    seeds: str = typer.Option("0", help="Comma-separated seeds."),
    profile: str = typer.Option("demo", help="Profile name (bench/profiles) or a .toml path."),
    data_root: Optional[Path] = typer.Option(None, help="Dataset root (sets data.root; default $BENCH_DATA)."),
    set_: List[str] = typer.Option([], "--set", help="Override a config field: key=value (repeatable)."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="TOML file of overrides (e.g. bench tune's best.toml); --set wins."),
    executor: str = typer.Option("ray", help="ray | local (in-process, for debugging)."),
    results_dir: Path = typer.Option(Path("results"), help="Where run folders live."),
    run_name: Optional[str] = typer.Option(None, help="Run folder name (default: the profile name)."),
    cpus_per_trial: float = typer.Option(1.0, help="Ray: CPUs per trial."),
    gpus_per_trial: float = typer.Option(0.0, help="Ray: GPUs per trial (fractional allowed, e.g. 0.5)."),
    max_concurrent: int = typer.Option(0, help="Ray: most trials at once (0: as resources allow)."),
    address: Optional[str] = typer.Option(None, help="Ray: join a cluster (auto | ray://host:port)."),
    max_failures: int = typer.Option(0, help="Ray: retry a failing trial this many times (it resumes from its checkpoint)."),
    share: bool = typer.Option(True, "--share/--no-share", help="Post-hoc extractors reuse the model they train like."),
) -> None:
    """Train and evaluate every (method, dataset, AU, seed) cell; finished cells are skipped."""
    from bench.config import parse_override, resolve
    from bench.data import dataset_names
    from bench.executors import LocalExecutor, RayExecutor
    from bench.spec import expand_grid
    from bench.store import RunStore
    from methods import get_method, method_names

    method_list = method_names() if methods.strip() == "all" else _split(methods)
    for name in method_list:
        get_method(name)
    dataset_list = _split(datasets)
    for name in dataset_list:
        if name not in dataset_names():
            raise UserError(f"unknown dataset {name!r}; known datasets: {', '.join(dataset_names())}")
    modes = {"off": [False], "on": [True], "both": [False, True]}
    if au not in modes:
        raise UserError(f"bad --au {au!r}: expected off, on or both")
    if executor not in ("ray", "local"):
        raise UserError(f"bad --executor {executor!r}: expected ray or local")
    from bench.tune import config_overrides

    file_overrides = config_overrides(config_file) if config_file is not None else []
    overrides = tuple(file_overrides) + tuple(parse_override(item) for item in set_)
    if data_root is not None:   # absolute: Ray workers run in other folders
        overrides += (("data.root", str(data_root.resolve())),)
    from bench.data.cache import preflight
    from bench.spec import group_methods

    trained = [train for train, _ in group_methods(method_list, share)]
    configs = {(ds, m): resolve(profile, list(overrides), ds, m) for ds in dataset_list for m in {*trained, *method_list}}
    for ds in dataset_list:   # missing data, bad layout, no landmarks: one line before any trial
        preflight(ds, configs[ds, trained[0]].data)
    for config in configs.values():
        for name in method_list:
            try:
                get_method(name).make_config(config.methods.get(name, {}))
            except (TypeError, ValueError) as exc:
                raise UserError(f"bad options for method {name!r}: {exc}") from None
    # A profile given as a file travels to workers as an absolute path (Tune changes their cwd).
    profile_key = str(Path(profile).resolve()) if profile.endswith(".toml") else profile
    specs = expand_grid(method_list, dataset_list, modes[au], _seeds(seeds), profile_key, overrides,
                        lambda ds, m: configs[ds, m].digest(), share)
    run_dir = results_dir / (run_name or Path(profile).stem)
    store = RunStore(run_dir)
    done = store.finished_ids()
    todo = [s for s in specs if s.id not in done]
    console.print(f"run [bold]{run_dir}[/]: {len(specs)} trials, {len(specs) - len(todo)} already finished, "
                  f"{len(todo)} to run ({executor})")
    outcomes = []
    if todo:
        if executor == "local":
            runner = LocalExecutor(console)
        else:
            runner = RayExecutor(console, cpus_per_trial, gpus_per_trial, max_concurrent, address, max_failures)
        outcomes = runner.run(todo, run_dir)
    failed = [o for o in outcomes if o.status != "ok"]
    console.print(f"done: {len(outcomes) - len(failed)} trained, {len(specs) - len(todo)} skipped (finished), "
                  f"{len(failed)} failed")
    for o in failed:
        console.print(f"[red]failed[/] {o.spec.label}: {o.error}")
    if failed:
        raise typer.Exit(1)


@app.command()
def methods() -> None:
    """List the registered methods with their family and defaults."""
    from rich.table import Table as RichTable

    from methods import all_methods

    t = RichTable(title="registered methods")
    for col in ("name", "title", "family", "trains like", "alignment layers", "defaults"):
        t.add_column(col)
    for name, cls in all_methods().items():
        defaults = ", ".join(f"{k}={v}" for k, v in cls.defaults().items()) or "-"
        t.add_row(name, cls.title, cls.family, cls.trains_like or "-", ",".join(cls.alignment_layers), defaults)
    stdout.print(t)


@app.command()
def perf(
    profile: str = typer.Option("demo", help="Profile whose model, image size and batch are measured."),
    method: str = typer.Option("cam", help="Method to measure."),
    steps: int = typer.Option(8, help="Timed steps per variant and round (5 interleaved rounds, fastest kept)."),
    extractor: str = typer.Option("gradcam", help="CAM extractor for the evaluation measurement ('' to skip)."),
    set_: List[str] = typer.Option([], "--set", help="Override a config field: key=value."),
) -> None:
    """Speed ratios against a bare PyTorch loop, on the same model and batch."""
    from bench.config import parse_override, resolve
    from bench.perf import measure, render

    config = resolve(profile, [parse_override(s) for s in set_])
    stdout.print(render(measure(config, method, steps, extractor or None)))


def _register_commands() -> None:
    """Commands that live in their own modules (one concern per file)."""
    from bench import cli_landmarks, cli_plugins, cli_report, cli_tune

    cli_landmarks.register(app)
    cli_report.register(app)
    cli_plugins.register(app)
    cli_tune.register(app)


_register_commands()


def main() -> None:
    import click

    try:
        code = app(standalone_mode=False)
    except click.ClickException as exc:   # usage errors: bad option, missing value
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)
    except Exception as exc:
        if not is_user_error(exc):
            raise
        console.print(f"[red]error:[/] {one_line(exc)}", highlight=False)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
