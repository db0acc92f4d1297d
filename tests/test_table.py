"""The comparison table: golden Markdown / LaTeX / CSV from fixed rows, and the statistics behind them.

The fixed rows hold three seeds for CAM and GradCAM (bold-best and a significant AU effect), one
seed for APViT with a failed w/ AU trial and no CAM (missing cells). Regenerate the golden files
after an intended change with ``UPDATE_GOLDEN=1 pytest tests/test_table.py``.
"""
import csv
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest

from bench.errors import UserError
from bench.stats import paired_test, summarize
from bench.table import (Reference, build_table, filter_frame, load_reference, metrics_for, to_csv, to_latex,
                         to_markdown)

GOLDEN = Path(__file__).parent / "golden"
ORDER = ["cam", "gradcam", "apvit"]


def _frame():
    base = {"status": "ok", "dataset": "rafdb", "error": None, "run": "r"}
    rows = []

    def add(method, title, family, au, seed, cl, cam_cos, att):
        rows.append({**base, "method": method, "title": title, "family": family, "au": au, "seed": seed,
                     "cl": cl, "cam_cos": cam_cos, "att_cos_layer5": att})

    # CAM: CL w/ AU is higher by 4, 5, 3 (paired t = 6.93, p = 0.020 by hand), CAM-COS unchanged-ish.
    for seed, (cl0, cl1, c0, c1, a0, a1) in enumerate([(80.0, 84.0, 0.50, 0.70, 0.40, 0.80),
                                                       (81.0, 86.0, 0.60, 0.60, 0.50, 0.90),
                                                       (82.0, 85.0, 0.55, 0.65, 0.45, 0.85)]):
        add("cam", "CAM", "cnn", False, seed, cl0, c0, a0)
        add("cam", "CAM", "cnn", True, seed, cl1, c1, a1)
    # GradCAM: better CAM-COS than CAM, worse CL.
    for seed, (cl0, cl1, c0, c1, a0, a1) in enumerate([(78.0, 79.0, 0.62, 0.80, 0.40, 0.70),
                                                       (79.0, 78.0, 0.64, 0.82, 0.41, 0.71),
                                                       (77.0, 80.0, 0.63, 0.84, 0.39, 0.72)]):
        add("gradcam", "GradCAM", "cnn", False, seed, cl0, c0, a0)
        add("gradcam", "GradCAM", "cnn", True, seed, cl1, c1, a1)
    add("apvit", "APViT", "transformer", False, 0, 70.125, None, 0.25)
    rows.append({**base, "method": "apvit", "au": True, "seed": 0, "status": "failed", "error": "RuntimeError: boom"})
    return pl.DataFrame(rows, infer_schema_length=None)


def _table(**kw):
    return build_table(_frame(), "layer5", ORDER, **kw)


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; rerun with UPDATE_GOLDEN=1 if intended"


def test_markdown_golden():
    _golden("table.md", to_markdown(_table()))


def test_markdown_with_paper_delta_golden():
    _golden("table-paper-delta.md", to_markdown(_table(reference=load_reference("paper"), reference_mode="delta")))


def test_latex_golden():
    _golden("table.tex", to_latex(_table(reference=load_reference("paper"))))


def test_csv_golden():
    _golden("table.csv", to_csv(_table(spread="ci")))


def test_cells_marks_and_footnotes():
    md = to_markdown(_table())
    cam = next(line for line in md.splitlines() if line.startswith("| CAM |"))
    cells = [c.strip() for c in cam.strip("|").split("|")[1:]]
    # CL: mean ± std over 3 seeds, w/ AU significant (†) and the best of its column (bold).
    assert cells[0] == "**81.00 ± 1.00**" and cells[1] == "**85.00 ± 1.00**†"
    # CAM-COS: GradCAM is best, so CAM is plain; 0.55/0.60/0.65 paired diffs 0.2, 0, 0.1 -> not significant.
    assert cells[2] == "0.550 ± 0.050" and cells[3] == "0.650 ± 0.050"
    apvit = next(line for line in md.splitlines() if line.startswith("| APViT |"))
    assert [c.strip() for c in apvit.strip("|").split("|")[1:]] == ["70.12", "—", "—", "—", "0.250", "—"]
    assert "APViT, RAF-DB, w/ AU: failed" in md and "APViT, RAF-DB, w/o AU: no CAM-COS from this method" in md
    assert "Failed trials: apvit on rafdb (w/ AU, seed 0): RuntimeError: boom." in md
    assert "paired t-test" in md and "p < 0.05" in md


