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
    from bench.store.records import is_run_dir, run_dirs

    names = _split(runs)
    if not names:
        found = run_dirs(results_dir)
        if not found:
            raise UserError(f"no runs under {results_dir}/; start one with: bench run --methods cam --datasets synthetic")
        return [found[-1]]
    out = []
    for name in dict.fromkeys(names):
        run_dir = results_dir / name
        if not is_run_dir(run_dir):
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
    return side_by_side(mark_imported(filter_frame(frame, methods, datasets, where)))


def mark_imported(frame):
    """Rows of models imported from elsewhere (``bench import``) or trained by older code and kept on
    purpose (``--reuse-older-code``) say so in their method title: never mixed in silently."""
    import polars as pl

    for column, mark in (("imported", " (imported)"), ("trained_by_older_code", " (older code)")):
        if frame.is_empty() or column not in frame.columns or not frame[column].fill_null(False).any():
            continue
        title = pl.col("title") if "title" in frame.columns else pl.col("method")
        frame = frame.with_columns(pl.when(pl.col(column).fill_null(False)).then(title + mark)
                                   .otherwise(title).alias("title"))
    return frame


def side_by_side(frame):
    """Runs that hold the same cells (e.g. ``--run imported,mine``) become rows of their own: the
    method is named with its run (``cam@imported``, "CAM [imported]"), so both show, side by side."""
    import polars as pl

    if frame.is_empty() or "run" not in frame.columns or frame["run"].n_unique() < 2:
        return frame
    keys = ["method", "dataset", "au", "seed"]
    clash = frame.group_by(keys).agg(pl.col("run").n_unique().alias("_runs")).filter(pl.col("_runs") > 1)
    if clash.is_empty():
        return frame
    clashing = set(clash["method"].to_list())
    named = pl.col("method").is_in(list(clashing))
    title = pl.col("title") if "title" in frame.columns else pl.col("method")
    return frame.with_columns(
        pl.when(named).then(pl.col("method") + "@" + pl.col("run")).otherwise(pl.col("method")).alias("method"),
        pl.when(named).then(title + " [" + pl.col("run") + "]").otherwise(title).alias("title"))


def face_source(run_dirs: list[Path]):
    """Per-face results of a result row, read through its run's store (None where it has none:
    rows without ``eval_id``, or evaluations written before per-face records were kept)."""
    from bench.store.records import RunStore

    stores = {d.name: RunStore(d) for d in run_dirs}
    cache: dict = {}

    def faces(row: dict):
        store, eval_id = stores.get(row.get("run")), row.get("eval_id")
        reader = getattr(store, "faces", None)
        if reader is None or not eval_id:
            return None
        key = (row.get("run"), eval_id)
        if key not in cache:
            cache[key] = reader(eval_id)
        frame = cache[key]
        if frame is not None and "method" in frame.columns and row.get("method"):
            frame = frame.filter(frame["method"] == row["method"])     # one evaluation, several extractors
        return frame

    return faces


def build(frame, *, metric: list[str], layer: str, spread: str, test: str, alpha: float,
          reference: str | None, reference_mode: str, datasets: list[str] | None = None, faces=None):
    """The ``Table`` behind every format (shared with ``bench report``). Method titles, families and
    order come from the rows and the packaged reference (no method registry: reporting needs no torch)."""
    from bench.reporting.metrics import METRIC_KEYS
    from bench.reporting.reference import load_reference, method_catalog
    from bench.reporting.table import build_table

    ref = load_reference(reference) if reference else None
    catalog = method_catalog()
    return build_table(frame, layer, list(catalog), metrics=metric or list(METRIC_KEYS), spread=spread,
                       test=test, alpha=alpha, reference=ref, reference_mode=reference_mode, catalog=catalog,
                       datasets=datasets, faces=faces)


def _write(path: Path, text: str) -> None:
    from bench.files import atomic_write_text

    atomic_write_text(path, text)
    console.print(f"wrote [bold]{path}[/]")


RUN_HELP = "Run folder name(s), repeatable or comma-separated; several runs are merged (default: the latest run)."
TEST_HELP = ("Paired test of AU on vs off: faces (McNemar for CL, a class-stratified bootstrap for the rest, "
             "on the test faces of one seed) | seeds (paired t-test over seeds; or t | wilcoxon); "
             "auto: faces when every cell has one seed, else seeds.")
