"""Cell and header text: one formatter that every renderer (Markdown, rich, LaTeX, CSV) calls,
so the formats always agree on numbers, bold and marks."""
from __future__ import annotations

from typing import Sequence

from bench.reporting.metrics import DATASET_TITLES, FLAG_MARK, MISSING, SHARED_MARK, SIG_MARK
from bench.reporting.table import Column, Table


def num(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def signed(value: float, digits: int) -> str:
    """'+0.75' / '-0.30'; a difference that rounds to zero prints as '+0.00', never '-0.00'."""
    return f"{0.0 if round(value, digits) == 0 else value:+.{digits}f}"


_MARKS = {"md": (SHARED_MARK, SIG_MARK, FLAG_MARK), "rich": (SHARED_MARK, SIG_MARK, FLAG_MARK),
          "tex": (r"$^{\ddagger}$", r"$^{\dagger}$", r"$^{\S}$")}


def ref_text(table: Table, method: str, title: str, column: Column) -> str | None:
    """A reference value at the precision it was published with (0.56 stays 0.56)."""
    ref = table.ref_value(method, title, column)
    if ref is None:
        return None
    digits = table.reference.decimals(method, title, column.dataset, column.metric.column, column.au)
    return num(ref, column.metric.digits if digits is None else digits)


def cell_text(table: Table, method: str, title: str, column: Column, style: str = "md") -> str:
    """``style``: 'plain' (no marks), 'md' (Markdown, bold and marks), 'tex' (LaTeX), 'rich' (rich markup)."""
    tex = style == "tex"
    missing = "--" if tex else MISSING
    m = column.metric
    ours = table.cell(method, column.dataset, m, column.au)
    if column.kind == "ref":
        text = ref_text(table, method, title, column)
        return missing if text is None else text
    if column.kind == "delta":
        ref = table.ref_value(method, title, column)
        if ref is None or ours.mean is None:
            return missing
        text = signed(ours.mean - ref, m.digits)
        return "$-$" + text[1:] if tex and text.startswith("-") else text
    if ours.mean is None:
        return missing
    text = num(ours.mean, m.digits)
    spread = ours.summary.spread(table.spread)
    if ours.n > 1 and spread is not None:
        text += (r" $\pm$ " if tex else " ± ") + num(spread, m.digits)
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


def join_and(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def header_labels(table: Table) -> list[str]:
    multi = len(table.datasets) > 1
    word = table.reference.word if table.reference is not None else ""
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


def failed_note(table: Table) -> str:
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


def empty_message(table: Table) -> str:
    """The one line for a table without a single finished result."""
    if table.failed:
        return f"No finished results to tabulate. {failed_note(table)}: {'; '.join(table.failed)}."
    return "No finished trials to tabulate."
