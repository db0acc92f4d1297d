"""``bench table``'s significance from one seed (faces tests), the sanity columns' direction, the
dataset order and the paper comparison's precision and setting note; frames built by hand."""
from __future__ import annotations

import polars as pl
import pytest

from bench.errors import UserError
from bench.reporting.reference import load_reference
from bench.reporting.render import to_csv, to_markdown
from bench.reporting.table import build_table, extended_present

N_FACES = 42          # 6 per class, classes 0..6
LABELS = [i % 7 for i in range(N_FACES)]


def _faces(right: set[int], cos_shift: float = 0.0) -> pl.DataFrame:
    preds = [y if i in right else (y + 1) % 7 for i, y in enumerate(LABELS)]
    cos = [float("nan") if y == 0 else 0.3 + 0.01 * (i % 5) + cos_shift for i, y in enumerate(LABELS)]
    return pl.DataFrame({"face": list(range(N_FACES)), "label": LABELS, "pred": preds, "cam_cos": cos,
                         "att_cos_layer5": cos})


#: CAM w/ AU gets 10 more faces right and none fewer (McNemar p = 2 / 2^10), and every valid face's
#: CAM-COS rises by 0.1 (a constant difference: the bootstrap interval is [0.1, 0.1]).
FACES = {"cam-wo": _faces(set(range(20))), "cam-w": _faces(set(range(30)), 0.1),
         "gradcam-wo": _faces(set(range(25)))}


def _row(method, title, au, seed=0, dataset="rafdb", eval_id=None, **extra):
    return {"status": "ok", "dataset": dataset, "error": None, "run": "r", "num_classes": 7, "method": method,
            "title": title, "family": "cnn", "au": au, "seed": seed, "cl": 50.0 + 10 * au, "cam_cos": 0.3 + 0.1 * au,
            "att_cos_layer5": 0.3 + 0.1 * au, "alignment_layers": "layer5", "eval_id": eval_id, **extra}


def _frame(**extra) -> pl.DataFrame:
    return pl.DataFrame([_row("cam", "CAM", False, eval_id="cam-wo", **extra), _row("cam", "CAM", True, eval_id="cam-w", **extra),
                         _row("gradcam", "GradCAM", False, eval_id="gradcam-wo", **extra),
                         _row("gradcam", "GradCAM", True, eval_id="gradcam-w", **extra)], infer_schema_length=None)


def _source(row: dict):
    return FACES.get(row.get("eval_id"))


def test_one_seed_defaults_to_the_faces_test():
    table = build_table(_frame(), "layer5", ["cam", "gradcam"], test="auto", faces=_source)
    assert table.test == "faces"
    md = to_markdown(table)
    cam = next(line for line in md.splitlines() if line.startswith("| CAM |"))
    cells = [c.strip() for c in cam.strip("|").split("|")[1:]]
    assert cells[1].endswith("†") and cells[3].endswith("†") and cells[5].endswith("†")    # CL, CAM-COS, ATT-COS
    cl = table.cells[("cam", "rafdb", "cl", True)].test
    assert cl.test == "mcnemar" and cl.n_pairs == N_FACES and cl.p_value == pytest.approx(2 / 2 ** 10)
    cos = table.cells[("cam", "rafdb", "cam_cos", True)].test
    assert cos.test == "bootstrap" and (cos.ci_low, cos.ci_high) == (pytest.approx(0.1), pytest.approx(0.1))
    assert f"on the same test faces (seed 0, n = {N_FACES} faces): McNemar's exact test for CL" in md
    assert "paired bootstrap over faces stratified by class" in md
    # GradCAM's w/ AU evaluation has no per-face results: no mark, and the note says so.
    grad = next(line for line in md.splitlines() if line.startswith("| GradCAM |"))
    assert "†" not in grad
    assert "No faces test (no †) for GradCAM, RAF-DB: their per-face results are missing" in md