CONFIG_HELP = ("Only the trials of this setting (a prefix of the record's setting, or of a config hash); "
               "default: each run folder's newest setting.")


def table(
    run: Optional[List[str]] = typer.Option(None, help=RUN_HELP),
    results_dir: Path = typer.Option(Path("results"), help="Where run folders live."),
    format: str = typer.Option("markdown", help="markdown | latex | csv."),
    layer: str = typer.Option("auto", help="Layer whose ATT-COS is shown; auto: each method's alignment layer (layer5 for the CNNs)."),
    methods: Optional[List[str]] = typer.Option(None, help="Only these methods (comma-separated)."),
    datasets: Optional[List[str]] = typer.Option(None, help="Only these datasets (comma-separated), in this order "
                                                 "(default: all, the paper's order: RAF-DB, AffectNet, then by name)."),
    metric: Optional[List[str]] = typer.Option(None, help="Metrics: cl, cam-cos, att-cos (default: these three); "
                                                "from `bench run --eval extended`: deletion, insertion, road, sanity, "
                                                "sanity-auc, pointing, mass, rank."),
    spread: str = typer.Option("std", help="Spread over seeds: std | ci (95% confidence interval)."),
    test: str = typer.Option("auto", help=TEST_HELP),
    alpha: float = typer.Option(0.05, help="Significance threshold of the paired test."),
    reference: Optional[str] = typer.Option(None, help="'paper' (the paper's Tables 1-2, shipped with bench) or a CSV of published numbers."),
    reference_mode: str = typer.Option("side", help="side (reference columns next to ours) | delta (ours − reference)."),
    config: Optional[str] = typer.Option(None, help=CONFIG_HELP),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Print the comparison table of one or several runs (the paper's Tables 1-2)."""
    from bench.reporting.render import RENDERERS, to_rich
    from bench.store.settings import select_settings

    if format not in RENDERERS:
        raise UserError(f"bad --format {format!r}: expected {', '.join(RENDERERS)}")
    run_dirs = resolve_runs(results_dir, run)
    header = f"run {', '.join(str(d) for d in run_dirs)}" if format == "markdown" and output is None else None
    selection = select_settings(run_dirs, config)
    frame = load_frame(run_dirs, _split(methods), _split(datasets), selection)
    result = build(frame, metric=_split(metric), layer=layer, spread=spread, test=test, alpha=alpha,
                   reference=reference, reference_mode=reference_mode, datasets=_split(datasets),
                   faces=face_source(run_dirs))
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
    test: str = typer.Option("auto", help=TEST_HELP),
    alpha: float = typer.Option(0.05, help="Significance threshold of the paired test."),
    reference: Optional[str] = typer.Option(None, help="'paper' or a CSV of published numbers, shown side by side."),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Also write and embed the figures."),
    config: Optional[str] = typer.Option(None, help=CONFIG_HELP),
) -> None:
    """Write one Markdown report: tables, figures, data, provenance and wall times."""
    from bench.reporting.metrics import METRIC_KEYS
    from bench.reporting.report import write_report
    from bench.reporting.table import extended_present
    from bench.store.settings import select_settings

    run_dirs = resolve_runs(results_dir, run)
    selection = select_settings(run_dirs, config)
    frame = load_frame(run_dirs, [], [], selection)
    options = dict(layer=layer, spread=spread, test=test, alpha=alpha, reference=reference, reference_mode="side")
    faces = face_source(run_dirs)
    result = build(frame, metric=[], faces=faces, **options)
    present = extended_present(frame)
    plain = {**options, "reference": None}
    extended = build(frame, metric=present, faces=faces, **plain) if present else None
    agreement = build(frame, metric=[*METRIC_KEYS, *present], **plain) if not frame.is_empty() else None
    path = write_report(run_dirs, result, out or run_dirs[0] / "report.md", with_figures=figures,
                        extended=extended, selection=selection, agreement=agreement, faces=faces)
    say_choice(selection)
    console.print(f"wrote [bold]{path}[/]")
