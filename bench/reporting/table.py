"""The comparison table, laid out as the paper's Tables 1-2.

One row per method, grouped CNN-based / Transformer-based; per dataset, column pairs w/o AU | w/ AU
for CL, CAM-COS and ATT-COS (one layer), and on request the extended metrics (deletion, insertion,
ROAD, sanity, pointing, relevance mass and rank). Every metric declares its direction (the header
shows ↑ or ↓) and bold-best follows it. With several seeds a cell is mean ± std (or a 95% CI); a
paired test of AU on vs off marks significant w/ AU cells; a reference (the paper's numbers) can sit
beside ours or be shown as Δ. Rows that reuse another method's trained model (post-hoc extractors
with sharing on) repeat its CL and ATT-COS: those cells are marked and neither bolded nor tested.
Every format (Markdown, rich, LaTeX, CSV) renders the same ``Table`` through the same cell
formatter, so they agree.
"""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import polars as pl

from bench.errors import UserError
from bench.reporting.stats import SPREADS, TESTS, PairedTest, Summary, paired_test, summarize

FAMILY_TITLES = {"cnn": "CNN-based", "transformer": "Transformer-based"}
DATASET_TITLES = {"rafdb": "RAF-DB", "affectnet": "AffectNet", "synthetic": "Synthetic", "jaffe": "JAFFE"}
MISSING = "—"
SIG_MARK = "†"
SHARED_MARK = "‡"
FLAG_MARK = "§"
UP, DOWN = "↑", "↓"
METRIC_KEYS = ("cl", "cam-cos", "att-cos")
EXTENDED_KEYS = ("deletion", "insertion", "road", "sanity", "pointing", "mass", "rank")
ALL_METRIC_KEYS = METRIC_KEYS + EXTENDED_KEYS
#: Row columns written only by ``bench run --eval extended``: a row with none of them was not evaluated so.
EXTENDED_COLUMNS = ("deletion_auc", "insertion_auc", "road", "sanity_similarity", "sanity_pass", "pointing",
                    "relevance_mass", "relevance_rank")
EXTENDED_HINT = "run `bench run --eval extended` (same settings) to compute them"
#: --layer auto: each method's own (first) alignment layer, as the paper's Table 2 compares CNNs
#: at layer 5 with transformers at their aligned token map.
AUTO_LAYER = "auto"
PAPER_CSV = Path(__file__).resolve().parents[1] / "results" / "reference" / "paper.csv"
PAPER_SOURCE = "Belharbi et al., FG 2024, Tables 1-2 (one seed; models selected on the test split)"


@dataclass(frozen=True)
class Metric:
    column: str                  # column in the store frame
    label: str                   # header (without the direction arrow)
    digits: int
    higher_better: bool = True
    per_model: bool = False      # a property of the trained model: rows sharing one model repeat it
    extended: bool = False       # computed only by ``bench run --eval extended``
    flag_column: str | None = None   # boolean row column; False on any seed flags the cell
    flag_note: str = ""

    @property
    def arrow(self) -> str:
        return UP if self.higher_better else DOWN

    @property
    def header(self) -> str:
        return f"{self.label} {self.arrow}"


SANITY_NOTE = ("fails the model-randomisation test: its maps barely change when the top layers are "
               "re-initialised")


def metrics_for(layer: str, keys: Sequence[str] = METRIC_KEYS) -> list[Metric]:
    att_label = "ATT-COS (aligned layer)" if layer == AUTO_LAYER else f"ATT-COS ({layer})"
    known = {
        "cl": Metric("cl", "CL", 2, per_model=True),
        "cam-cos": Metric("cam_cos", "CAM-COS", 3),
        "att-cos": Metric(f"att_cos_{layer}", att_label, 3, per_model=True),
        "deletion": Metric("deletion_auc", "Deletion AUC", 3, higher_better=False, extended=True),
        "insertion": Metric("insertion_auc", "Insertion AUC", 3, extended=True),
        "road": Metric("road", "ROAD", 3, extended=True),
        "sanity": Metric("sanity_similarity", "Sanity similarity", 3, higher_better=False, extended=True,
                         flag_column="sanity_pass", flag_note=SANITY_NOTE),
        "pointing": Metric("pointing", "Pointing", 3, extended=True),
        "mass": Metric("relevance_mass", "Relevance mass", 3, extended=True),
        "rank": Metric("relevance_rank", "Relevance rank", 3, extended=True),
    }
    bad = [k for k in keys if k not in known]
    if bad:
        raise UserError(f"unknown --metric {', '.join(bad)}: expected some of {', '.join(ALL_METRIC_KEYS)}")
    return [known[k] for k in dict.fromkeys(keys)]


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
class Reference:
    """Published numbers keyed by (normalised method name, dataset, metric column, au)."""

    name: str
    source: str
    values: dict[tuple[str, str, str, bool], float]

    def get(self, method: str, title: str, dataset: str, column: str, au: bool) -> float | None:
        if column == f"att_cos_{AUTO_LAYER}":
            column = "att_cos_layer5"          # the paper's "layer 5" column is each method's aligned layer
        for key in (normalise_name(method), normalise_name(title)):
            value = self.values.get((key, dataset, column, au))
            if value is not None:
                return value
        return None


