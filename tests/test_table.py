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
from bench.reporting.stats import paired_test, summarize
from bench.reporting.metrics import metrics_for
from bench.reporting.reference import Reference, load_reference
from bench.reporting.render import to_csv, to_latex, to_markdown
from bench.reporting.table import build_table, filter_frame

GOLDEN = Path(__file__).parent / "golden"
ORDER = ["cam", "gradcam", "apvit"]


def _frame():
    base = {"status": "ok", "dataset": "rafdb", "error": None, "run": "r", "num_classes": 7}
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
    assert "Failed results (1, from 1 failed trial): apvit on rafdb (w/ AU, seed 0): RuntimeError: boom." in md
    assert md.startswith("RAF-DB (7 classes)\n\n| Method |")
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
    head = md.splitlines()[2]
    assert "CL ↑ w/o AU (paper)" in head and "ATT-COS (layer5) ↑ w/ AU (paper)" in head
    cam = next(line for line in md.splitlines() if line.startswith("| CAM |"))
    cells = [c.strip() for c in cam.strip("|").split("|")[1:]]
    assert cells[2:4] == ["88.20", "88.95"]                  # Table 1, RAF-DB, CAM
    assert cells[-2:] == ["0.57", "0.85"]                    # Table 2, RAF-DB, CAM, layer 5, at the paper's precision
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
    assert text.count("\n") == 1 and text.startswith("No finished results to tabulate. Failed results (1, ")
    assert to_latex(build_table(pl.DataFrame())).count("\n") == 1


def test_auto_layer_takes_each_methods_aligned_layer():
    frame = _frame().with_columns(pl.lit("layer5").alias("alignment_layers"), pl.lit(None, pl.Float64).alias("att_cos_tokens"))
    frame = frame.with_columns(
        pl.when(pl.col("method") == "apvit").then(pl.lit("tokens")).otherwise(pl.col("alignment_layers")).alias("alignment_layers"),
        pl.when(pl.col("method") == "apvit").then(pl.lit(0.33)).otherwise(None).alias("att_cos_tokens"))
    md = to_markdown(build_table(frame, "auto", ORDER, metrics=["att-cos"], reference=load_reference("paper")))
    assert "ATT-COS (aligned layer) ↑ w/o AU" in md
    assert "| CAM | **0.450 ± 0.050** | **0.850 ± 0.050** | 0.57 | 0.85 |" in md
    assert "| APViT | 0.330 | — | 0.38 | 0.85 |" in md


# --------------------------------------------------------------------------------------------
# Shared models, extended metrics, failed extractors (one fixture, every format)


def _extended_frame():
    """CAM trains; GradCAM reuses its model (sharing on), so its CL/ATT-COS equal CAM's by construction;
    WILDCAT trains its own. Two seeds each with extended metrics, except WILDCAT (not evaluated extended).
    LayerCAM's extractor failed inside a finished CAM trial."""
    base = {"status": "ok", "trial_status": "ok", "dataset": "rafdb", "error": None, "run": "r", "num_classes": 7}
    rows = []
    for seed in (0, 1):
        for au in (False, True):
            cl = 80.0 + 4 * au + seed
            att = 0.40 + 0.4 * au + 0.01 * seed
            trial = f"cam-{seed}-{au}"
            ext = {"deletion_auc": 0.30 - 0.1 * au + 0.01 * seed, "insertion_auc": 0.60 + 0.01 * seed,
                   "sanity_similarity": 0.20, "sanity_pass": True}
            rows.append({**base, "trial_id": trial, "seed": seed, "au": au, "method": "cam", "title": "CAM",
                         "family": "cnn", "cl": cl, "cam_cos": 0.50, "att_cos_layer5": att, **ext})
            # GradCAM: same model, so same CL and ATT-COS; its own CAM-COS and maps. Its deletion AUC is
            # lower (better) than CAM's; its sanity test fails on seed 1 w/ AU.
            rows.append({**base, "trial_id": trial, "seed": seed, "au": au, "method": "gradcam", "title": "GradCAM",
                         "family": "cnn", "shared_model": "cam", "cl": cl, "cam_cos": 0.60, "att_cos_layer5": att,
                         "deletion_auc": ext["deletion_auc"] - 0.05, "insertion_auc": 0.55,
                         "sanity_similarity": 0.90 if (seed, au) == (1, True) else 0.30,
                         "sanity_pass": (seed, au) != (1, True)})
            rows.append({**base, "trial_id": trial, "seed": seed, "au": au, "method": "layercam", "title": "LayerCAM",
                         "family": "cnn", "shared_model": "cam", "status": "failed" if au else "ok",
                         "error": "ValueError: hook never fired" if au else None,
                         "cl": None if au else cl, "cam_cos": None if au else 0.55, "att_cos_layer5": None if au else att,
                         "deletion_auc": None if au else 0.4, "insertion_auc": None if au else 0.5,
                         "sanity_similarity": None if au else 0.25, "sanity_pass": None if au else True})
            rows.append({**base, "trial_id": f"wild-{seed}-{au}", "seed": seed, "au": au, "method": "wildcat",
                         "title": "WILDCAT", "family": "cnn", "cl": 70.0 + seed, "cam_cos": 0.40,
                         "att_cos_layer5": 0.30})
    return pl.DataFrame(rows, infer_schema_length=None)


