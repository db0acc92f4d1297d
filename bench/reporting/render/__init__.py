"""One renderer per output format, all drawing the same ``Table`` through ``bench.reporting.cells``."""
from bench.reporting.render.csv_rows import to_csv
from bench.reporting.render.latex import to_latex
from bench.reporting.render.markdown import to_markdown
from bench.reporting.render.terminal import to_rich

RENDERERS = {"markdown": to_markdown, "latex": to_latex, "csv": to_csv}

__all__ = ["RENDERERS", "to_csv", "to_latex", "to_markdown", "to_rich"]
