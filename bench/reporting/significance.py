"""Which paired test marks a w/ AU cell (†), and running it on every (method, dataset, metric).

Two kinds of evidence, chosen by ``--test``:
- seeds (``t`` or ``wilcoxon``): pairs (w/o AU, w/ AU) that share a seed, from ``stats.py``;
- faces: the same test faces of one seed, from ``face_tests.py`` (McNemar's exact test for CL,
  a class-stratified paired bootstrap of the macro difference for the other metrics).
``auto`` picks faces when every cell has one seed (a seed test has nothing to pair) and seeds
otherwise. Cells that repeat another method's model (sharing on) are never tested.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from bench.reporting.face_tests import BOOTSTRAP_RESAMPLES, compare_faces
from bench.reporting.metrics import AUTO_LAYER, DATASET_TITLES
from bench.reporting.stats import TESTS, PairedTest, paired_test

if TYPE_CHECKING:
    from bench.reporting.metrics import Metric
    from bench.reporting.table import FaceSource, Table

#: Per-face frames hold extended scores under this prefix (``ext_deletion_auc``, ``ext_sanity_rho_final``…).
EXTENDED_PREFIX = "ext_"
#: --test choices. ``seeds`` is the paired t-test over seeds.
TEST_CHOICES = ("auto", "faces", "seeds", *TESTS)
#: Footnote names of every test a cell may carry.
TEST_NAMES = {**TESTS, "mcnemar": "McNemar's exact test", "bootstrap": "paired bootstrap"}


def resolve_test(test: str, table: "Table") -> str:
    """t | wilcoxon | faces: ``auto`` is faces when no cell has two seeds, else the t-test."""
    if test == "seeds":
        return "t"
    if test == "auto":
        return "faces" if all(c.n <= 1 for c in table.cells.values()) else "t"
    return test


def apply_tests(table: "Table", faces: "FaceSource | None") -> None:
    """Set ``test`` and ``significant`` on each testable w/ AU cell; sets ``table.test``."""
    table.test = resolve_test(table.test, table)
    untested: set[str] = set()
    for _, method, title in table.rows:
        for ds in table.datasets:
            for m in table.metrics:
                wo, w = table.cell(method, ds, m, False), table.cell(method, ds, m, True)
                if w.mean is None or wo.mean is None or w.shared or wo.shared:
                    continue
                if table.test == "faces":
                    result = _faces_test(table, method, ds, m, wo, w, faces)
                    if result is None:
                        untested.add(f"{title}, {DATASET_TITLES.get(ds, ds)}")
                        continue
                else:
                    result = paired_test(wo.by_seed, w.by_seed, table.test)
                w.test = result
                w.significant = bool(result and result.p_value is not None and result.p_value < table.alpha)
    table.untested = sorted(untested)


def _faces_test(table: "Table", method: str, ds: str, metric: "Metric", wo, w, faces) -> PairedTest | None:
    """The faces test of one metric on the smallest seed both sides have; None without per-face results."""
    if faces is None:
        return None
    seeds = sorted(set(wo.by_seed) & set(w.by_seed))
    if not seeds:
        return None
    seed = seeds[0]
    row_wo, row_w = table.result_rows.get((method, ds, False, seed)), table.result_rows.get((method, ds, True, seed))
    if row_wo is None or row_w is None:
        return None
    frame_wo, frame_w = faces(row_wo), faces(row_w)
    if frame_wo is None or frame_w is None:
        return None
    column = metric.column
    if column == f"att_cos_{AUTO_LAYER}":
        column = f"att_cos_{table.aligned.get(method, 'layer5')}"
    extended = f"{EXTENDED_PREFIX}{column}"      # the evaluation stores extended per-face scores as ext_<key>
    if column not in frame_wo.columns and extended in frame_wo.columns and extended in frame_w.columns:
        column = extended
    result = compare_faces(frame_wo, frame_w, column, average=metric.average)
    if result is None:
        return None
    return PairedTest(result.test, result.n, result.p_value, seed=seed, diff=result.diff,
                      ci_low=result.ci_low, ci_high=result.ci_high)


def test_note(table: "Table", sig_mark: str, tested: list) -> str:
    """The † footnote: which test, on what (n seeds or n faces), at which threshold."""
    none = "" if any(c.significant for c in tested) else " No cell is significant."
    if table.test == "faces":
        ns = sorted({c.test.n_pairs for c in tested})
        n_text = str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
        seeds = sorted({c.test.seed for c in tested if c.test.seed is not None})
        seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else "the smallest shared seed"
        kinds = {c.test.test for c in tested}
        parts = []
        if "mcnemar" in kinds:
            parts.append(f"{TEST_NAMES['mcnemar']} for CL")
        if "bootstrap" in kinds:
            parts.append(f"a {TEST_NAMES['bootstrap']} over faces stratified by class ({BOOTSTRAP_RESAMPLES} "
                         "resamples) of the difference, averaged as each metric is, for the other metrics")
        return (f"{sig_mark} marks w/ AU cells that differ from w/o AU on the same test faces ({seed_text}, "
                f"n = {n_text} faces): {' and '.join(parts)}; two-sided, p < {table.alpha:g}, no correction for "
                f"multiple comparisons.{none}")
    return (f"{sig_mark} marks w/ AU cells that differ from w/o AU: two-sided {TESTS[table.test]} "
            f"paired by seed, p < {table.alpha:g}, no correction for multiple comparisons; "
            f"cells with fewer than 2 paired seeds are not tested.{none}")
