"""The comparison table, laid out as the paper's Tables 1-2: aggregation of store rows into cells.

One row per method, grouped CNN-based / Transformer-based; per dataset, column pairs w/o AU | w/ AU
for CL, CAM-COS and ATT-COS (one layer), and on request the extended metrics (``metrics.py`` holds
the registry). With several seeds a cell is mean ± std (or a 95% CI); a paired test of AU on vs off
(over seeds, or over the test faces of one seed: ``significance.py``) marks significant w/ AU cells;
a reference (``reference.py``) can sit beside ours or be shown as Δ. Rows that reuse another
method's trained model (post-hoc extractors with sharing on) repeat its CL and ATT-COS: those cells
are marked and neither bolded nor tested. The renderers (``bench.reporting.render``) all draw the
same ``Table``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import polars as pl

from bench.errors import UserError
from bench.reporting.metrics import (AUTO_LAYER, DATASET_TITLES, EXTENDED_COLUMNS, EXTENDED_KEYS, FAMILY_TITLES,
                                     METRIC_KEYS, Metric, metrics_for, resolve_legacy)
from bench.reporting.reference import Reference, dataset_order
from bench.reporting.stats import SPREADS, PairedTest, Summary, summarize

#: A function that returns a result row's per-face frame (or None when it has none).
FaceSource = Callable[[dict], "pl.DataFrame | None"]


@dataclass
class Cell:
    summary: Summary
    by_seed: dict[int, float] = field(default_factory=dict)
    best: bool = False
    significant: bool = False
    test: PairedTest | None = None     # set on the w/ AU cell of a tested pair
    shared: str | None = None          # the method whose trained model (and so this number) it repeats
    flag_fails: int = 0                # seeds whose flag column is False (e.g. failed sanity test)
    flag_seen: int = 0                 # seeds that report the flag

    @property
    def mean(self) -> float | None:
        return self.summary.mean

    @property
    def std(self) -> float | None:
        return self.summary.std

    @property
    def n(self) -> int:
        return self.summary.n


EMPTY = Cell(Summary(None, None, None, 0))


@dataclass(frozen=True)
class Column:
    dataset: str
    metric: Metric
    kind: str            # "ours" | "ref" | "delta"
    au: bool

    @property
    def au_label(self) -> str:
        return "w/ AU" if self.au else "w/o AU"


@dataclass
class Table:
    datasets: list[str]
    metrics: list[Metric]
    rows: list[tuple[str, str, str]] = field(default_factory=list)       # (family, method, title)
    cells: dict[tuple[str, str, str, bool], Cell] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)      # one entry per failed trial or failed extractor
    failed_rows: int = 0              # failed results (one per evaluated method), as `bench report` counts them
    failed_trials: int = 0            # trials that failed (all their results failed)
    failed_extractors: int = 0        # failed results inside trials that finished
    missing: list[str] = field(default_factory=list)
    not_evaluated: list[str] = field(default_factory=list)   # where extended metrics were not computed
    spread: str = "std"
    test: str = "t"                   # the test used: t | wilcoxon (over seeds) | faces
    alpha: float = 0.05
    reference: Reference | None = None
    reference_mode: str = "side"      # "side" | "delta"
    layer: str = "layer5"
    selected_on_test: bool = False
    agnostic_cams: list[str] = field(default_factory=list)   # titles whose CAM is class-agnostic
    classes: dict[str, list[int]] = field(default_factory=dict)   # dataset -> class counts seen
    titles: dict[str, str] = field(default_factory=dict)          # method -> title (also shared sources)
    result_rows: dict[tuple[str, str, bool, int], dict] = field(default_factory=dict)  # (method, ds, au, seed) -> row
    aligned: dict[str, str] = field(default_factory=dict)         # method -> its first alignment layer
    untested: list[str] = field(default_factory=list)             # faces test: cells without per-face results
    settings: dict[str, list[str]] = field(default_factory=dict)  # profile / image_size / epochs seen in the rows

    def cell(self, method: str, dataset: str, metric: Metric, au: bool) -> Cell:
        return self.cells.get((method, dataset, metric.column, au), EMPTY)

    def columns(self) -> list[Column]:
        cols = []
        for ds in self.datasets:
            for m in self.metrics:
                cols += [Column(ds, m, "ours", False), Column(ds, m, "ours", True)]
                if self.reference is not None:
                    kind = "ref" if self.reference_mode == "side" else "delta"
                    cols += [Column(ds, m, kind, False), Column(ds, m, kind, True)]
        return cols

    def ref_value(self, method: str, title: str, column: Column) -> float | None:
        if self.reference is None:
            return None
        return self.reference.get(method, title, column.dataset, column.metric.column, column.au)

    @property
    def group_width(self) -> int:
        """Columns per metric inside a dataset: w/o | w/ (| ref w/o | ref w/)."""
        return 2 if self.reference is None else 4

    def dataset_caption(self, dataset: str) -> str:
        """'RAF-DB (7 classes)'; the class count is left out when no record says it."""
        title = DATASET_TITLES.get(dataset, dataset)
        counts = self.classes.get(dataset) or []
        return f"{title} ({' or '.join(map(str, counts))} classes)" if counts else title

    @property
    def caption(self) -> str:
        return ", ".join(self.dataset_caption(ds) for ds in self.datasets)


# --------------------------------------------------------------------------------------------
# Building


def filter_frame(frame: pl.DataFrame, methods: Sequence[str] | None = None,
                 datasets: Sequence[str] | None = None, where: str = "this run") -> pl.DataFrame:
    """Keep the named methods/datasets; a name that is not in the results is a user error."""
    for flag, col, wanted in (("--methods", "method", methods), ("--datasets", "dataset", datasets)):
        if not wanted:
            continue
        have = sorted(frame[col].drop_nulls().unique().to_list()) if col in frame.columns else []
        bad = [w for w in wanted if w not in have]
        if bad:
            raise UserError(f"{flag}: {', '.join(map(repr, bad))} not in {where} "
                            f"(there: {', '.join(have) or 'nothing'})")
        frame = frame.filter(pl.col(col).is_in(list(wanted)))
    return frame


def au_text(au: bool) -> str:
    return "w/ AU" if au else "w/o AU"


def is_value(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _check_options(spread: str, test: str, alpha: float, reference_mode: str) -> None:
    from bench.reporting.significance import TEST_CHOICES

    if spread not in SPREADS:
        raise UserError(f"bad --spread {spread!r}: expected {', '.join(SPREADS)}")
    if test not in TEST_CHOICES:
        raise UserError(f"bad --test {test!r}: expected {', '.join(TEST_CHOICES)}")
    if not 0 < alpha < 1:
        raise UserError(f"bad --alpha {alpha}: expected a number between 0 and 1")
    if reference_mode not in ("side", "delta"):
        raise UserError(f"bad --reference-mode {reference_mode!r}: expected side or delta")


def build_table(frame: pl.DataFrame, layer: str = "layer5", method_order: Sequence[str] | None = None, *,
                metrics: Sequence[str] = METRIC_KEYS, spread: str = "std", test: str = "t", alpha: float = 0.05,
                reference: Reference | None = None, reference_mode: str = "side",
                catalog: dict[str, tuple[str, str]] | None = None, datasets: Sequence[str] | None = None,
                faces: FaceSource | None = None) -> Table:
    """Aggregate store rows into a ``Table``: seeds -> summaries, paired tests, best per column.

    ``catalog`` maps method name -> (title, family) for methods that only have failed results and
    for the models that shared rows name. ``datasets`` orders the dataset columns (default: the
    paper's order). ``test``: t | wilcoxon | seeds (over seeds), faces (over the test faces of one
    seed, read through ``faces``), auto (faces when every cell has one seed). Optional frame
    columns: ``shared_model``, ``num_classes``, ``trial_status`` (to tell a failed trial from a
    failed extractor in a finished one), ``setting``, ``profile``, ``image_size``, ``epochs``.
    """
    from bench.reporting.significance import apply_tests

    _check_options(spread, test, alpha, reference_mode)
    chosen = resolve_legacy(metrics_for(layer, metrics), frame.columns)
    table = Table([], chosen, spread=spread, test=test, alpha=alpha, reference=reference,
                  reference_mode=reference_mode, layer=layer)
    if frame.is_empty() or "status" not in frame.columns:
        return table
    ok = frame.filter(pl.col("status") == "ok")
    failed = frame.filter(pl.col("status") != "ok")
    att = f"att_cos_{layer}"
    if layer == AUTO_LAYER and not ok.is_empty():
        aligned = [r.get(f"att_cos_{(r.get('alignment_layers') or 'layer5').split(',')[0]}")
                   for r in ok.iter_rows(named=True)]
        ok = ok.with_columns(pl.Series(att, aligned, dtype=pl.Float64))
    if not ok.is_empty() and "att-cos" in metrics and att not in ok.columns:
        have = sorted(c.removeprefix("att_cos_") for c in ok.columns if c.startswith("att_cos_"))
        raise UserError(f"bad --layer {layer!r}: no ATT-COS for it in these results (layers: {', '.join(have) or 'none'})")
    table.datasets = dataset_order(frame["dataset"].unique().to_list(), datasets)
    if "num_classes" in frame.columns:
        for ds in table.datasets:
            counts = frame.filter(pl.col("dataset") == ds)["num_classes"].drop_nulls().unique().to_list()
            if counts:
                table.classes[ds] = sorted(int(c) for c in counts)
    for col in ("profile", "image_size", "epochs"):
        if col in ok.columns:
            table.settings[col] = sorted({str(v) for v in ok[col].drop_nulls().to_list()})
    _failures(table, failed)
    if ok.is_empty():
        return table
    table.selected_on_test = "selection_split" in ok.columns and (ok["selection_split"] == "test").any()
    if "cam_kind" in ok.columns:
        agnostic = ok.filter(pl.col("cam_kind") == "class-agnostic")
        table.agnostic_cams = sorted(set(agnostic["title"].to_list())) if "title" in ok.columns else []

    info = _methods(table, ok, failed, catalog)
    order = {name: i for i, name in enumerate(method_order or [])}
    fam = list(FAMILY_TITLES)
    table.rows = sorted(((family, name, title) for name, (title, family) in info.items()),
                        key=lambda r: (fam.index(r[0]) if r[0] in fam else len(fam), order.get(r[1], len(order)), r[1]))
    _cells(table, ok)
    apply_tests(table, faces)
    _best(table)
    table.missing, table.not_evaluated = _missing(table, ok, failed)
    return table


def _methods(table: Table, ok: pl.DataFrame, failed: pl.DataFrame, catalog) -> dict[str, tuple[str, str]]:
    """(title, family) per method; refuses two results for one (method, dataset, AU, seed)."""
    seen: dict[tuple, tuple[str, str]] = {}
    info: dict[str, tuple[str, str]] = {}
    for r in ok.iter_rows(named=True):
        key = (r["method"], r["dataset"], r["au"], r["seed"])
        here = (r.get("run") or "?", r.get("setting") or r.get("config_hash") or "?")
        if key in seen:
            (run0, set0), (run1, set1) = seen[key], here
            where = (f"run {run0}, settings {set0[:12]} and {set1[:12]}" if run0 == run1
                     else f"runs {run0} and {run1}" + (f", settings {set0[:12]} and {set1[:12]}" if set0 != set1 else ""))
            raise UserError(f"two results for {r['method']} on {r['dataset']} {au_text(r['au'])} seed {r['seed']} "
                            f"({where}): pick one run with --run or one setting with --config")
        seen[key] = here
        table.result_rows[key] = r
        info.setdefault(r["method"], (r.get("title") or r["method"], r.get("family") or "other"))
        if r.get("alignment_layers"):
            table.aligned.setdefault(r["method"], str(r["alignment_layers"]).split(",")[0])
    for name in failed["method"].drop_nulls().unique().to_list() if not failed.is_empty() else []:
        if name not in info:
            info[name] = (catalog or {}).get(name, (name, "other"))
    table.titles = {name: title for name, (title, _) in {**(catalog or {}), **info}.items()}
    return info


def _cells(table: Table, ok: pl.DataFrame) -> None:
    values: dict[tuple[str, str, str, bool], dict[int, float]] = {}
    shared: dict[tuple[str, str, str, bool], str] = {}
    flags: dict[tuple[str, str, str, bool], list[bool]] = {}
    for r in ok.iter_rows(named=True):
        source = r.get("shared_model")
        for m in table.metrics:
            key = (r["method"], r["dataset"], m.column, r["au"])
            v = r.get(m.column)
            if is_value(v):
                values.setdefault(key, {})[r["seed"]] = float(v)
                if m.per_model and source and source != r["method"]:
                    shared[key] = source
            if m.flag_column and r.get(m.flag_column) is not None:
                flags.setdefault(key, []).append(bool(r[m.flag_column]))
    for key, by_seed in values.items():
        seeds_flags = flags.get(key, [])
        table.cells[key] = Cell(summarize(list(by_seed.values())), by_seed, shared=shared.get(key),
                                flag_fails=sum(not f for f in seeds_flags), flag_seen=len(seeds_flags))


def _best(table: Table) -> None:
    """Best per column in the metric's direction, compared at the printed precision; only meaningful
    with >= 2 independent methods (shared cells repeat their model's number and do not compete)."""
    for ds in table.datasets:
        for m in table.metrics:
            for au in (False, True):
                cells = [table.cell(meth, ds, m, au) for _, meth, _ in table.rows]
                cells = [c for c in cells if c.mean is not None and not c.shared]
                if len(cells) < 2:
                    continue
                top = max(m.rank_value(round(c.mean, m.digits)) for c in cells)
                for c in cells:
                    c.best = m.rank_value(round(c.mean, m.digits)) == top


def _error_line(text: str, limit: int = 100) -> str:
    """The last line of an error (a traceback ends with the exception), shortened for a footnote."""
    line = str(text).strip().splitlines()[-1] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _failures(table: Table, failed: pl.DataFrame) -> None:
    """One footnote entry per failed trial (naming all its methods) or failed extractor of a finished trial."""
    if failed.is_empty():
        return
    groups: dict[tuple, list[dict]] = {}
    for i, r in enumerate(failed.iter_rows(named=True)):
        trial_failed = (r.get("trial_status") or r["status"]) != "ok"
        key = (r.get("run"), r.get("trial_id") or i) if trial_failed else ("row", i)
        groups.setdefault(key, []).append({**r, "_trial_failed": trial_failed})
    entries = set()
    for rows in groups.values():
        r = rows[0]
        names = ", ".join(dict.fromkeys(x["method"] for x in rows))
        what = "" if r["_trial_failed"] else "; its trial finished"
        entries.add(f"{names} on {r['dataset']} ({au_text(r['au'])}, seed {r['seed']}{what})"
                    + (f": {_error_line(r['error'])}" if r.get("error") else ""))
    table.failed = sorted(entries)
    table.failed_rows = len(failed)
    table.failed_trials = sum(1 for rows in groups.values() if rows[0]["_trial_failed"])
    table.failed_extractors = sum(len(rows) for rows in groups.values() if not rows[0]["_trial_failed"])


def _missing(table: Table, ok: pl.DataFrame, failed: pl.DataFrame) -> tuple[list[str], list[str]]:
    """Why each empty cell is empty: never ran, failed, no such metric, or not evaluated (extended)."""
    ran = {(r["method"], r["dataset"], r["au"]) for r in ok.iter_rows(named=True)}
    ext_cols = [c for c in EXTENDED_COLUMNS if c in ok.columns]
    extended_ran = {(r["method"], r["dataset"], r["au"]) for r in ok.iter_rows(named=True)
                    if any(is_value(r.get(c)) for c in ext_cols)}
    broke = {(r["method"], r["dataset"], r["au"]) for r in failed.iter_rows(named=True)} if not failed.is_empty() else set()
    out, not_evaluated = [], []
    for _, method, title in table.rows:
        for ds in table.datasets:
            for au in (False, True):
                where = f"{title}, {DATASET_TITLES.get(ds, ds)}, {au_text(au)}"
                if (method, ds, au) not in ran:
                    out.append(f"{where}: {'failed' if (method, ds, au) in broke else 'not run'}")
                    continue
                empty = [m for m in table.metrics if table.cell(method, ds, m, au) is EMPTY]
                skipped = [m for m in empty if m.extended and (method, ds, au) not in extended_ran]
                if skipped:
                    not_evaluated.append(where)
                absent = [m.label for m in empty if m not in skipped]
                if absent:
                    out.append(f"{where}: no {', '.join(absent)} from this method")
    return out, not_evaluated


def merge_frames(frames: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """Rows of several runs in one frame (columns that only some runs have are null elsewhere)."""
    frames = [f for f in frames if not f.is_empty()]
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames, how="diagonal_relaxed")


def extended_present(frame: pl.DataFrame) -> list[str]:
    """The --metric keys of extended metrics that some row of ``frame`` has a value for."""
    if frame.is_empty():
        return []
    out = []
    for key, m in zip(EXTENDED_KEYS, metrics_for("layer5", EXTENDED_KEYS)):
        columns = [m.column] + ([m.legacy] if m.legacy else [])
        if any(c in frame.columns and frame[c].drop_nulls().len() > 0 for c in columns):
            out.append(key)
    return out
