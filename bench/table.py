"""The comparison table: one row per method, per dataset w/o | w/ AU for CL, CAM-COS, ATT-COS.

Rows come from the result store (polars); with several seeds a cell is mean ± std. Every format
(Markdown, LaTeX, CSV) renders the same ``Table`` with the same cell formatter, so they agree.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

import polars as pl

FAMILY_TITLES = {"cnn": "CNN-based", "transformer": "Transformer-based"}
MISSING = "—"


@dataclass(frozen=True)
class Metric:
    column: str          # column in the store frame
    label: str           # header
    digits: int


def metrics_for(layer: str) -> list[Metric]:
    return [Metric("cl", "CL", 2), Metric("cam_cos", "CAM-COS", 3),
            Metric(f"att_cos_{layer}", f"ATT-COS ({layer})", 3)]


@dataclass
class Cell:
    mean: float | None
    std: float | None
    n: int

    def text(self, digits: int, latex: bool = False) -> str:
        if self.mean is None or (isinstance(self.mean, float) and math.isnan(self.mean)):
            return MISSING if not latex else "--"
        s = f"{self.mean:.{digits}f}"
        if self.n > 1 and self.std is not None:
            s += (r" $\pm$ " if latex else " ± ") + f"{self.std:.{digits}f}"
        return s


@dataclass
class Table:
    datasets: list[str]
    metrics: list[Metric]
    rows: list[tuple[str, str, str]] = field(default_factory=list)       # (family, method, title)
    cells: dict[tuple[str, str, str, bool], Cell] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def cell(self, method: str, dataset: str, metric: Metric, au: bool) -> Cell:
        return self.cells.get((method, dataset, metric.column, au), Cell(None, None, 0))


def build_table(frame: pl.DataFrame, layer: str = "layer5", method_order: list[str] | None = None) -> Table:
    metrics = metrics_for(layer)
    if frame.is_empty():
        return Table([], metrics)
    failed = frame.filter(pl.col("status") != "ok")
    ok = frame.filter(pl.col("status") == "ok")
    datasets = sorted(frame["dataset"].unique().to_list())
    table = Table(datasets, metrics)
    table.failed = sorted({f"{r['method']} on {r['dataset']} ({'w/' if r['au'] else 'w/o'} AU, seed {r['seed']})"
                           for r in failed.iter_rows(named=True)})
    order = {name: i for i, name in enumerate(method_order or [])}
    if not ok.is_empty():
        info = ok.group_by("method").agg(pl.col("title").first(), pl.col("family").first())
        rows = [(r["family"], r["method"], r["title"]) for r in info.iter_rows(named=True)]
        fam = list(FAMILY_TITLES)
        rows.sort(key=lambda r: (fam.index(r[0]) if r[0] in fam else len(fam), order.get(r[1], len(order)), r[1]))
        table.rows = rows
        for metric in metrics:
            if metric.column not in ok.columns:
                continue
            stats = (ok.filter(pl.col(metric.column).is_not_null())
                     .group_by(["method", "dataset", "au"])
                     .agg(pl.col(metric.column).mean().alias("mean"), pl.col(metric.column).std().alias("std"),
                          pl.len().alias("n")))
            for r in stats.iter_rows(named=True):
                table.cells[(r["method"], r["dataset"], metric.column, r["au"])] = Cell(r["mean"], r["std"], r["n"])
    return table


def _header_labels(table: Table) -> list[str]:
    multi = len(table.datasets) > 1
    labels = []
    for ds in table.datasets:
        for m in table.metrics:
            for au in (False, True):
                prefix = f"{ds} " if multi else ""
                labels.append(f"{prefix}{m.label} {'w/' if au else 'w/o'} AU")
    return labels


def _row_cells(table: Table, method: str, latex: bool = False) -> list[str]:
    return [table.cell(method, ds, m, au).text(m.digits, latex)
            for ds in table.datasets for m in table.metrics for au in (False, True)]


def _footnotes(table: Table) -> list[str]:
    notes = []
    if any(c.n > 1 for c in table.cells.values()):
        notes.append("Cells with several seeds show mean ± std.")
    if table.failed:
        notes.append("Failed trials: " + "; ".join(table.failed) + ".")
    return notes


def to_markdown(table: Table) -> str:
    if not table.rows:
        return "No finished trials to tabulate."
    head = ["Method", *_header_labels(table)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|"]
    family = None
    for fam, method, title in table.rows:
        if fam != family:
            family = fam
            lines.append(f"| **{FAMILY_TITLES.get(fam, fam)}** |" + " |" * (len(head) - 1))
        lines.append("| " + " | ".join([title, *_row_cells(table, method)]) + " |")
    notes = _footnotes(table)
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(a, b)
    return text


def to_latex(table: Table) -> str:
    if not table.rows:
        return "% No finished trials to tabulate.\n"
    per_ds = 2 * len(table.metrics)
    ncols = 1 + per_ds * len(table.datasets)
    spec = "l" + ("|" + "r" * per_ds) * len(table.datasets)
    out = [r"\begin{tabular}{" + spec.replace("|", " ") + "}", r"\toprule"]
    out.append(" & " + " & ".join(rf"\multicolumn{{{per_ds}}}{{c}}{{{_latex_escape(ds)}}}" for ds in table.datasets) + r" \\")
    out.append(" ".join(rf"\cmidrule(lr){{{2 + i * per_ds}-{1 + (i + 1) * per_ds}}}" for i in range(len(table.datasets))))
    out.append(" & " + " & ".join(rf"\multicolumn{{2}}{{c}}{{{_latex_escape(m.label)}}}"
                                   for _ in table.datasets for m in table.metrics) + r" \\")
    out.append("Method & " + " & ".join(["w/o AU & w/ AU"] * (len(table.metrics) * len(table.datasets))) + r" \\")
    out.append(r"\midrule")
    family = None
    for fam, method, title in table.rows:
        if fam != family:
            if family is not None:
                out.append(r"\midrule")
            family = fam
            out.append(rf"\multicolumn{{{ncols}}}{{l}}{{\textit{{{FAMILY_TITLES.get(fam, fam)}}}}} \\")
        out.append(" & ".join([_latex_escape(title), *_row_cells(table, method, latex=True)]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    notes = [n.replace("±", r"$\pm$") for n in _footnotes(table)]
    return "\n".join(out + [f"% {n}" for n in notes]) + "\n"


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", "title", "family", "dataset", "metric", "wo_au", "w_au", "n_seeds"])
    for fam, method, title in table.rows:
        for ds in table.datasets:
            for m in table.metrics:
                wo, w = table.cell(method, ds, m, False), table.cell(method, ds, m, True)
                writer.writerow([method, title, fam, ds, m.label, wo.text(m.digits), w.text(m.digits), max(wo.n, w.n)])
    return buf.getvalue()


RENDERERS = {"markdown": to_markdown, "latex": to_latex, "csv": to_csv}