def test_hand_computed_statistics():
    # n = 3, std 1: 95% CI half-width = t(0.975, df=2) / sqrt(3); for df = 2, t = sqrt(2 q² / (1 - q²)), q = 0.95.
    s = summarize([80.0, 81.0, 82.0])
    t975 = (2 * 0.95 ** 2 / (1 - 0.95 ** 2)) ** 0.5
    assert s.mean == 81.0 and s.std == pytest.approx(1.0) and s.ci95 == pytest.approx(t975 / 3 ** 0.5)
    # Paired differences 4, 5, 3: t = 4 / (1 / sqrt 3); for df = 2, two-sided p = 1 - t / sqrt(2 + t²).
    result = paired_test({0: 80.0, 1: 81.0, 2: 82.0}, {0: 84.0, 1: 86.0, 2: 85.0})
    t = 4 * 3 ** 0.5
    assert result.n_pairs == 3 and result.p_value == pytest.approx(1 - t / (2 + t * t) ** 0.5)
    # Pairs are by seed: seed 9 has no partner; one pair is no test.
    assert paired_test({0: 1.0, 9: 2.0}, {0: 2.0, 1: 3.0}) is None
    # The signed-rank test cannot reach 0.05 with 3 pairs (smallest two-sided p = 0.25).
    assert paired_test({0: 80.0, 1: 81.0, 2: 82.0}, {0: 84.0, 1: 86.0, 2: 85.0}, "wilcoxon").p_value == pytest.approx(0.25)


def test_wilcoxon_footnote_and_no_marks():
    md = to_markdown(_table(test="wilcoxon"))
    assert "†" not in md.split("\n\n")[0] and "Wilcoxon signed-rank test" in md and "No cell is significant" in md


def test_paper_reference_side_by_side():
    table = _table(reference=load_reference("paper"))
    md = to_markdown(table)
    head = md.splitlines()[0]
    assert "CL w/o AU (paper)" in head and "ATT-COS (layer5) w/ AU (paper)" in head
    cam = next(line for line in md.splitlines() if line.startswith("| CAM |"))
    cells = [c.strip() for c in cam.strip("|").split("|")[1:]]
    assert cells[2:4] == ["88.20", "88.95"]                  # Table 1, RAF-DB, CAM
    assert cells[-2:] == ["0.570", "0.850"]                  # Table 2, RAF-DB, CAM, layer 5
    apvit = next(line for line in md.splitlines() if line.startswith("| APViT |"))
    assert [c.strip() for c in apvit.strip("|").split("|")[1:]][6:8] == ["—", "—"]   # the paper has no APViT CAM-COS


def test_paper_csv_holds_tables_1_and_2():
    ref = load_reference("paper")
    assert len(ref.values) == 11 * 2 * 2 * 3 - 2 * 2          # 11 methods, 2 datasets, w/o|w/, 3 metrics; no APViT CAM-COS
    assert ref.get("gradcampp", "GradCAM++", "affectnet", "cl", True) == 62.45
    assert ref.get("tscam", "TS-CAM", "rafdb", "att_cos_layer5", False) == 0.55


def test_latex_structure():
    for kw in ({}, {"reference": load_reference("paper")}, {"reference": load_reference("paper"), "reference_mode": "delta"}):
        tex = to_latex(_table(**kw))
        assert tex.isascii()
        assert tex.count("{") == tex.count("}")
        assert re.findall(r"\\begin\{(\w+)\}", tex) == list(reversed(re.findall(r"\\end\{(\w+)\}", tex)))
        assert tex.count("$") % 2 == 0
        ncols = int(re.search(r"\\multicolumn\{(\d+)\}\{l\}", tex).group(1))
        body = tex.split(r"\midrule", 1)[1].split(r"\bottomrule")[0]
        rows = [line for line in body.splitlines() if line.endswith(r"\\") and r"\multicolumn" not in line]
        assert len(rows) == 3 and all(line.count("&") == ncols - 1 for line in rows)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_compiles(tmp_path):
    (tmp_path / "table.tex").write_text(to_latex(_table(reference=load_reference("paper"), reference_mode="delta")))
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
                                      "\\begin{document}\n\\input{table.tex}\n\\end{document}\n")
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0


