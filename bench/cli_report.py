"""``bench table``, ``bench figures`` and ``bench report``: read one or several runs and render them.

Kept apart from ``bench/cli.py`` (training) so reporting can grow without touching the runner.
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
    from bench.store import run_dirs

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


def load_frame(run_dirs: list[Path], methods: list[str], datasets: list[str], config: str | None):
    """Merged, filtered rows of the given runs."""
    import polars as pl

    from bench.store import RunStore
    from bench.table import filter_frame, merge_frames

    frame = merge_frames(RunStore(d).frame() for d in run_dirs)
    where = "run " + ", ".join(d.name for d in run_dirs)
    if frame.is_empty():
        if methods or datasets:
            raise UserError(f"{where} has no results to filter")
        return frame
    frame = filter_frame(frame, methods, datasets, where)
    if config:
        if "config_hash" not in frame.columns:
            raise UserError(f"--config {config!r}: {where} has no finished trials")
        keep = frame.filter(pl.col("config_hash").str.starts_with(config))
        if keep.is_empty():
            have = ", ".join(sorted(frame["config_hash"].drop_nulls().unique().to_list()))
            raise UserError(f"--config {config!r} matches no trial in {where} (configs: {have or 'none'})")
        frame = keep
    return frame


def build(run_dirs: list[Path], results_dir: Path, *, methods: list[str], datasets: list[str], metric: list[str],
          layer: str, spread: str, test: str, alpha: float, reference: str | None, reference_mode: str,
          config: str | None):
    """The ``Table`` behind every format (shared with ``bench report``)."""
    from bench.table import METRIC_KEYS, build_table, load_reference
    from methods import get_method, method_names

    frame = load_frame(run_dirs, methods, datasets, config)
    catalog = {}
    for name in method_names():
        cls = get_method(name)
        catalog[name] = (cls.title, cls.family)
    ref = load_reference(reference, results_dir) if reference else None
    return build_table(frame, layer, method_names(), metrics=metric or list(METRIC_KEYS), spread=spread,
                       test=test, alpha=alpha, reference=ref, reference_mode=reference_mode, catalog=catalog)


def _write(path: Path, text: str) -> None:
    from bench.store import atomic_write_text

    atomic_write_text(path, text)
    console.print(f"wrote [bold]{path}[/]")


RUN_HELP = "Run folder name(s), repeatable or comma-separated; several runs are merged (default: the latest run)."


def table(
    run: Optional[List[str]] = typer.Option(None, help=RUN_HELP),
    results_dir: Path = typer.Option(Path("results"), help="Where run folders live."),
    format: str = typer.Option("markdown", help="markdown | latex | csv."),
    layer: str = typer.Option("auto", help="Layer whose ATT-COS is shown; auto: each method's alignment layer (layer5 for the CNNs)."),
    methods: Optional[List[str]] = typer.Option(None, help="Only these methods (comma-separated)."),
    datasets: Optional[List[str]] = typer.Option(None, help="Only these datasets (comma-separated)."),
    metric: Optional[List[str]] = typer.Option(None, help="Metrics: cl, cam-cos, att-cos (default: all three)."),
    spread: str = typer.Option("std", help="Spread over seeds: std | ci (95% confidence interval)."),
    test: str = typer.Option("t", help="Paired test of AU on vs off over seeds: t | wilcoxon."),
    alpha: float = typer.Option(0.05, help="Significance threshold of the paired test."),
    reference: Optional[str] = typer.Option(None, help="'paper' (results/reference/paper.csv) or a CSV of published numbers."),
    reference_mode: str = typer.Option("side", help="side (reference columns next to ours) | delta (ours − reference)."),
    config: Optional[str] = typer.Option(None, help="Only trials whose config hash starts with this."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Print the comparison table of one or several runs (the paper's Tables 1-2)."""
    from bench.table import RENDERERS, to_rich

    if format not in RENDERERS:
        raise UserError(f"bad --format {format!r}: expected {', '.join(RENDERERS)}")
    run_dirs = resolve_runs(results_dir, run)
    result = build(run_dirs, results_dir, methods=_split(methods), datasets=_split(datasets), metric=_split(metric),
                   layer=layer, spread=spread, test=test, alpha=alpha, reference=reference,
                   reference_mode=reference_mode, config=config)
    if output is not None:
        _write(output, RENDERERS[format](result))
        return
    if format == "markdown":
        console.print(f"run [bold]{', '.join(str(d) for d in run_dirs)}[/]")
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
) -> None:
    """Write Fig. 1-style PNGs: per-class average attention and CAM w/o vs w/ AU, and a gallery."""
    from bench.figures import write_figures

    run_dirs = resolve_runs(results_dir, run)
    paths = write_figures(run_dirs, out or run_dirs[0] / "figures", methods=_split(methods),
                          datasets=_split(datasets), layer=layer)
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
) -> None:
    """Write one Markdown report: table, figures, provenance and wall times."""
    from bench.report import write_report

    run_dirs = resolve_runs(results_dir, run)
    result = build(run_dirs, results_dir, methods=[], datasets=[], metric=[], layer=layer, spread=spread,
                   test=test, alpha=alpha, reference=reference, reference_mode="side", config=None)
    path = write_report(run_dirs, result, out or run_dirs[0] / "report.md", with_figures=figures)
    console.print(f"wrote [bold]{path}[/]")