def test_extended_metrics_are_tested_with_their_own_average():
    # Deletion AUC is averaged over all faces (Neutral included): each face's value drops by 0.05 w/ AU.
    # The evaluation stores extended per-face scores as ext_<key>.
    deletion = {"cam-wo": FACES["cam-wo"].with_columns(pl.lit(0.5).alias("ext_deletion_auc")),
                "cam-w": FACES["cam-w"].with_columns(pl.lit(0.45).alias("ext_deletion_auc"))}
    frame = _frame(deletion_auc=0.5).filter(pl.col("method") == "cam")
    table = build_table(frame, "layer5", metrics=["deletion"], test="faces", faces=lambda r: deletion.get(r["eval_id"]))
    test = table.cells[("cam", "rafdb", "deletion_auc", True)].test
    assert test.test == "bootstrap" and test.diff == pytest.approx(-0.05) and test.n_pairs == N_FACES


def test_faces_test_in_csv_carries_the_difference_and_interval():
    text = to_csv(build_table(_frame(), "layer5", ["cam", "gradcam"], test="auto", faces=_source))
    head, *lines = text.splitlines()
    assert head.endswith("test_seed,diff,diff_ci_low,diff_ci_high")
    cam_cos = next(line for line in lines if line.startswith("cam,CAM,cnn,rafdb,CAM-COS"))
    assert ",paired bootstrap,42," in cam_cos and cam_cos.endswith(",0,0.1,0.1,0.1")


def test_without_a_face_source_nothing_is_marked_and_the_note_says_why():
    md = to_markdown(build_table(_frame(), "layer5", ["cam", "gradcam"], test="auto"))
    assert "†" not in md.split("\n\n")[1]
    assert "No faces test (no †) for CAM, RAF-DB; GradCAM, RAF-DB" in md


def test_seeds_test_is_asked_for_or_chosen_with_several_seeds():
    one_seed = build_table(_frame(), "layer5", ["cam", "gradcam"], test="seeds", faces=_source)
    assert one_seed.test == "t" and not any(c.significant for c in one_seed.cells.values())
    three = pl.concat([_frame().with_columns(pl.lit(s).alias("seed"), (pl.col("cl") + s).alias("cl")) for s in range(3)])
    assert build_table(three, "layer5", ["cam", "gradcam"], test="auto", faces=_source).test == "t"
    forced = build_table(three, "layer5", ["cam", "gradcam"], test="faces", faces=_source)
    assert forced.test == "faces" and forced.cells[("cam", "rafdb", "cl", True)].test.seed == 0


def test_bad_test_is_a_user_error():
    with pytest.raises(UserError, match=r"bad --test 'foo': expected auto, faces, seeds, t, wilcoxon"):
        build_table(_frame(), "layer5", test="foo")


def test_sanity_best_is_closest_to_zero_for_old_and_new_scores():
    frame = pl.DataFrame([
        {**_row("cam", "CAM", False), "sanity_similarity": -0.50, "sanity_pass": True},
        {**_row("gradcam", "GradCAM", False), "sanity_similarity": 0.10, "sanity_pass": True}], infer_schema_length=None)
    table = build_table(frame, "layer5", ["cam", "gradcam"], metrics=["sanity"])
    assert table.metrics[0].column == "sanity_similarity"          # older records read as they are
    assert table.cells[("gradcam", "rafdb", "sanity_similarity", False)].best
    assert not table.cells[("cam", "rafdb", "sanity_similarity", False)].best    # never the most negative
    assert "closest to 0 for Sanity similarity" in to_markdown(table)
    new = pl.DataFrame([
        {**_row("cam", "CAM", False), "sanity_rho_final": 0.30, "sanity_auc": 0.05},
        {**_row("gradcam", "GradCAM", False), "sanity_rho_final": 0.05, "sanity_auc": 0.40}], infer_schema_length=None)
    assert extended_present(new) == ["sanity", "sanity-auc"] and extended_present(frame) == ["sanity"]
    table = build_table(new, "layer5", ["cam", "gradcam"], metrics=["sanity", "sanity-auc"])
    assert [m.header for m in table.metrics] == ["Sanity |ρ| (random model) ↓", "Sanity |ρ| AUC ↓"]
    assert table.cells[("gradcam", "rafdb", "sanity_rho_final", False)].best
    assert table.cells[("cam", "rafdb", "sanity_auc", False)].best