EXT_ORDER = ["cam", "wildcat", "gradcam", "layercam"]
EXT_METRICS = ["cl", "att-cos", "deletion", "insertion", "sanity"]


def _ext_table(frame=None, **kw):
    return build_table(_extended_frame() if frame is None else frame, "layer5", EXT_ORDER, metrics=EXT_METRICS, **kw)


def _md_cells(md: str, title: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith(f"| {title} |"))
    return [c.strip() for c in line.strip("|").split("|")[1:]]


def test_extended_goldens():
    _golden("table-extended.md", to_markdown(_ext_table()))
    _golden("table-extended.tex", to_latex(_ext_table()))
    _golden("table-extended.csv", to_csv(_ext_table()))


def test_shared_cells_are_marked_not_bold_not_tested():
    md = to_markdown(_ext_table())
    cam, grad = _md_cells(md, "CAM"), _md_cells(md, "GradCAM")
    # CL: CAM and GradCAM carry the same numbers; only CAM (the trained model) is bold and tested.
    assert cam[:2] == ["**80.50 ± 0.71**", "**84.50 ± 0.71**"] and grad[:2] == ["80.50 ± 0.71‡", "84.50 ± 0.71‡"]
    assert "†" not in grad[1] and "†" not in grad[3]
    # Their own metrics (deletion AUC: GradCAM lower = better, ↓) compete normally and are not marked.
    assert grad[4] == "**0.255 ± 0.007**" and cam[4] == "0.305 ± 0.007"
    assert ("‡ marks CL and ATT-COS (layer5) cells that repeat the numbers of another method's trained model "
            "(sharing on): GradCAM and LayerCAM use CAM's. They are neither bolded nor tested") in md
    # --no-share rows: the same numbers, unmarked, so ties are bold and the pair is tested.
    unshared = _extended_frame().with_columns(pl.lit(None, pl.Utf8).alias("shared_model"))
    md2 = to_markdown(_ext_table(unshared))
    assert _md_cells(md2, "GradCAM")[:2] == ["**80.50 ± 0.71**", "**84.50 ± 0.71**"] and "‡" not in md2


def test_every_format_marks_the_same_cells():
    table = _ext_table()
    md, tex = to_markdown(table), to_latex(table)
    rows = list(csv.DictReader(io.StringIO(to_csv(table))))
    cl = next(r for r in rows if r["method"] == "gradcam" and r["metric"] == "CL")
    assert (cl["shared_model"], cl["wo_best"], cl["w_best"], cl["p_value"], cl["test"]) == ("cam", "0", "0", "", "")
    grad_tex = next(line for line in tex.splitlines() if line.startswith("GradCAM &"))
    tex_cells = [c.strip() for c in grad_tex.rstrip("\\ ").split("&")[1:]]
    assert tex_cells[0] == r"80.50 $\pm$ 0.71$^{\ddagger}$" and tex_cells[4] == r"\textbf{0.255 $\pm$ 0.007}"
    # Strip each format's marks: the numbers agree cell by cell.
    plain_md = [re.sub(r"[*‡†§]", "", c) for c in _md_cells(md, "GradCAM")]
    plain_tex = [re.sub(r"\\textbf\{(.*)\}", r"\1", re.sub(r"\$\^\{\\(ddagger|dagger|S)\}\$", "", c)).replace(
        r" $\pm$ ", " ± ").replace("--", "—") for c in tex_cells]
    plain_csv = [v for r in rows if r["method"] == "gradcam" for v in (r["wo_au"], r["w_au"])]
    assert plain_md == plain_tex == plain_csv


