"""``bench table``, ``bench figures`` and ``bench report``: read one or several runs and render them.

Kept apart from ``bench/cli/main.py`` (training) so reporting can grow without touching the runner.
Heavy imports (matplotlib, scipy) happen inside the commands, so ``bench --help`` stays fast.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from bench.errors import UserError

console = Console(stderr=True, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command()(table)
    app.command()(figures)
    app.command()(report)


def _split(values: List[str] | None) -> list[str]:
    """Repeatable options that also accept comma-separated lists: --run a,b --run c."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def resolve_runs(results_dir: Path, runs: List[str] | None) -> list[Path]:
    """Run folders by name (default: the latest run); an unknown name is a user error."""
    from bench.store.records import run_dirs

    names = _split(runs)
    if not names:
        found = run_dirs(results_dir)
        if not found:
            raise UserError(f"no runs under {results_dir}/; start one with: bench run --methods cam --datasets synthetic")
        return [found[-1]]
    out = []
    for name in dict.fromkeys(names):
        run_dir = results_dir / name
        if not (run_dir / "trials").is_dir():
            known = ", ".join(p.name for p in run_dirs(results_dir)) or "none"
            raise UserError(f"no run {name!r} under {results_dir}/ (runs: {known})")
        out.append(run_dir)
    return out


def say_choice(selection, header: str | None = None) -> None:
    """One stderr line: the automatic choice of settings (it names the runs), else ``header``.
    Said once the output is ready, so a user error stays the only line."""
    if selection.note:
        console.print(selection.note, markup=False, highlight=False)
    elif header:
        console.print(header, markup=False, highlight=False)


def _trial_facts(record: dict) -> dict:
    """Per-trial columns the table needs beyond the rows' scalars."""
    from bench.store.settings import setting_of

    classes = None
    for row in record.get("rows") or []:
        if row.get("num_classes") is not None:
            classes = int(row["num_classes"])
        elif isinstance(row.get("confusion"), list) and row["confusion"]:
            classes = len(row["confusion"])
        if classes is not None:
            break
    return {"setting": setting_of(record), "num_classes": classes, "trial_status": record["status"]}


def load_frame(run_dirs: list[Path], methods: list[str], datasets: list[str], selection):
    """Merged, filtered rows of the selected trials of the given runs."""
    import polars as pl

    from bench.store.records import RunStore
    from bench.reporting.table import filter_frame, merge_frames

    frames = []
    for run_dir in run_dirs:
        frame = RunStore(run_dir).frame()
        facts = {r["id"]: _trial_facts(r) for r in selection.records(run_dir)}
        if frame.is_empty() or not facts:
            continue
        frame = frame.filter(pl.col("trial_id").is_in(list(facts)))
        ids = frame["trial_id"].to_list()
        frame = frame.with_columns(
            pl.Series("setting", [facts[i]["setting"] for i in ids], dtype=pl.Utf8),
            pl.Series("trial_status", [facts[i]["trial_status"] for i in ids], dtype=pl.Utf8),
            pl.Series("_classes", [facts[i]["num_classes"] for i in ids], dtype=pl.Int64))
        keep = pl.col("num_classes").cast(pl.Int64, strict=False) if "num_classes" in frame.columns else pl.lit(None, pl.Int64)
        frames.append(frame.with_columns(pl.coalesce(keep, pl.col("_classes")).alias("num_classes")).drop("_classes"))
    frame = merge_frames(frames)
    where = "run " + ", ".join(d.name for d in run_dirs)
    if frame.is_empty():
        if methods or datasets:
            raise UserError(f"{where} has no results to filter")
        return frame
    return filter_frame(frame, methods, datasets, where)


def _catalog() -> dict[str, tuple[str, str]]:
    from methods import get_method, method_names

    return {name: (get_method(name).title, get_method(name).family) for name in method_names()}


def build(frame, results_dir: Path, *, metric: list[str], layer: str, spread: str, test: str, alpha: float,
          reference: str | None, reference_mode: str):
    """The ``Table`` behind every format (shared with ``bench report``)."""
    from bench.reporting.table import METRIC_KEYS, build_table, load_reference
    from methods import method_names

    ref = load_reference(reference, results_dir) if reference else None
    return build_table(frame, layer, method_names(), metrics=metric or list(METRIC_KEYS), spread=spread,
                       test=test, alpha=alpha, reference=ref, reference_mode=reference_mode, catalog=_catalog())


def _write(path: Path, text: str) -> None:
    from bench.store.records import atomic_write_text

    atomic_write_text(path, text)
    console.print(f"wrote [bold]{path}[/]")


RUN_HELP = "Run folder name(s), repeatable or comma-separated; several runs are merged (default: the latest run)."
CONFIG_HELP = ("Only the trials of this setting (a prefix of the record's setting, or of a config hash); "
               "default: each run folder's newest setting.")


