"""The table as Markdown (a pipe table, family rows in bold, footnotes below)."""
from __future__ import annotations

from bench.reporting.cells import cell_text, empty_message, header_labels
from bench.reporting.footnotes import footnotes
from bench.reporting.metrics import FAMILY_TITLES
from bench.reporting.table import Table


def to_markdown(table: Table) -> str:
    if not table.cells:
        return empty_message(table) + "\n"
    head = ["Method", *header_labels(table)]
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