def test_extended_metrics_direction_flags_and_not_evaluated():
    table = _ext_table()
    md = to_markdown(table)
    head = md.splitlines()[2]
    assert "Deletion AUC ↓ w/o AU" in head and "Insertion AUC ↑ w/ AU" in head and "Sanity similarity ↓" in head
    assert r"Deletion AUC $\downarrow$" in to_latex(table)
    # Insertion is higher-better: CAM (0.605) beats GradCAM (0.550); sanity is lower-better: CAM 0.200 wins.
    cam, grad = _md_cells(md, "CAM"), _md_cells(md, "GradCAM")
    assert cam[6] == "**0.605 ± 0.007**" and grad[6] == "0.550 ± 0.000" and cam[8] == "**0.200 ± 0.000**"
    # GradCAM's sanity test fails on one of its two w/ AU seeds: flagged there only.
    assert grad[9] == "0.600 ± 0.424§" and "§" not in grad[8]
    assert ("§ Sanity similarity: fails the model-randomisation test: its maps barely change when the top layers "
            "are re-initialised (GradCAM, RAF-DB, w/ AU: 1 of 2 seeds).") in md
    # Deletion w/ AU differs by exactly 0.1 on both seeds: constant differences are untestable, not significant.
    assert "†" not in cam[5]
    # WILDCAT was not evaluated with --eval extended: dashes and the hint, not "from this method".
    assert _md_cells(md, "WILDCAT")[4:] == ["—"] * 6
    assert ("— Deletion AUC, Insertion AUC and Sanity similarity not evaluated for WILDCAT, RAF-DB, w/o AU; "
            "WILDCAT, RAF-DB, w/ AU: evaluate them with `bench eval --eval extended,interventions`") in md
    assert "WILDCAT, RAF-DB, w/o AU: no" not in md


def test_failed_extractor_in_a_finished_trial():
    frame = pl.concat([_extended_frame(), _frame().filter(pl.col("method") == "apvit").with_columns(
        pl.col("status").alias("trial_status"), pl.lit(7).alias("num_classes"))], how="diagonal_relaxed")
    md = to_markdown(build_table(frame, "layer5", EXT_ORDER + ["apvit"], metrics=["cl"]))
    assert _md_cells(md, "LayerCAM") == ["80.50 ± 0.71‡", "—"]
    assert "LayerCAM, RAF-DB, w/ AU: failed" in md
    assert ("Failed results (3: 1 from 1 failed trial, 2 failed extractors in finished trials): "
            "apvit on rafdb (w/ AU, seed 0): RuntimeError: boom; "
            "layercam on rafdb (w/ AU, seed 0; its trial finished): ValueError: hook never fired; "
            "layercam on rafdb (w/ AU, seed 1; its trial finished): ValueError: hook never fired.") in md


def test_failed_trial_is_one_entry_naming_all_its_methods():
    failed = pl.DataFrame([{"run": "r", "trial_id": "t1", "status": "failed", "trial_status": "failed",
                            "dataset": "rafdb", "au": True, "seed": 0, "method": m, "error": "OOM"}
                           for m in ("cam", "gradcam", "layercam")])
    text = to_markdown(build_table(failed))
    assert text == ("No finished results to tabulate. Failed results (3, from 1 failed trial): "
                    "cam, gradcam, layercam on rafdb (w/ AU, seed 0): OOM.\n")


def test_caption_names_each_dataset_and_its_class_count():
    two = pl.concat([_frame(), _frame().with_columns(pl.lit("affectnet").alias("dataset"), pl.lit(8, pl.Int64).alias("num_classes"))])
    table = build_table(two, "layer5", ORDER, metrics=["cl"])
    assert table.caption == "RAF-DB (7 classes), AffectNet (8 classes)"      # the paper's order by default
    assert "on RAF-DB (7 classes), AffectNet (8 classes): without" in to_latex(table)
    unknown = build_table(_frame().drop("num_classes"), "layer5", ORDER)
    assert to_markdown(unknown).startswith("RAF-DB\n\n")


def test_duplicate_in_one_run_names_the_run_once_and_both_settings():
    a = _frame().with_columns(pl.lit("aaaaaaaaaaaa").alias("setting"))
    b = _frame().with_columns(pl.lit("bbbbbbbbbbbb").alias("setting"))
    with pytest.raises(UserError, match=r"\(run r, settings aaaaaaaaaaaa and bbbbbbbbbbbb\): .*--config"):
        build_table(pl.concat([a, b]))


def test_extended_latex_structure():
    tex = to_latex(_ext_table())
    assert tex.isascii() and tex.count("{") == tex.count("}") and tex.count("$") % 2 == 0
    assert "--no-share" not in tex and r"-{}-no-share" in tex        # an option name, not an en dash
    ncols = int(re.search(r"\\multicolumn\{(\d+)\}\{l\}", tex).group(1))
    body = tex.split(r"\midrule", 1)[1].split(r"\bottomrule")[0]
    rows = [line for line in body.splitlines() if line.endswith(r"\\") and r"\multicolumn" not in line]
    assert len(rows) == 4 and all(line.count("&") == ncols - 1 for line in rows)
