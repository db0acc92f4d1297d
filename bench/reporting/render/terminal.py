"""The table for a terminal: a rich renderable with real bold (same cells as Markdown)."""
from __future__ import annotations

from bench.reporting.cells import cell_text, empty_message, header_labels
from bench.reporting.footnotes import footnotes
from bench.reporting.metrics import FAMILY_TITLES
from bench.reporting.table import Column, Table


def to_rich(table: Table):
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
    for label in header_labels(table):
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