def table(
    run: Optional[List[str]] = typer.Option(None, help=RUN_HELP),
    results_dir: Path = typer.Option(Path("results"), help="Where run folders live."),
    format: str = typer.Option("markdown", help="markdown | latex | csv."),
    layer: str = typer.Option("auto", help="Layer whose ATT-COS is shown; auto: each method's alignment layer (layer5 for the CNNs)."),
    methods: Optional[List[str]] = typer.Option(None, help="Only these methods (comma-separated)."),
    datasets: Optional[List[str]] = typer.Option(None, help="Only these datasets (comma-separated)."),
    metric: Optional[List[str]] = typer.Option(None, help="Metrics: cl, cam-cos, att-cos (default: these three); "
                                                "from `bench run --eval extended`: deletion, insertion, road, sanity, "
                                                "pointing, mass, rank."),
    spread: str = typer.Option("std", help="Spread over seeds: std | ci (95% confidence interval)."),
    test: str = typer.Option("t", help="Paired test of AU on vs off over seeds: t | wilcoxon."),
    alpha: float = typer.Option(0.05, help="Significance threshold of the paired test."),
    reference: Optional[str] = typer.Option(None, help="'paper' (results/reference/paper.csv) or a CSV of published numbers."),
    reference_mode: str = typer.Option("side", help="side (reference columns next to ours) | delta (ours − reference)."),
    config: Optional[str] = typer.Option(None, help=CONFIG_HELP),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Print the comparison table of one or several runs (the paper's Tables 1-2)."""
    from bench.store.settings import select_settings
    from bench.reporting.table import RENDERERS, to_rich

    if format not in RENDERERS:
        raise UserError(f"bad --format {format!r}: expected {', '.join(RENDERERS)}")
    run_dirs = resolve_runs(results_dir, run)
    header = f"run {', '.join(str(d) for d in run_dirs)}" if format == "markdown" and output is None else None
    selection = select_settings(run_dirs, config)
    frame = load_frame(run_dirs, _split(methods), _split(datasets), selection)
    result = build(frame, results_dir, metric=_split(metric), layer=layer, spread=spread, test=test, alpha=alpha,
                   reference=reference, reference_mode=reference_mode)
    say_choice(selection, header)
    if output is not None:
        _write(output, RENDERERS[format](result))
        return
    if format == "markdown":
        if sys.stdout.isatty():
            Console(highlight=False).print(to_rich(result))
            return
    sys.stdout.write(RENDERERS[format](result))


def figures(
    run: Optional[List[str]] = typer.Option(None, help=RUN_HELP),
    results_dir: Path = typer.Option(Path("results"), help="Where run folders live."),
    out: Optional[Path] = typer.Option(None, help="Folder for the PNGs (default: <results>/<run>/figures)."),
    methods: Optional[List[str]] = typer.Option(None, help="Only these methods (comma-separated)."),
    datasets: Optional[List[str]] = typer.Option(None, help="Only these datasets (comma-separated)."),
    layer: Optional[str] = typer.Option(None, help="Attention layer (default: each method's alignment layer)."),
    config: Optional[str] = typer.Option(None, help=CONFIG_HELP),
) -> None:
    """Write Fig. 1-style PNGs: per-class average attention and CAM w/o vs w/ AU, a gallery, and
    deletion / insertion curves when the trials were evaluated with --eval extended."""
    from bench.reporting.figures import write_figures
    from bench.store.settings import select_settings

    run_dirs = resolve_runs(results_dir, run)
    selection = select_settings(run_dirs, config)
    paths = write_figures(run_dirs, out or run_dirs[0] / "figures", methods=_split(methods),
                          datasets=_split(datasets), layer=layer, selection=selection)
    say_choice(selection)
    for path in paths:
        sys.stdout.write(f"{path}\n")


def report(
    run: Optional[List[str]] = typer.Option(None, help=RUN_HELP),
    results_dir: Path = typer.Option(Path("results"), help="Where run folders live."),
    out: Optional[Path] = typer.Option(None, help="Markdown file to write (default: <results>/<run>/report.md)."),
    layer: str = typer.Option("auto", help="Layer whose ATT-COS is shown; auto: each method's alignment layer."),
    spread: str = typer.Option("std", help="Spread over seeds: std | ci."),
    test: str = typer.Option("t", help="Paired test: t | wilcoxon."),
    alpha: float = typer.Option(0.05, help="Significance threshold of the paired test."),
    reference: Optional[str] = typer.Option(None, help="'paper' or a CSV of published numbers, shown side by side."),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Also write and embed the figures."),
    config: Optional[str] = typer.Option(None, help=CONFIG_HELP),
) -> None:
    """Write one Markdown report: tables, figures, data, provenance and wall times."""
    from bench.reporting.report import write_report
    from bench.store.settings import select_settings
    from bench.reporting.table import extended_present

    run_dirs = resolve_runs(results_dir, run)
    selection = select_settings(run_dirs, config)
    frame = load_frame(run_dirs, [], [], selection)
    options = dict(layer=layer, spread=spread, test=test, alpha=alpha, reference=reference, reference_mode="side")
    result = build(frame, results_dir, metric=[], **options)
    present = extended_present(frame)
    extended = build(frame, results_dir, metric=present, **{**options, "reference": None}) if present else None
    path = write_report(run_dirs, result, out or run_dirs[0] / "report.md", with_figures=figures,
                        extended=extended, selection=selection)
    say_choice(selection)
    console.print(f"wrote [bold]{path}[/]")
