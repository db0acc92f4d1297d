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
from typer import TyperException

from bench.errors import UserError, is_user_error, one_line

app = typer.Typer(add_completion=False, no_args_is_help=True)
console = Console(stderr=True, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _seeds(value: str) -> list[int]:
    try:
        return [int(v) for v in _split(value)]
    except ValueError:
        raise UserError(f"bad --seeds {value!r}: expected integers like 0,1,2") from None


RUN_HELP = """Train and evaluate every (method, dataset, AU, seed) cell; finished cells are skipped.

\b
Datasets: synthetic (no download), rafdb, affectnet, folder (see docs/data.md).
Data root: --data-root DIR, or $BENCH_DATA; decoded images are cached under $BENCH_CACHE
(default ~/.cache/au-cam-bench). Profiles: demo, smoke, paper, paper-dry, or a .toml file.
`bench run --list-settings` lists every --set key with its value in the chosen profile.
"""


EVAL_HELP = ("base (CL, CAM-COS, ATT-COS), extended (+ faithfulness, sanity, AU localisation), interventions "
             "(+ does the decision use the AUs?), or a comma-separated mix: extended,interventions.")


def eval_overrides(value: str) -> tuple[tuple[str, bool], ...]:
    """``--eval extended,interventions`` -> the eval.* switches it turns on (base: none)."""
    kinds = _split(value)
    bad = [k for k in kinds if k not in ("base", "extended", "interventions")]
    if bad or not kinds:
        raise UserError(f"bad --eval {value!r}: expected base, extended, interventions or a comma-separated mix")
    return tuple((f"eval.{k}", True) for k in kinds if k != "base")


@app.command(help=RUN_HELP)
def run(
    methods: str = typer.Option("cam", help="Comma-separated method names, or 'all' (see `bench methods`)."),
    datasets: str = typer.Option("synthetic", help="Comma-separated: synthetic, rafdb, affectnet, folder."),
    au: str = typer.Option("both", help="AU alignment: off | on | both."),
    seeds: str = typer.Option("0", help="Comma-separated seeds."),
    profile: str = typer.Option("demo", help="Profile: demo | smoke | paper | paper-dry, or a .toml path."),
    data_root: Optional[Path] = typer.Option(None, help="Dataset root (sets data.root; default $BENCH_DATA)."),
    set_: List[str] = typer.Option([], "--set", help="Override a setting: key=value, repeatable (see --list-settings)."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="TOML file of overrides (e.g. bench tune's best.toml); --set wins."),
    executor: str = typer.Option("ray", help="ray | local (in-process, for debugging)."),
    results_dir: Path = typer.Option(Path("results"), help="Where run folders live."),
    run_name: Optional[str] = typer.Option(None, help="Run folder name (default: the profile name)."),
    cpus_per_trial: float = typer.Option(1.0, help="CPUs (and torch threads) per trial."),
    gpus_per_trial: float = typer.Option(0.0, help="Ray: GPUs per trial (fractional allowed, e.g. 0.5)."),
    max_concurrent: int = typer.Option(0, help="Ray: most trials at once (0: as resources allow)."),
    address: Optional[str] = typer.Option(None, help="Ray: join a cluster (auto | ray://host:port)."),
    max_failures: int = typer.Option(0, help="Ray: retry a failing trial this many times (it resumes from its checkpoint)."),
    share: bool = typer.Option(True, "--share/--no-share", help="Post-hoc extractors reuse the model they train like."),
    eval_: str = typer.Option("base", "--eval", help=EVAL_HELP),
    log: List[str] = typer.Option([], help="Ray: stream metrics to tensorboard | mlflow | wandb (repeatable or comma-separated)."),
    list_settings: bool = typer.Option(False, "--list-settings", help="List every --set key with its value in --profile, then exit."),
    reuse_older_code: bool = typer.Option(False, "--reuse-older-code", help="Evaluate kept models whose code alone changed instead of training them again (their rows are marked)."),
) -> None:
    from bench.cli.paths import absolute_data_root, data_root_override
    from bench.config.settings import parse_override
    from bench.integrations.tune import config_overrides

    if list_settings:
        from bench.config.help import settings_table

        sys.stdout.write(settings_table(profile))
        return
    method_list, dataset_list, au_modes, seed_list = _grid_arguments(methods, datasets, au, seeds)
    if executor not in ("ray", "local"):
        raise UserError(f"bad --executor {executor!r}: expected ray or local")
    log_kinds = _split(",".join(log))
    if log_kinds and executor != "ray":
        raise UserError("--log streams through Ray Tune's logger callbacks: use it with --executor ray")
    if cpus_per_trial <= 0:
        raise UserError(f"bad --cpus-per-trial {cpus_per_trial:g}: expected a positive number")
    file_overrides = config_overrides(config_file) if config_file is not None else []
    overrides = tuple(file_overrides) + tuple(parse_override(item) for item in set_)
    overrides += eval_overrides(eval_)
    overrides = absolute_data_root(overrides)
    overrides += data_root_override(data_root, dataset_list, overrides)
    callbacks_for = None
    if log_kinds:
        from bench.integrations.tracking import tune_callbacks

        callbacks_for = lambda run_dir: tune_callbacks(log_kinds, run_dir)   # noqa: E731 - checked below
        callbacks_for(results_dir.resolve() / "_check")                      # a missing extra: one line, now
    from bench.sweep.executors import LocalExecutor, RayExecutor

    if executor == "ray":
        runner = RayExecutor(console, cpus_per_trial, gpus_per_trial, max_concurrent, address, max_failures)
        if gpus_per_trial > 0:
            runner.check_resources()      # GPUs the cluster lacks: one line now, not after the planning
    else:
        runner = LocalExecutor(console, int(max(1, cpus_per_trial)))
    run_dir = results_dir / (run_name or Path(profile).stem)
    run_sweep(runner, run_dir, method_list, dataset_list, au_modes, seed_list, profile, overrides, share,
              gpus_per_trial=gpus_per_trial, cpus_per_trial=cpus_per_trial, train=True,
              reuse_older_code=reuse_older_code, callbacks_for=callbacks_for, executor=executor)


def run_sweep(runner, run_dir: Path, method_list, dataset_list, au_modes, seed_list, profile: str, overrides: tuple,
              share: bool, *, gpus_per_trial: float, cpus_per_trial: float, train: bool, reuse_older_code: bool,
              callbacks_for=None, executor: str = "ray") -> None:
    """Plan (what to train, what to evaluate, why), run the jobs, summarise; exit 1 if any failed."""
    from bench.cli.paths import warn_unused_method_options
    from bench.plan.spec import setting_digest
    from bench.sweep.preflight import plan_sweep

    # A profile given as a file travels to workers as an absolute path (Tune changes their cwd).
    profile_key = str(Path(profile).resolve()) if profile.endswith(".toml") else profile
    device_type = "cuda" if gpus_per_trial > 0 else "cpu"
    threads = int(max(1, cpus_per_trial))
    with console.status("planning the sweep") as status:
        plan = plan_sweep(method_list, dataset_list, au_modes, seed_list, profile_key, overrides, share, run_dir,
                          device_type=device_type, threads=threads, train=train, reuse_older_code=reuse_older_code,
                          say=lambda line: status.update(line))
    warn_unused_method_options(overrides, method_list)     # after planning: names and types are checked there
    for note in plan.notes:
        console.print(note, highlight=False)
    setting = setting_digest(profile_key, overrides)
    _warn_other_settings(run_dir, setting)
    jobs = plan.jobs
    trains = sum(job.train for job in jobs)
    evaluations = sum(len(job.evaluate) for job in jobs)
    console.print(f"run [bold]{run_dir}[/] (setting {setting}): {len(plan.models)} models, {trains} to train; "
                  f"evaluations: {plan.done} already finished, {evaluations} to run ({executor})", highlight=False)
    for job in jobs:
        console.print(f"  {job.label}: {job.reason}", highlight=False, markup=False)
    outcomes = []
    if jobs:
        if callbacks_for is not None:
            runner.callbacks = callbacks_for(run_dir.resolve())
        outcomes = runner.run(jobs, run_dir)
    failed = [o for o in outcomes if o.status != "ok"]
    trained = sum(o.job.train for o in outcomes if o.status == "ok")
    evaluated = sum(len(o.job.evaluate) for o in outcomes if o.status == "ok")
    console.print(f"done: {trained} trained, {evaluated} evaluated, {plan.done} skipped (finished), {len(failed)} failed",
                  highlight=False)
    for o in failed:
        console.print(f"[red]failed[/] {o.job.label}: {o.error}", highlight=False)
    if failed:
        raise typer.Exit(1)


def _grid_arguments(methods: str, datasets: str, au: str, seeds: str):
    """The grid's axes from the command line, each name checked (one line on a typo)."""
    from bench.data import dataset_names
    from methods import get_method, method_names

    method_list = method_names() if methods.strip() == "all" else _split(methods)
    if not method_list:
        raise UserError("--methods is empty: give method names (see `bench methods`) or 'all'")
    for name in method_list:
        get_method(name)
    dataset_list = _split(datasets)
    if not dataset_list:
        raise UserError(f"--datasets is empty: give one or more of {', '.join(dataset_names())}")
    for name in dataset_list:
        if name not in dataset_names():
            raise UserError(f"unknown dataset {name!r}; known datasets: {', '.join(dataset_names())}")
    modes = {"off": [False], "on": [True], "both": [False, True]}
    if au not in modes:
        raise UserError(f"bad --au {au!r}: expected off, on or both")
    seed_list = _seeds(seeds)
    if not seed_list:
        raise UserError("--seeds is empty: give integers like 0,1,2")
    return method_list, dataset_list, modes[au], seed_list


def _warn_other_settings(run_dir: Path, setting: str) -> None:
    """A run folder filled by another command line (other profile or --set) gets a second setting:
    say so, since tables of that folder then need --config to pick one."""
    from bench.store.settings import settings_in_run

    others = [s for s in settings_in_run(run_dir) if s.setting != setting]
    if others:
        names = ", ".join(f"{s.setting} ({s.description})" for s in others)
        console.print(f"[yellow]warning:[/] {run_dir} already holds results of another setting: {names}; this run adds "
                      f"setting {setting}. Tables of this folder pick one with --config, or use --run-name to keep "
                      "them apart", highlight=False)


@app.command()
def methods() -> None:
    """List the registered methods: family, defaults and where each comes from (a skipped plugin
    gets one warning line; `bench check-plugin NAME` shows its full error)."""
    from rich.table import Table as RichTable

    from methods import all_methods, plugin_origin

    t = RichTable(title="registered methods")
    for col in ("name", "title", "family", "trains like", "alignment layers", "defaults", "from"):
        t.add_column(col)
    for name, cls in all_methods().items():
        defaults = ", ".join(f"{k}={v}" for k, v in cls.defaults().items()) or "-"
        origin = plugin_origin(cls)
        t.add_row(name, cls.title, cls.family, cls.trains_like or "-", ",".join(cls.alignment_layers), defaults,
                  f"{origin['distribution']} {origin['version']}")
    # Piped output keeps every value whole (rich would fit the table into 80 columns).
    out = stdout if stdout.is_terminal else Console(highlight=False, soft_wrap=True, width=10_000)
    out.print(t)


@app.command()
def perf(
    profile: str = typer.Option("demo", help="Profile whose model, image size and batch are measured."),
    method: str = typer.Option("cam", help="Method to measure."),
    steps: int = typer.Option(8, help="Timed steps per variant and round (5 interleaved rounds, fastest kept)."),
    extractor: str = typer.Option("gradcam", help="CAM extractor for the evaluation measurement ('' to skip)."),
    set_: List[str] = typer.Option([], "--set", help="Override a config field: key=value."),
    extended: int = typer.Option(0, "--extended", help="Also time the extended evaluation on N test faces (0: skip)."),
) -> None:
    """Speed ratios against a bare PyTorch loop, on the same model and batch."""
    from bench.config.settings import parse_override, resolve
    from bench.sweep.perf import measure, render

    config = resolve(profile, [parse_override(s) for s in set_])
    stdout.print(render(measure(config, method, steps, extractor or None, extended_sample=extended)))


def _register_commands() -> None:
    """Commands that live in their own modules (one concern per file)."""
    from bench.cli import cache, eval as evaluate, importer, landmarks, plugins, report, tune

    cache.register(app)
    evaluate.register(app)
    importer.register(app)
    landmarks.register(app)
    report.register(app)
    plugins.register(app)
    tune.register(app)


_register_commands()


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            stdout.print(f"au-cam-bench {version('au-cam-bench')}")
        except PackageNotFoundError:
            stdout.print("au-cam-bench (not installed)")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Benchmark CAM methods for facial expression recognition with and without AU alignment.

    Environment: BENCH_DATA (dataset root), BENCH_CACHE (decoded-image cache), BENCH_PLUGINS
    (plugin modules to import).
    """


def _usage_error(exc: Exception) -> str:
    """One line for a command-line mistake (typer bundles its own click, so catch its classes)."""
    ctx = getattr(exc, "ctx", None)
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    hint = f" (try '{ctx.command_path} --help')" if ctx is not None else " (try 'bench --help')"
    return f"{one_line(message)}{hint}"


def main() -> None:
    from typer._click.exceptions import NoArgsIsHelpError   # typer's bundled click: no public path

    try:
        code = app(standalone_mode=False, prog_name="bench")
    except NoArgsIsHelpError as exc:          # `bench` or `bench <group>` alone: the help, then exit 2
        sys.stderr.write(exc.format_message() + "\n")
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except TyperException as exc:             # bad option, missing value, unknown command, bad number
        console.print(f"[red]error:[/] {_usage_error(exc)}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if not is_user_error(exc):
            raise
        console.print(f"[red]error:[/] {one_line(exc)}", highlight=False)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
