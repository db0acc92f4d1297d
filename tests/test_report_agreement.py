"""``bench report``'s findings: Kendall's τ between metrics' method rankings (against scipy, with
each metric's direction), and the faces one AU mode gets right that the other gets wrong."""
from __future__ import annotations

import polars as pl
import pytest

from bench.reporting.agreement import agreement_section, face_flips, flips_section, metric_agreement
from bench.reporting.table import build_table

METHODS = [("cam", "CAM"), ("gradcam", "GradCAM"), ("acol", "ACoL"), ("prm", "PRM")]


def _frame() -> pl.DataFrame:
    rows = []
    # CL: cam > gradcam > acol > prm. CAM-COS: the same order but prm and acol swapped.
    # Deletion (lower is better) rises with CL: oriented, it ranks the methods in reverse.
    for i, (method, title) in enumerate(METHODS):
        for au in (False, True):
            rows.append({"status": "ok", "dataset": "rafdb", "error": None, "run": "r", "method": method,
                         "title": title, "family": "cnn", "au": au, "seed": 0, "eval_id": f"{method}-{int(au)}",
                         "cl": 80.0 - 5 * i, "cam_cos": [0.6, 0.5, 0.3, 0.4][i], "att_cos_layer5": 0.4,
                         "deletion_auc": 0.5 - 0.1 * i})
    return pl.DataFrame(rows, infer_schema_length=None)


def test_kendall_tau_per_metric_pair_follows_each_metrics_direction():
    from scipy.stats import kendalltau

    table = build_table(_frame(), "layer5", [m for m, _ in METHODS], metrics=["cl", "cam-cos", "deletion"])
    found = {(a.first, a.second, a.au): a for a in metric_agreement(table)}
    cl_cos = found[("CL", "CAM-COS", False)]
    assert cl_cos.n == 4 and cl_cos.tau == pytest.approx(kendalltau([80, 75, 70, 65], [0.6, 0.5, 0.3, 0.4]).statistic)
    assert cl_cos.tau == pytest.approx(4 / 6)                 # 5 concordant pairs, 1 discordant, of 6
    # The best-CL method has the worst (highest) deletion AUC, and so on down: oriented, the orders are reversed.
    assert found[("CL", "Deletion AUC", True)].tau == pytest.approx(-1.0)
    # ATT-COS is the same for every method: no ranking, so no τ.
    flat = build_table(_frame(), "layer5", metrics=["cl", "att-cos"])
    assert all(a.tau is None for a in metric_agreement(flat))
    text = "\n".join(agreement_section(table))
    assert "| RAF-DB | w/o AU | CL vs CAM-COS | +0.67 |" in text


def test_agreement_needs_three_methods():
    two = _frame().filter(pl.col("method").is_in(["cam", "gradcam"]))
    table = build_table(two, "layer5", metrics=["cl", "cam-cos"])
    assert all(a.tau is None and a.n == 2 for a in metric_agreement(table))
    assert "Not enough methods" in "\n".join(agreement_section(table))


def _faces(right: list[int]) -> pl.DataFrame:
    labels = [1, 2, 3, 4, 5, 6, 1, 2]
    return pl.DataFrame({"face": list(range(8)), "label": labels,
                         "pred": [y if i in right else 0 for i, y in enumerate(labels)]})


def test_faces_that_flip_between_au_modes():
    frames = {"cam-0": _faces([0, 1, 2, 3]), "cam-1": _faces([2, 3, 4, 5, 6, 7]),
              "gradcam-0": _faces([0]), "gradcam-1": _faces([0])}
    table = build_table(_frame(), "layer5", metrics=["cl"])
    found, lacking = face_flips(table, lambda row: frames.get(row["eval_id"]))
    by_method = {f.method: f for f in found}
    assert by_method["cam"].only_without == [0, 1] and by_method["cam"].only_with == [4, 5, 6, 7]
    assert by_method["gradcam"].only_without == [] and by_method["gradcam"].only_with == []
    assert lacking == ["ACoL, RAF-DB", "PRM, RAF-DB"]
    text = "\n".join(flips_section(table, lambda row: frames.get(row["eval_id"])))
    assert "| CAM | RAF-DB | 0 | 8 | 2: 0, 1 | 4: 4, 5, 6, 7 |" in text
    assert "No per-face results for ACoL, RAF-DB; PRM, RAF-DB" in text