def normalise_name(name: str) -> str:
    """'GradCAM++' -> 'gradcampp', 'TS-CAM' -> 'tscam': match registry names and titles alike."""
    return re.sub(r"[^a-z0-9]", "", name.lower().replace("++", "pp"))


def load_reference(spec: str, results_dir: Path | None = None) -> Reference:
    """``paper`` (the shipped results/reference/paper.csv) or a CSV path with the same columns."""
    if spec == "paper":
        candidates = [p for p in ((results_dir / "reference" / "paper.csv") if results_dir else None, PAPER_CSV) if p]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise UserError(f"the paper's numbers are missing: expected {PAPER_CSV}")
        source = PAPER_SOURCE
    else:
        path = Path(spec)
        if not path.is_file():
            raise UserError(f"bad --reference {spec!r}: expected 'paper' or a CSV file "
                            "(columns method,dataset,metric,au,value)")
        source = str(path)
    values = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"method", "dataset", "metric", "au", "value"}
        if not need <= set(reader.fieldnames or ()):
            raise UserError(f"bad reference file {path}: needs columns {', '.join(sorted(need))}")
        for row in reader:
            if not row["value"]:
                continue
            au = row["au"].strip().lower() in ("true", "1", "yes", "on")
            values[(normalise_name(row["method"]), row["dataset"], row["metric"], au)] = float(row["value"])
    return Reference(spec if spec == "paper" else path.stem, source, values)


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
    test: str = "t"
    alpha: float = 0.05
    reference: Reference | None = None
    reference_mode: str = "side"      # "side" | "delta"
    layer: str = "layer5"
    selected_on_test: bool = False
    agnostic_cams: list[str] = field(default_factory=list)   # titles whose CAM is class-agnostic
    classes: dict[str, list[int]] = field(default_factory=dict)   # dataset -> class counts seen
    titles: dict[str, str] = field(default_factory=dict)          # method -> title (also shared sources)

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


def _au_text(au: bool) -> str:
    return "w/ AU" if au else "w/o AU"


