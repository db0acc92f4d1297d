"""The notes under a table: what the cells show, the test behind †, shared models (‡), flags (§),
why a cell is empty, failures, and what a reference column is (with the setting it came from)."""
from __future__ import annotations

from bench.reporting.cells import failed_note, join_and
from bench.reporting.metrics import (AUTO_LAYER, DATASET_TITLES, DOWN, EXTENDED_HINT, FLAG_MARK, MISSING,
                                     SHARED_MARK, SIG_MARK, UP)
from bench.reporting.reference import PAPER_SETTING
from bench.reporting.significance import test_note
from bench.reporting.stats import SPREADS
from bench.reporting.table import Table, au_text

SETTING_WORDS = {"profile": "profile", "image_size": "image size", "epochs": "epochs"}


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
    parts = "; ".join(f"{join_and(titles)} {'uses' if len(titles) == 1 else 'use'} {table.titles.get(src, src)}'s"
                      for src, titles in by_source.items())
    return (f"{SHARED_MARK} marks {join_and(labels)} cells that repeat the numbers of another method's trained model "
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
                        where.append(f"{title}, {DATASET_TITLES.get(ds, ds)}, {au_text(au)}: "
                                     f"{c.flag_fails} of {c.flag_seen} seed{'s' * (c.flag_seen != 1)}")
        if where:
            notes.append(f"{FLAG_MARK} {m.label}: {m.flag_note} ({'; '.join(where)}).")
    return notes


def _test_notes(table: Table, several_seeds: bool) -> list[str]:
    tested = [c for c in table.cells.values() if c.test is not None]
    notes = []
    if table.test == "faces":
        if tested:
            notes.append(test_note(table, SIG_MARK, tested))
        if table.untested:
            notes.append(f"No faces test (no {SIG_MARK}) for {'; '.join(table.untested)}: their per-face results are "
                         "missing (evaluated before per-face records were kept); rerun their evaluation, or use "
                         "--test seeds with 2 or more seeds.")
        return notes
    if several_seeds:
        if tested:
            notes.append(test_note(table, SIG_MARK, tested))
        else:
            notes.append("No significance test: no cell has 2 or more independent seeds with both w/o and w/ AU.")
    return notes


def _best_note(table: Table) -> str:
    rules = []
    if not all(m.higher_better for m in table.metrics):
        rules.append(f"highest for {UP}, lowest for {DOWN}")
    zero = [m.label for m in table.metrics if m.by_magnitude]
    if zero:
        rules.append(f"closest to 0 for {join_and(zero)}")
    both = "; ".join(rules) + "; " if rules else ""
    return f"Bold: best per column ({both}at the printed precision, among 2 or more methods)."


def setting_note(table: Table) -> str | None:
    """With the paper as reference: its setting next to this run's, so a small run is not read as a
    replication. Columns the rows lack (older records) are said to be unrecorded."""
    if table.reference is None or not table.reference.is_paper:
        return None
    ours, unknown = [], []
    for key, word in SETTING_WORDS.items():
        seen = table.settings.get(key) or []
        if seen:
            ours.append(f"{word} {' or '.join(seen)}")
        else:
            unknown.append(word)
    paper = (f"profile {PAPER_SETTING['profile']}, image size {PAPER_SETTING['image_size']}, "
             f"epochs {PAPER_SETTING['epochs']}")
    differ = any(table.settings.get(k) and table.settings[k] != [str(v)] for k, v in PAPER_SETTING.items())
    if differ:
        verdict = "the settings differ: the paper's numbers are a reference, not a replication of this run"
    elif unknown:
        verdict = "compare with care"
    else:
        verdict = "same setting"
    shown = ("Paper columns are" if table.reference_mode == "side" else "Δ compares with values") + \
        f" at the paper's setting ({paper})"
    shown += ", printed at the paper's precision" if table.reference_mode == "side" else ""
    text = f"{shown}; this run: "
    text += ", ".join(ours) if ours else "setting not recorded"
    if unknown and ours:
        text += f" ({join_and(unknown)} not recorded)"
    return text + f"; {verdict}."


def footnotes(table: Table) -> list[str]:
    notes = []
    ns = sorted({c.n for c in table.cells.values() if c.n})
    several = bool(ns) and ns[-1] > 1
    if several:
        n_text = str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
        notes.append(f"Cells show mean ± {SPREADS[table.spread]} over seeds (n = {n_text} per cell).")
    notes += _test_notes(table, several)
    if any(c.best for c in table.cells.values()):
        notes.append(_best_note(table))
    shared = _shared_note(table)
    if shared:
        notes.append(shared)
    notes += _flag_notes(table)
    if table.missing:
        notes.append(f"{MISSING} no result: " + "; ".join(table.missing) + ".")
    if table.not_evaluated:
        labels = join_and([m.label for m in table.metrics if m.extended])
        notes.append(f"{MISSING} {labels} not evaluated for " + "; ".join(table.not_evaluated)
                     + f": {EXTENDED_HINT}.")
    if table.failed:
        notes.append(f"{failed_note(table)}: " + "; ".join(table.failed) + ".")
    if table.agnostic_cams and "cam_cos" in [m.column for m in table.metrics]:
        notes.append("CAM-COS of " + ", ".join(table.agnostic_cams) + " uses a class-agnostic map (the method has "
                     "no class CAM; the paper prints —).")
    if table.selected_on_test:
        notes.append("Some models were selected on the test split (train.select_on=test), as the paper's code did.")
    if table.reference is not None:
        notes += _reference_notes(table)
    return notes


def _reference_notes(table: Table) -> list[str]:
    ref = table.reference
    word = ref.word
    lead = f"Δ = ours − {word}" if table.reference_mode == "delta" else f"Columns '{word}'"
    notes = [f"{lead}: {ref.source}."]
    setting = setting_note(table)
    if setting:
        notes.append(setting)
    uncovered = [DATASET_TITLES.get(ds, ds) for ds in table.datasets if not any(k[1] == ds for k in ref.values)]
    if uncovered:
        notes.append(f"The {word} has no values for {', '.join(uncovered)}.")
    if ref.is_paper and any(m.column.startswith("att_cos_") for m in table.metrics) and table.layer not in ("layer5", AUTO_LAYER):
        notes.append(f"The paper reports ATT-COS at layer5 only (this table shows {table.layer}).")
    return notes
