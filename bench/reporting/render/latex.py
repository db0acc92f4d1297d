"""The table as a LaTeX ``table`` float (booktabs; graphicx shrinks it to the line width only when wider)."""
from __future__ import annotations

from bench.reporting.cells import cell_text, empty_message
from bench.reporting.footnotes import footnotes
from bench.reporting.metrics import DATASET_TITLES, FAMILY_TITLES
from bench.reporting.table import Table


def latex_escape(text: str) -> str:
    """Plain text to LaTeX; '--' stays two hyphens (an option name), not an en dash."""
    out = []
    for i, ch in enumerate(text):
        if ch == "-" and text[i + 1:i + 2] == "-":
            out.append("-{}")
            continue
        out.append({"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
                    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                    "±": r"$\pm$", "—": "--", "−": "$-$", "Δ": r"$\Delta$", "†": r"$^{\dagger}$",
                    "…": r"\ldots{}", "≥": r"$\geq$", "<": "$<$", ">": "$>$", "ρ": r"$\rho$", "|": r"$|$",
                    "‡": r"$^{\ddagger}$", "§": r"$^{\S}$", "↑": r"$\uparrow$", "↓": r"$\downarrow$",
                    "`": ""}.get(ch, ch))
    return "".join(out).encode("ascii", "replace").decode("ascii")


def to_latex(table: Table) -> str:
    if not table.cells:
        return f"% {latex_escape(empty_message(table))}\n"
    gw = table.group_width
    per_ds = gw * len(table.metrics)
    ncols = 1 + per_ds * len(table.datasets)
    spec = "l" + (" " + "r" * per_ds) * len(table.datasets)
    word = latex_escape(table.reference.word) if table.reference else ""
    metric_names = ", ".join(latex_escape(m.label) for m in table.metrics)
    caption = latex_escape(table.caption)
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
    out.append(" & " + " & ".join(rf"\multicolumn{{{per_ds}}}{{c}}{{{latex_escape(DATASET_TITLES.get(ds, ds))}}}"
                                   for ds in table.datasets) + r" \\")
    out.append(" ".join(rf"\cmidrule(lr){{{2 + i * per_ds}-{1 + (i + 1) * per_ds}}}" for i in range(len(table.datasets))))
    out.append(" & " + " & ".join(rf"\multicolumn{{{gw}}}{{c}}{{{latex_escape(m.header)}}}"
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
        out.append(" & ".join([latex_escape(title), *(cell_text(table, method, title, c, "tex") for c in cols)]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}%", "}"]
    notes = footnotes(table)
    if notes:
        out += [r"\par\smallskip", r"\parbox{\linewidth}{\footnotesize",
                *(latex_escape(n) + r"\par" for n in notes), "}"]
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"
