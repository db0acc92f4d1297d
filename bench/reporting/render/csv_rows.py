"""The table as CSV: one line per (method, dataset, metric), display text first, then the numbers behind it."""
from __future__ import annotations

import csv
import io

from bench.reporting.cells import cell_text
from bench.reporting.significance import TEST_NAMES
from bench.reporting.table import Cell, Column, Table


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.10g}"


def _flag_text(cell: Cell) -> str:
    """'1/3': seeds that fail the metric's flag (e.g. the sanity test) of those that report it."""
    return f"{cell.flag_fails}/{cell.flag_seen}" if cell.flag_seen else ""


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    faces = table.test == "faces"
    head = ["method", "title", "family", "dataset", "metric", "wo_au", "w_au", "n_seeds",
            "wo_mean", "wo_std", "wo_ci95", "wo_n", "w_mean", "w_std", "w_ci95", "w_n",
            "test", "n_pairs", "p_value", "significant", "wo_best", "w_best", "direction", "shared_model",
            "wo_flag_fails", "w_flag_fails", "n_classes"]
    if table.reference is not None:
        head += ["ref_wo", "ref_w"]
    if faces:
        head += ["test_seed", "diff", "diff_ci_low", "diff_ci_high"]
    writer.writerow(head)
    for fam, method, title in table.rows:
        for ds in table.datasets:
            for m in table.metrics:
                wo, w = table.cell(method, ds, m, False), table.cell(method, ds, m, True)
                cols = [Column(ds, m, "ours", False), Column(ds, m, "ours", True)]
                line = [method, title, fam, ds, m.label, *(cell_text(table, method, title, c, "plain") for c in cols),
                        max(wo.n, w.n)]
                for c in (wo, w):
                    line += [_num(c.mean), _num(c.std), _num(c.summary.ci95), c.n]
                tested = w.test
                direction = "closest to 0" if m.by_magnitude else ("higher" if m.higher_better else "lower")
                line += [TEST_NAMES.get(tested.test, tested.test) if tested else "", tested.n_pairs if tested else "",
                         _num(tested.p_value) if tested else "", int(w.significant), int(wo.best), int(w.best),
                         direction, wo.shared or w.shared or "",
                         _flag_text(wo), _flag_text(w), "/".join(map(str, table.classes.get(ds, [])))]
                if table.reference is not None:
                    line += [_num(table.ref_value(method, title, Column(ds, m, "ref", au))) for au in (False, True)]
                if faces:
                    line += ["" if not tested or tested.seed is None else tested.seed,
                             *(_num(getattr(tested, k, None)) if tested else "" for k in ("diff", "ci_low", "ci_high"))]
                writer.writerow(line)
    return buf.getvalue()