def _is_value(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def build_table(frame: pl.DataFrame, layer: str = "layer5", method_order: Sequence[str] | None = None, *,
                metrics: Sequence[str] = METRIC_KEYS, spread: str = "std", test: str = "t", alpha: float = 0.05,
                reference: Reference | None = None, reference_mode: str = "side",
                catalog: dict[str, tuple[str, str]] | None = None) -> Table:
    """Aggregate store rows into a ``Table``: seeds -> summaries, paired tests, best per column.

    ``catalog`` maps method name -> (title, family) for methods that only have failed results and
    for the models that shared rows name. Optional frame columns: ``shared_model``, ``num_classes``,
    ``trial_status`` (to tell a failed trial from a failed extractor in a finished one), ``setting``.
    """
    if spread not in SPREADS:
        raise UserError(f"bad --spread {spread!r}: expected {', '.join(SPREADS)}")
    if test not in TESTS:
        raise UserError(f"bad --test {test!r}: expected {', '.join(TESTS)}")
    if not 0 < alpha < 1:
        raise UserError(f"bad --alpha {alpha}: expected a number between 0 and 1")
    if reference_mode not in ("side", "delta"):
        raise UserError(f"bad --reference-mode {reference_mode!r}: expected side or delta")
    table = Table([], metrics_for(layer, metrics), spread=spread, test=test, alpha=alpha, reference=reference,
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
    table.datasets = sorted(frame["dataset"].unique().to_list())
    if "num_classes" in frame.columns:
        for ds in table.datasets:
            counts = frame.filter(pl.col("dataset") == ds)["num_classes"].drop_nulls().unique().to_list()
            if counts:
                table.classes[ds] = sorted(int(c) for c in counts)
    _failures(table, failed)
    if ok.is_empty():
        return table
    table.selected_on_test = "selection_split" in ok.columns and (ok["selection_split"] == "test").any()
    if "cam_kind" in ok.columns:
        agnostic = ok.filter(pl.col("cam_kind") == "class-agnostic")
        table.agnostic_cams = sorted(set(agnostic["title"].to_list())) if "title" in ok.columns else []

    seen: dict[tuple, tuple[str, str]] = {}
    info: dict[str, tuple[str, str]] = {}
    for r in ok.iter_rows(named=True):
        key = (r["method"], r["dataset"], r["au"], r["seed"])
        here = (r.get("run") or "?", r.get("setting") or r.get("config_hash") or "?")
        if key in seen:
            (run0, set0), (run1, set1) = seen[key], here
            where = (f"run {run0}, settings {set0[:12]} and {set1[:12]}" if run0 == run1
                     else f"runs {run0} and {run1}" + (f", settings {set0[:12]} and {set1[:12]}" if set0 != set1 else ""))
            raise UserError(f"two results for {r['method']} on {r['dataset']} {_au_text(r['au'])} seed {r['seed']} "
                            f"({where}): pick one run with --run or one setting with --config")
        seen[key] = here
        info.setdefault(r["method"], (r.get("title") or r["method"], r.get("family") or "other"))
    for name in failed["method"].drop_nulls().unique().to_list() if not failed.is_empty() else []:
        if name not in info:
            info[name] = (catalog or {}).get(name, (name, "other"))
    table.titles = {name: title for name, (title, _) in {**(catalog or {}), **info}.items()}

    order = {name: i for i, name in enumerate(method_order or [])}
    fam = list(FAMILY_TITLES)
    table.rows = sorted(((family, name, title) for name, (title, family) in info.items()),
                        key=lambda r: (fam.index(r[0]) if r[0] in fam else len(fam), order.get(r[1], len(order)), r[1]))

    values: dict[tuple[str, str, str, bool], dict[int, float]] = {}
    shared: dict[tuple[str, str, str, bool], str] = {}
    flags: dict[tuple[str, str, str, bool], list[bool]] = {}
    for r in ok.iter_rows(named=True):
        source = r.get("shared_model")
        for m in table.metrics:
            key = (r["method"], r["dataset"], m.column, r["au"])
            v = r.get(m.column)
            if _is_value(v):
                values.setdefault(key, {})[r["seed"]] = float(v)
                if m.per_model and source and source != r["method"]:
                    shared[key] = source
            if m.flag_column and r.get(m.flag_column) is not None:
                flags.setdefault(key, []).append(bool(r[m.flag_column]))
    for key, by_seed in values.items():
        seeds_flags = flags.get(key, [])
        table.cells[key] = Cell(summarize(list(by_seed.values())), by_seed, shared=shared.get(key),
                                flag_fails=sum(not f for f in seeds_flags), flag_seen=len(seeds_flags))

    # Paired test per (method, dataset, metric): mark the w/ AU cell. Cells that repeat another
    # method's model are not independent results: they are not tested.
    for _, method, _ in table.rows:
        for ds in table.datasets:
            for m in table.metrics:
                wo, w = table.cell(method, ds, m, False), table.cell(method, ds, m, True)
                if w is EMPTY or wo is EMPTY or w.shared or wo.shared:
                    continue
                result = paired_test(wo.by_seed, w.by_seed, test)
                w.test = result
                w.significant = bool(result and result.p_value is not None and result.p_value < alpha)

    # Best per column in the metric's direction, compared at the printed precision; only meaningful
    # with >= 2 independent methods (shared cells repeat their model's number and do not compete).
    for ds in table.datasets:
        for m in table.metrics:
            for au in (False, True):
                cells = [table.cell(meth, ds, m, au) for _, meth, _ in table.rows]
                cells = [c for c in cells if c.mean is not None and not c.shared]
                if len(cells) < 2:
                    continue
                pick = max if m.higher_better else min
                top = pick(round(c.mean, m.digits) for c in cells)
                for c in cells:
                    c.best = round(c.mean, m.digits) == top

    table.missing, table.not_evaluated = _missing(table, ok, failed)
    return table


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
        entries.add(f"{names} on {r['dataset']} ({_au_text(r['au'])}, seed {r['seed']}{what})"
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
                    if any(_is_value(r.get(c)) for c in ext_cols)}
    broke = {(r["method"], r["dataset"], r["au"]) for r in failed.iter_rows(named=True)} if not failed.is_empty() else set()
    out, not_evaluated = [], []
    for _, method, title in table.rows:
        for ds in table.datasets:
            for au in (False, True):
                where = f"{title}, {DATASET_TITLES.get(ds, ds)}, {_au_text(au)}"
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


# --------------------------------------------------------------------------------------------
# Cell text: one formatter for every format


def _num(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def _signed(value: float, digits: int) -> str:
    """'+0.75' / '-0.30'; a difference that rounds to zero prints as '+0.00', never '-0.00'."""
    return f"{0.0 if round(value, digits) == 0 else value:+.{digits}f}"


_MARKS = {"md": (SHARED_MARK, SIG_MARK, FLAG_MARK), "rich": (SHARED_MARK, SIG_MARK, FLAG_MARK),
          "tex": (r"$^{\ddagger}$", r"$^{\dagger}$", r"$^{\S}$")}


def cell_text(table: Table, method: str, title: str, column: Column, style: str = "md") -> str:
    """``style``: 'plain' (no marks), 'md' (Markdown, bold and marks), 'tex' (LaTeX), 'rich' (rich markup)."""
    tex = style == "tex"
    missing = "--" if tex else MISSING
    m = column.metric
    ours = table.cell(method, column.dataset, m, column.au)
    if column.kind == "ref":
        ref = table.ref_value(method, title, column)
        return missing if ref is None else _num(ref, m.digits)
    if column.kind == "delta":
        ref = table.ref_value(method, title, column)
        if ref is None or ours.mean is None:
            return missing
        text = _signed(ours.mean - ref, m.digits)
        return "$-$" + text[1:] if tex and text.startswith("-") else text
    if ours.mean is None:
        return missing
    text = _num(ours.mean, m.digits)
    spread = ours.summary.spread(table.spread)
    if ours.n > 1 and spread is not None:
        text += (r" $\pm$ " if tex else " ± ") + _num(spread, m.digits)
    if style == "plain":
        return text
    if style == "rich":
        from rich.markup import escape

        text = escape(text)
    if ours.best:
        text = {"md": f"**{text}**", "tex": rf"\textbf{{{text}}}", "rich": f"[bold]{text}[/bold]"}[style]
    shared_mark, sig_mark, flag_mark = _MARKS[style]
    if ours.shared:
        text += shared_mark
    if ours.significant:
        text += sig_mark
    if ours.flag_fails:
        text += flag_mark
    return text


def _and(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _shared_note(table: Table) -> str | None:
    by_source: dict[str, list[str]] = {}
    labels: list[str] = []
    for _, method, title in table.rows:
        for key, cell in table.cells.items():
            if key[0] == method and cell.shared:
                by_source.setdefault(cell.shared, [])
                if title not in by_source[cell.shared]:
                    by_source[cell.shared].append(title)
    if not by_source:
        return None
    for m in table.metrics:
        if any(c.shared for k, c in table.cells.items() if k[2] == m.column):
            labels.append(m.label)
    parts = "; ".join(f"{_and(titles)} {'uses' if len(titles) == 1 else 'use'} {table.titles.get(src, src)}'s"
                      for src, titles in by_source.items())
    return (f"{SHARED_MARK} marks {_and(labels)} cells that repeat the numbers of another method's trained model "
            f"(sharing on): {parts}. They are neither bolded nor tested; `bench run --no-share` trains each method "
            "separately.")


def _flag_notes(table: Table) -> list[str]:
    notes = []
    for m in table.metrics:
        where = []
        for _, method, title in table.rows:
            for ds in table.datasets:
                for au in (False, True):
                    c = table.cell(method, ds, m, au)
                    if c.flag_fails:
                        where.append(f"{title}, {DATASET_TITLES.get(ds, ds)}, {_au_text(au)}: "
                                     f"{c.flag_fails} of {c.flag_seen} seed{'s' * (c.flag_seen != 1)}")
        if where:
            notes.append(f"{FLAG_MARK} {m.label}: {m.flag_note} ({'; '.join(where)}).")
    return notes


def _failed_note(table: Table) -> str:
    """'Failed results (5: 4 from 1 failed trial, 1 failed extractor in a finished trial)'."""
    trials, extractors = table.failed_trials, table.failed_extractors
    from_trials = f"from {trials} failed trial{'s' * (trials != 1)}"
    in_finished = (f"failed extractor{'s' * (extractors != 1)} in "
                   f"{'a finished trial' if extractors == 1 else 'finished trials'}")
    if trials and extractors:
        detail = f": {table.failed_rows - extractors} {from_trials}, {extractors} {in_finished}"
    else:
        detail = f", {from_trials if trials else in_finished}"
    return f"Failed results ({table.failed_rows}{detail})"


def footnotes(table: Table) -> list[str]:
    notes = []
    ns = sorted({c.n for c in table.cells.values() if c.n})
    if ns and ns[-1] > 1:
        n_text = str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
        notes.append(f"Cells show mean ± {SPREADS[table.spread]} over seeds (n = {n_text} per cell).")
        tested = [c for c in table.cells.values() if c.test is not None]
        if tested:
            none = "" if any(c.significant for c in tested) else " No cell is significant."
            notes.append(f"{SIG_MARK} marks w/ AU cells that differ from w/o AU: two-sided {TESTS[table.test]} "
                         f"paired by seed, p < {table.alpha:g}, no correction for multiple comparisons; "
                         f"cells with fewer than 2 paired seeds are not tested.{none}")
        else:
            notes.append("No significance test: no cell has 2 or more independent seeds with both w/o and w/ AU.")
    if any(c.best for c in table.cells.values()):
        both = f"highest for {UP}, lowest for {DOWN}; " if not all(m.higher_better for m in table.metrics) else ""
        notes.append(f"Bold: best per column ({both}at the printed precision, among 2 or more methods).")
    shared = _shared_note(table)
    if shared:
        notes.append(shared)
    notes += _flag_notes(table)
    if table.missing:
        notes.append(f"{MISSING} no result: " + "; ".join(table.missing) + ".")
    if table.not_evaluated:
        labels = _and([m.label for m in table.metrics if m.extended])
        notes.append(f"{MISSING} {labels} not evaluated for " + "; ".join(table.not_evaluated)
                     + f": {EXTENDED_HINT}.")
    if table.failed:
        notes.append(f"{_failed_note(table)}: " + "; ".join(table.failed) + ".")
    if table.agnostic_cams and "cam_cos" in [m.column for m in table.metrics]:
        notes.append("CAM-COS of " + ", ".join(table.agnostic_cams) + " uses a class-agnostic map (the method has "
                     "no class CAM; the paper prints —).")
    if table.selected_on_test:
        notes.append("Some models were selected on the test split (train.select_on=test), as the paper's code did.")
    if table.reference is not None:
        ref = table.reference
        word = "paper" if ref.name == "paper" else ref.name
        lead = f"Δ = ours − {word}" if table.reference_mode == "delta" else f"Columns '{word}'"
        notes.append(f"{lead}: {ref.source}.")
        uncovered = [DATASET_TITLES.get(ds, ds) for ds in table.datasets
                     if not any(k[1] == ds for k in ref.values)]
        if uncovered:
            notes.append(f"The {word} has no values for {', '.join(uncovered)}.")
        if ref.name == "paper" and any(m.column.startswith("att_cos_") for m in table.metrics) and table.layer not in ("layer5", AUTO_LAYER):
            notes.append(f"The paper reports ATT-COS at layer5 only (this table shows {table.layer}).")
    return notes


def _header_labels(table: Table) -> list[str]:
    multi = len(table.datasets) > 1
    word = "paper" if table.reference is not None and table.reference.name == "paper" else (
        table.reference.name if table.reference else "")
    labels = []
    for col in table.columns():
        prefix = f"{DATASET_TITLES.get(col.dataset, col.dataset)} " if multi else ""
        if col.kind == "ours":
            labels.append(f"{prefix}{col.metric.header} {col.au_label}")
        elif col.kind == "ref":
            labels.append(f"{prefix}{col.metric.header} {col.au_label} ({word})")
        else:
            labels.append(f"{prefix}Δ {col.metric.header} {col.au_label}")
    return labels


def empty_message(table: Table) -> str:
    """The one line for a table without a single finished result."""
    if table.failed:
        return f"No finished results to tabulate. {_failed_note(table)}: {'; '.join(table.failed)}."
    return "No finished trials to tabulate."


# --------------------------------------------------------------------------------------------
# Renderers


def to_markdown(table: Table) -> str:
    if not table.cells:
        return empty_message(table) + "\n"
    head = ["Method", *_header_labels(table)]
    lines = [table.caption, "", "| " + " | ".join(head) + " |", "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|"]
    family = None
    cols = table.columns()
    for fam, method, title in table.rows:
        if fam != family:
            family = fam
            lines.append(f"| **{FAMILY_TITLES.get(fam, fam.capitalize())}** |" + " |" * (len(head) - 1))
        lines.append("| " + " | ".join([title, *(cell_text(table, method, title, c, "md") for c in cols)]) + " |")
    notes = footnotes(table)
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def to_rich(table: Table):
    """A rich renderable for the terminal (same cells as Markdown, with real bold)."""
    from rich import box
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table as RichTable
    from rich.text import Text

    if not table.cells:
        return Text(empty_message(table))
    grid = RichTable(title=escape(table.caption), title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                     pad_edge=False)
    grid.add_column("Method", no_wrap=True)
    for label in _header_labels(table):
        grid.add_column(escape(label), justify="right")
    cols = table.columns()
    family = None
    for fam, method, title in table.rows:
        if fam != family:
            if family is not None:
                grid.add_section()
            family = fam
            grid.add_row(Text(FAMILY_TITLES.get(fam, fam.capitalize()), style="bold italic"))
        grid.add_row(escape(title), *(_rich_cell(table, method, title, c) for c in cols))
    notes = [Text(n, style="dim") for n in footnotes(table)]
    return Group(grid, *notes)


def _rich_cell(table: Table, method: str, title: str, column: Column) -> str:
    from rich.markup import escape

    if column.kind != "ours":
        return f"[dim]{escape(cell_text(table, method, title, column, 'plain'))}[/dim]"
    return cell_text(table, method, title, column, "rich")


def _latex_escape(text: str) -> str:
    """Plain text to LaTeX; '--' stays two hyphens (an option name), not an en dash."""
    out = []
    for i, ch in enumerate(text):
        if ch == "-" and text[i + 1:i + 2] == "-":
            out.append("-{}")
            continue
        out.append({"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
                    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                    "±": r"$\pm$", "—": "--", "−": "$-$", "Δ": r"$\Delta$", "†": r"$^{\dagger}$",
                    "…": r"\ldots{}", "≥": r"$\geq$", "<": "$<$", ">": "$>$",
                    "‡": r"$^{\ddagger}$", "§": r"$^{\S}$", "↑": r"$\uparrow$", "↓": r"$\downarrow$",
                    "`": ""}.get(ch, ch))
    return "".join(out).encode("ascii", "replace").decode("ascii")


def to_latex(table: Table) -> str:
    """A ``table`` float (booktabs; graphicx shrinks it to the line width only when it is wider)."""
    if not table.cells:
        return f"% {_latex_escape(empty_message(table))}\n"
    gw = table.group_width
    per_ds = gw * len(table.metrics)
    ncols = 1 + per_ds * len(table.datasets)
    spec = "l" + (" " + "r" * per_ds) * len(table.datasets)
    word = "paper" if table.reference and table.reference.name == "paper" else (
        _latex_escape(table.reference.name) if table.reference else "")
    metric_names = ", ".join(_latex_escape(m.label) for m in table.metrics)
    caption = _latex_escape(table.caption)
    out = [
        r"% Needs \usepackage{booktabs} and \usepackage{graphicx}.",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{metric_names} on {caption}: without and with AU alignment.}}",
        r"\label{tab:au-cam-bench}",
        r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
    ]
    out.append(" & " + " & ".join(rf"\multicolumn{{{per_ds}}}{{c}}{{{_latex_escape(DATASET_TITLES.get(ds, ds))}}}"
                                   for ds in table.datasets) + r" \\")
    out.append(" ".join(rf"\cmidrule(lr){{{2 + i * per_ds}-{1 + (i + 1) * per_ds}}}" for i in range(len(table.datasets))))
    out.append(" & " + " & ".join(rf"\multicolumn{{{gw}}}{{c}}{{{_latex_escape(m.header)}}}"
                                   for _ in table.datasets for m in table.metrics) + r" \\")
    if gw > 2:
        groups = len(table.datasets) * len(table.metrics)
        out.append(" ".join(rf"\cmidrule(lr){{{2 + i * gw}-{1 + (i + 1) * gw}}}" for i in range(groups)))
    pair = ["w/o AU", "w/ AU"]
    if table.reference is not None:
        pair += ([f"{word} w/o", f"{word} w/"] if table.reference_mode == "side"
                 else [r"$\Delta$ w/o", r"$\Delta$ w/"])
    out.append("Method & " + " & ".join([" & ".join(pair)] * (len(table.metrics) * len(table.datasets))) + r" \\")
    out.append(r"\midrule")
    family = None
    cols = table.columns()
    for fam, method, title in table.rows:
        if fam != family:
            if family is not None:
                out.append(r"\midrule")
            family = fam
            out.append(rf"\multicolumn{{{ncols}}}{{l}}{{\textit{{{FAMILY_TITLES.get(fam, fam.capitalize())}}}}} \\")
        out.append(" & ".join([_latex_escape(title), *(cell_text(table, method, title, c, "tex") for c in cols)]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}%", "}"]
    notes = footnotes(table)
    if notes:
        out += [r"\par\smallskip", r"\parbox{\linewidth}{\footnotesize",
                *(_latex_escape(n) + r"\par" for n in notes), "}"]
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def _csv_num(value: float | None) -> str:
    return "" if value is None else f"{value:.10g}"


def _flag_text(cell: Cell) -> str:
    """'1/3': seeds that fail the metric's flag (e.g. the sanity test) of those that report it."""
    return f"{cell.flag_fails}/{cell.flag_seen}" if cell.flag_seen else ""


def to_csv(table: Table) -> str:
    """One line per (method, dataset, metric): display text first, then the numbers behind it."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    head = ["method", "title", "family", "dataset", "metric", "wo_au", "w_au", "n_seeds",
            "wo_mean", "wo_std", "wo_ci95", "wo_n", "w_mean", "w_std", "w_ci95", "w_n",
            "test", "n_pairs", "p_value", "significant", "wo_best", "w_best", "direction", "shared_model",
            "wo_flag_fails", "w_flag_fails", "n_classes"]
    if table.reference is not None:
        head += ["ref_wo", "ref_w"]
    writer.writerow(head)
    for fam, method, title in table.rows:
        for ds in table.datasets:
            for m in table.metrics:
                wo, w = table.cell(method, ds, m, False), table.cell(method, ds, m, True)
                cols = [Column(ds, m, "ours", False), Column(ds, m, "ours", True)]
                line = [method, title, fam, ds, m.label, *(cell_text(table, method, title, c, "plain") for c in cols),
                        max(wo.n, w.n)]
                for c in (wo, w):
                    line += [_csv_num(c.mean), _csv_num(c.std), _csv_num(c.summary.ci95), c.n]
                tested = w.test
                line += [TESTS[table.test] if tested else "", tested.n_pairs if tested else "",
                         _csv_num(tested.p_value) if tested else "", int(w.significant), int(wo.best), int(w.best),
                         "higher" if m.higher_better else "lower", wo.shared or w.shared or "",
                         _flag_text(wo), _flag_text(w), "/".join(map(str, table.classes.get(ds, [])))]
                if table.reference is not None:
                    line += [_csv_num(table.ref_value(method, title, Column(ds, m, "ref", au))) for au in (False, True)]
                writer.writerow(line)
    return buf.getvalue()


RENDERERS = {"markdown": to_markdown, "latex": to_latex, "csv": to_csv}


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
    return [key for key, m in zip(EXTENDED_KEYS, metrics_for("layer5", EXTENDED_KEYS))
            if m.column in frame.columns and frame[m.column].drop_nulls().len() > 0]
