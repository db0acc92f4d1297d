import polars as pl

from bench.table import build_table, to_csv, to_latex, to_markdown


def _frame():
    base = {"status": "ok", "dataset": "synthetic", "error": None}
    rows = [
        {**base, "method": "cam", "title": "CAM", "family": "cnn", "au": False, "seed": 0,
         "cl": 80.0, "cam_cos": 0.5, "att_cos_layer5": 0.4},
        {**base, "method": "cam", "title": "CAM", "family": "cnn", "au": False, "seed": 1,
         "cl": 82.0, "cam_cos": 0.6, "att_cos_layer5": 0.5},
        {**base, "method": "cam", "title": "CAM", "family": "cnn", "au": True, "seed": 0,
         "cl": 84.0, "cam_cos": 0.7, "att_cos_layer5": 0.8},
        {**base, "method": "cam", "title": "CAM", "family": "cnn", "au": True, "seed": 1,
         "cl": 86.0, "cam_cos": 0.7, "att_cos_layer5": 0.9},
        {**base, "method": "apvit", "title": "APViT", "family": "transformer", "au": False, "seed": 0,
         "cl": 70.125, "cam_cos": None, "att_cos_layer5": 0.25},
        {**base, "method": "apvit", "title": "APViT", "family": "transformer", "au": True, "seed": 0,
         "status": "failed", "error": "RuntimeError: boom"},
    ]
    return pl.DataFrame(rows, infer_schema_length=None)


GOLDEN_MD = """\
| Method | CL w/o AU | CL w/ AU | CAM-COS w/o AU | CAM-COS w/ AU | ATT-COS (layer5) w/o AU | ATT-COS (layer5) w/ AU |
|:---|---:|---:|---:|---:|---:|---:|
| **CNN-based** | | | | | | |
| CAM | 81.00 ± 1.41 | 85.00 ± 1.41 | 0.550 ± 0.071 | 0.700 ± 0.000 | 0.450 ± 0.071 | 0.850 ± 0.071 |
| **Transformer-based** | | | | | | |
| APViT | 70.12 | — | — | — | 0.250 | — |

Cells with several seeds show mean ± std.
Failed trials: apvit on synthetic (w/ AU, seed 0).
"""

GOLDEN_TEX = r"""\begin{tabular}{l rrrrrr}
\toprule
 & \multicolumn{6}{c}{synthetic} \\
\cmidrule(lr){2-7}
 & \multicolumn{2}{c}{CL} & \multicolumn{2}{c}{CAM-COS} & \multicolumn{2}{c}{ATT-COS (layer5)} \\
Method & w/o AU & w/ AU & w/o AU & w/ AU & w/o AU & w/ AU \\
\midrule
\multicolumn{7}{l}{\textit{CNN-based}} \\
CAM & 81.00 $\pm$ 1.41 & 85.00 $\pm$ 1.41 & 0.550 $\pm$ 0.071 & 0.700 $\pm$ 0.000 & 0.450 $\pm$ 0.071 & 0.850 $\pm$ 0.071 \\
\midrule
\multicolumn{7}{l}{\textit{Transformer-based}} \\
APViT & 70.12 & -- & -- & -- & 0.250 & -- \\
\bottomrule
\end{tabular}
% Cells with several seeds show mean $\pm$ std.
% Failed trials: apvit on synthetic (w/ AU, seed 0).
"""


def test_markdown_golden():
    assert to_markdown(build_table(_frame(), "layer5", ["cam", "apvit"])) == GOLDEN_MD


def test_latex_golden_and_balanced():
    tex = to_latex(build_table(_frame(), "layer5", ["cam", "apvit"]))
    assert tex == GOLDEN_TEX
    assert tex.count("{") == tex.count("}")
    body = [line for line in tex.splitlines() if line.endswith(r"\\") and "multicolumn{7}" not in line]
    assert all(line.count("&") == 6 for line in body[2:])


def test_csv_has_the_same_numbers():
    csv = to_csv(build_table(_frame(), "layer5", ["cam", "apvit"])).splitlines()
    assert csv[0] == "method,title,family,dataset,metric,wo_au,w_au,n_seeds"
    assert "cam,CAM,cnn,synthetic,CL,81.00 ± 1.41,85.00 ± 1.41,2" in csv
    assert "apvit,APViT,transformer,synthetic,ATT-COS (layer5),0.250,—,1" in csv


def test_empty_run_says_so_in_one_line():
    assert to_markdown(build_table(pl.DataFrame())) == "No finished trials to tabulate."