def test_csv_numbers_behind_the_text():
    rows = list(csv.DictReader(io.StringIO(to_csv(_table()))))
    cl = next(r for r in rows if r["method"] == "cam" and r["metric"] == "CL")
    assert (cl["wo_au"], cl["w_au"], cl["n_seeds"]) == ("81.00 ± 1.00", "85.00 ± 1.00", "3")
    assert float(cl["w_mean"]) == 85.0 and float(cl["w_std"]) == pytest.approx(1.0)
    assert cl["significant"] == "1" and cl["wo_best"] == "1" and cl["n_pairs"] == "3"
    assert float(cl["p_value"]) < 0.05
    att = next(r for r in rows if r["method"] == "apvit" and r["metric"] == "ATT-COS (layer5)")
    assert (att["wo_au"], att["w_au"], att["w_n"], att["p_value"]) == ("0.250", "—", "0", "")


def test_single_method_has_no_bold_and_single_seed_no_spread():
    frame = _frame().filter((pl.col("method") == "cam") & (pl.col("seed") == 0))
    md = to_markdown(build_table(frame, "layer5", ORDER))
    assert "**80.00**" not in md and "| CAM | 80.00 | 84.00 | 0.500 | 0.700 | 0.400 | 0.800 |" in md
    assert "±" not in md and "†" not in md


def test_filters_and_metric_choice():
    frame = filter_frame(_frame(), methods=["cam"], datasets=["rafdb"])
    table = build_table(frame, "layer5", ORDER, metrics=["att-cos"])
    assert [m.label for m in table.metrics] == ["ATT-COS (layer5)"] and [r[1] for r in table.rows] == ["cam"]
    with pytest.raises(UserError, match="--methods: 'nosuch' not in"):
        filter_frame(_frame(), methods=["nosuch"])
    with pytest.raises(UserError, match="unknown --metric"):
        metrics_for("layer5", ["bleu"])
    with pytest.raises(UserError, match="bad --layer 'layer9'"):
        build_table(_frame(), "layer9")


def test_duplicate_seed_is_refused():
    frame = pl.concat([_frame(), _frame().with_columns(pl.lit("other").alias("run"))])
    with pytest.raises(UserError, match="two results for"):
        build_table(frame)


def test_custom_reference_matches_titles():
    ref = Reference("mine", "my table", {("gradcam", "rafdb", "cl", False): 70.0})
    md = to_markdown(_table(reference=ref, reference_mode="delta", metrics=["cl"]))
    grad = next(line for line in md.splitlines() if line.startswith("| GradCAM |"))
    assert [c.strip() for c in grad.strip("|").split("|")[1:]][2:4] == ["+8.00", "—"]


def test_empty_run_says_so_in_one_line():
    assert to_markdown(build_table(pl.DataFrame())) == "No finished trials to tabulate.\n"
    only_failed = _frame().filter(pl.col("status") == "failed")
    text = to_markdown(build_table(only_failed))
    assert text.count("\n") == 1 and text.startswith("No finished trials to tabulate (1 failed")
    assert to_latex(build_table(pl.DataFrame())).count("\n") == 1


def test_auto_layer_takes_each_methods_aligned_layer():
    frame = _frame().with_columns(pl.lit("layer5").alias("alignment_layers"), pl.lit(None, pl.Float64).alias("att_cos_tokens"))
    frame = frame.with_columns(
        pl.when(pl.col("method") == "apvit").then(pl.lit("tokens")).otherwise(pl.col("alignment_layers")).alias("alignment_layers"),
        pl.when(pl.col("method") == "apvit").then(pl.lit(0.33)).otherwise(None).alias("att_cos_tokens"))
    md = to_markdown(build_table(frame, "auto", ORDER, metrics=["att-cos"], reference=load_reference("paper")))
    assert "ATT-COS (aligned layer) w/o AU" in md
    assert "| CAM | **0.450 ± 0.050** | **0.850 ± 0.050** | 0.570 | 0.850 |" in md
    assert "| APViT | 0.330 | — | 0.380 | 0.850 |" in md