def test_datasets_in_the_order_asked_or_the_papers():
    two = pl.concat([_frame(), _frame().with_columns(pl.lit("affectnet").alias("dataset"))])
    assert build_table(two, "layer5").datasets == ["rafdb", "affectnet"]
    assert build_table(two, "layer5", datasets=["affectnet", "rafdb"]).datasets == ["affectnet", "rafdb"]
    md = to_markdown(build_table(two, "layer5", metrics=["cl"], datasets=["affectnet", "rafdb"]))
    assert md.splitlines()[2].startswith("| Method | AffectNet CL ↑ w/o AU | AffectNet CL ↑ w/ AU | RAF-DB CL")


def test_paper_values_keep_their_published_precision(tmp_path):
    ref = tmp_path / "mine.csv"
    ref.write_text("method,dataset,metric,au,value\ncam,rafdb,cl,false,88.2\ncam,rafdb,cam_cos,true,0.5\n")
    cam_only = _frame().filter(pl.col("method") == "cam")
    md = to_markdown(build_table(cam_only, "layer5", metrics=["cl", "cam-cos"], reference=load_reference(str(ref))))
    cam = next(line for line in md.splitlines() if line.startswith("| CAM |"))
    assert [c.strip() for c in cam.strip("|").split("|")[1:]] == ["50.00", "60.00", "88.2", "—",
                                                                  "0.300", "0.400", "—", "0.5"]
    paper = load_reference("paper")
    assert paper.decimals("cam", "CAM", "affectnet", "cam_cos", False) == 2          # 0.56 as printed
    md = to_markdown(build_table(cam_only, "layer5", metrics=["cam-cos"], reference=paper))
    assert "| CAM | 0.300 | 0.400 | 0.55 | 0.70 |" in md


def test_paper_comparison_names_both_settings():
    frame = _frame(profile="smoke", image_size=32, epochs=2)
    md = to_markdown(build_table(frame, "layer5", metrics=["cl"], reference=load_reference("paper")))
    assert ("Paper columns are at the paper's setting (profile paper, image size 224, epochs 20), printed at the "
            "paper's precision; this run: profile smoke, image size 32, epochs 2; the settings differ: the paper's "
            "numbers are a reference, not a replication of this run.") in md
    older = to_markdown(build_table(_frame(profile="smoke"), "layer5", metrics=["cl"], reference=load_reference("paper")))
    assert "this run: profile smoke (image size and epochs not recorded); the settings differ" in older
    same = to_markdown(build_table(_frame(profile="paper", image_size=224, epochs=20), "layer5", metrics=["cl"],
                                   reference=load_reference("paper")))
    assert "this run: profile paper, image size 224, epochs 20; same setting." in same


# --------------------------------------------------------------------------------------------
# Through the CLI, on evaluation records with their per-face files


def _cli(monkeypatch, capsys, *args):
    import sys

    from bench.cli.main import main

    monkeypatch.setattr(sys, "argv", ["bench", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def test_faces_test_and_flips_from_stored_evaluations(monkeypatch, capsys, tmp_path):
    from records import write_evaluation

    run = tmp_path / "results" / "smoke"
    for au, name in ((False, "cam-wo"), (True, "cam-w")):
        faces = FACES[name]
        row = {"method": "cam", "title": "CAM", "family": "cnn", "alignment_layers": "layer5", "status": "ok",
               "num_classes": 7, "cl": 100.0 * float((faces["pred"] == faces["label"]).mean()),
               "cam_cos": 0.3 + 0.1 * au, "att_cos_layer5": 0.3 + 0.1 * au}
        write_evaluation(run, au=au, rows=[row], faces=faces.to_dict(as_series=False))
    code, out, err = _cli(monkeypatch, capsys, "table", "--results-dir", str(tmp_path / "results"), "--metric", "cl")
    assert code == 0, err
    assert "| CAM | 47.62 | 71.43† |" in out
    assert f"(seed 0, n = {N_FACES} faces): McNemar's exact test for CL" in out
    code, out, err = _cli(monkeypatch, capsys, "table", "--results-dir", str(tmp_path / "results"), "--metric", "cl",
                          "--test", "seeds")
    assert code == 0 and "†" not in out
    code, _, err = _cli(monkeypatch, capsys, "report", "--results-dir", str(tmp_path / "results"), "--no-figures")
    assert code == 0, err
    report = (run / "report.md").read_text()
    assert "| CAM | Synthetic | 0 | 42 | 0: — | 10: 20, 21, 22, 23, 24, … |" in report
