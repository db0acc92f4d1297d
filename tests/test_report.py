"""``bench table`` / ``figures`` / ``report`` through the real CLI entry point, on hand-written runs."""
import sys

import pytest

from bench.cli.main import main
from bench.store.records import RunStore

from test_figures import _fake_trial


def bench(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def _record(store: RunStore, au: bool, seed: int, cl: float) -> None:
    from test_report_settings import write_record

    row = {"method": "cam", "title": "CAM", "family": "cnn", "alignment_layers": "layer5", "selection_split": "val",
           "config_hash": "abc123", "data_fingerprint": "fp", "best_epoch": 1, "cl": cl, "cam_cos": 0.5,
           "att_cos_layer5": 0.4 + 0.1 * au}
    write_record(store.run_dir, f"cam-{'w' if au else 'wo'}-{seed}", setting="5e77146a5e77", profile="smoke", au=au,
                 seed=seed, rows=[row], timings={"train_seconds": 10.0, "eval_seconds": 1.0, "total_seconds": 12.0},
                 provenance={"git_revision": "deadbeef", "versions": {"torch": "9.9"}, "python": "3.x",
                             "hardware": {"machine": "x86_64", "cpu_threads": 2, "cuda": None}, "device": "cpu"})


@pytest.fixture
def runs(tmp_path):
    """Two runs: seed 0 in one, seed 1 in the other (merged with --run a,b)."""
    for name, seed in (("a", 0), ("b", 1)):
        store = RunStore(tmp_path / name)
        _record(store, False, seed, 80.0 + seed)
        _record(store, True, seed, 84.0 + 2 * seed)
    return tmp_path


def test_table_merges_runs(monkeypatch, capsys, runs):
    code, out, err = bench(monkeypatch, capsys, "table", "--results-dir", str(runs), "--run", "a,b")
    assert code == 0, err
    assert "| CAM | 80.50 ± 0.71 | 85.00 ± 1.41 |" in out and "n = 2 per cell" in out
    code, one, _ = bench(monkeypatch, capsys, "table", "--results-dir", str(runs), "--run", "a", "--metric", "cl")
    assert code == 0 and "| CAM | 80.00 | 84.00 |" in one and "CAM-COS" not in one


def test_table_formats_to_files(monkeypatch, capsys, runs, tmp_path):
    for fmt, suffix in (("latex", "tex"), ("csv", "csv"), ("markdown", "md")):
        path = tmp_path / f"t.{suffix}"
        code, _, err = bench(monkeypatch, capsys, "table", "--results-dir", str(runs), "--run", "a", "--run", "b",
                             "--format", fmt, "--reference", "paper", "--reference-mode", "delta", "-o", str(path))
        assert code == 0, err
        assert path.read_text().strip()
    assert r"\begin{tabular}" in (tmp_path / "t.tex").read_text()
    assert "Δ = ours − paper" in (tmp_path / "t.md").read_text()


@pytest.mark.parametrize("args,needle", [
    (("--run", "nope"), "no run 'nope'"),
    (("--format", "pdf"), "bad --format"),
    (("--methods", "gradcam"), "--methods: 'gradcam' not in run"),
    (("--datasets", "rafdb"), "--datasets: 'rafdb' not in run"),
    (("--metric", "bleu"), "unknown --metric"),
    (("--spread", "iqr"), "bad --spread"),
    (("--test", "anova"), "bad --test"),
    (("--reference", "nofile.csv"), "bad --reference"),
    (("--layer", "layer9"), "bad --layer"),
    (("--config", "zzz"), "--config 'zzz' matches no trial"),
])
def test_bad_input_is_one_line_exit_2(monkeypatch, capsys, runs, args, needle):
    code, _, err = bench(monkeypatch, capsys, "table", "--results-dir", str(runs), "--run", "a", *args)
    assert code == 2
    assert needle in err and err.strip().count("\n") == 0, err


def test_the_same_cells_in_two_runs_show_side_by_side(monkeypatch, capsys, runs):
    """``--run imported,mine``: each run's model gets a row of its own, named with its run."""
    store = RunStore(runs / "c")
    _record(store, False, 0, 70.0)
    code, out, err = bench(monkeypatch, capsys, "table", "--results-dir", str(runs), "--run", "a,c")
    assert code == 0, err
    assert "| CAM [a] |" in out and "| CAM [c] |" in out and "70.00" in out


def test_empty_run_says_so(monkeypatch, capsys, tmp_path):
    (tmp_path / "empty" / "trials").mkdir(parents=True)
    code, out, _ = bench(monkeypatch, capsys, "table", "--results-dir", str(tmp_path), "--run", "empty")
    assert code == 0 and out == "No finished trials to tabulate.\n"


def test_report_bundles_table_figures_provenance_and_times(monkeypatch, capsys, runs):
    store = RunStore(runs / "maps")
    for au in (False, True):
        _fake_trial(store, au, 0, 0.5)
    code, out, err = bench(monkeypatch, capsys, "figures", "--results-dir", str(runs), "--run", "maps")
    assert code == 0, err
    assert len(out.splitlines()) == 3 and all(line.endswith(".png") for line in out.splitlines())
    code, _, err = bench(monkeypatch, capsys, "report", "--results-dir", str(runs), "--run", "a,b")
    assert code == 0, err
    text = (runs / "a" / "report.md").read_text()
    for section in ("# Report: a, b", "## Results", "## Figures", "## Provenance", "## Wall times"):
        assert section in text
    assert "| CAM | 80.50 ± 0.71 |" in text
    assert "No figures: no saved maps" in text                     # runs a, b were written without maps
    assert "deadbeef" in text and "torch 9.9" in text and "`abc123`" in text and "| val |" in text
    assert "| **all 4 trials** | | | | | | 40.0 | 4.0 | 48.0 | |" in text
    code, _, err = bench(monkeypatch, capsys, "report", "--results-dir", str(runs), "--run", "maps")
    text = (runs / "maps" / "report.md").read_text()
    assert code == 0, err
    assert "![averages-synthetic-cam](figures/averages-synthetic-cam.png)" in text
    assert (runs / "maps" / "figures" / "gallery-synthetic-cam.png").is_file()


# --------------------------------------------------------------------------------------------
# Run folders with several settings; the data section; failed extractors; extended metrics

from test_figures import _fake_arrays, write_maps  # noqa: E402
from test_report_settings import write_record  # noqa: E402


def _row(method, title, cl, *, setting, status="ok", error=None, **extra):
    return {"method": method, "title": title, "family": "cnn", "status": status, "error": error,
            "alignment_layers": "layer5", "selection_split": "val", "setting": setting, "config_hash": "c0ffee",
            "cl": cl, "cam_cos": 0.5, "att_cos_layer5": 0.6, "confusion": [[1] * 7] * 7, **extra}


@pytest.fixture
def mixed(tmp_path):
    """Folder 'paper': an older 'aligned' setting (CL 80/84) and a newer 'original' one (CL 60/64)."""
    run = tmp_path / "paper"
    for setting, overrides, base, mtime in (("a1a1a1a1a1a1", [], 80.0, 1000.0),
                                             ("b2b2b2b2b2b2", [("data.rafdb_images", "original")], 60.0, 2000.0)):
        for au in (False, True):
            write_record(run, f"{setting}-{au}", setting=setting, overrides=overrides, au=au, mtime=mtime + au,
                         rows=[_row("cam", "CAM", base + 4 * au, setting=setting)])
    return tmp_path


def test_a_folder_with_two_settings_shows_the_newest_and_says_so(monkeypatch, capsys, mixed):
    code, out, err = bench(monkeypatch, capsys, "table", "--results-dir", str(mixed), "--run", "paper", "--metric", "cl")
    assert code == 0, err
    assert out.startswith("Synthetic (7 classes)\n") and "| CAM | 60.00 | 64.00 |" in out
    note = [line for line in err.splitlines() if "several settings" in line]
    assert len(note) == 1 and note[0].count("run paper") == 1
    assert "b2b2b2b2b2b2 (demo, data.rafdb_images=original; 2 trials)" in note[0] and "a1a1a1a1a1a1 (demo; 2 trials)" in note[0]
    code, out, err = bench(monkeypatch, capsys, "table", "--results-dir", str(mixed), "--run", "paper",
                           "--metric", "cl", "--config", "a1a1")
    assert code == 0 and "| CAM | 80.00 | 84.00 |" in out and "several settings" not in err
    code, out, err = bench(monkeypatch, capsys, "table", "--results-dir", str(mixed), "--run", "paper",
                           "--format", "latex", "--config", "c0ff")     # a config-hash prefix spans both settings
    assert code == 2 and "two results for cam on synthetic w/o AU seed 0 (run paper, settings" in err
    code, _, err = bench(monkeypatch, capsys, "table", "--results-dir", str(mixed), "--run", "paper", "--config", "zz")
    assert code == 2 and err.strip().count("\n") == 0
    assert "--config 'zz' matches no trial in run paper (settings: b2b2b2b2b2b2" in err
    for command in ("report", "figures"):
        code, _, err = bench(monkeypatch, capsys, command, "--results-dir", str(mixed), "--run", "paper", "--config", "zz")
        assert code == 2 and err.strip().count("\n") == 0 and "--config 'zz' matches no trial in run paper" in err
    code, _, err = bench(monkeypatch, capsys, "report", "--results-dir", str(mixed), "--run", "paper", "--no-figures")
    assert code == 0, err
    text = (mixed / "paper" / "report.md").read_text()
    assert "Settings shown: run paper: b2b2b2b2b2b2 (demo, data.rafdb_images=original; 2 trials)." in text
    assert "| CAM | 60.00 | 64.00 |" in text and "2 trials (2 finished, 0 failed)" in text


DATA = {"dataset": "synthetic", "data_root": None, "landmark_source": "dataset", "landmark_digest": "ld123",
        "counts": {"train": 100, "val": 20, "test": 50}, "without_landmarks": {"train": 3, "val": 0, "test": 1},
        "dropped_labels": {"train": {"7": 12, "8": 3}, "test": {"7": 1}},
        "skipped": {"train": 7, "test": 0}, "skipped_paths": {"train": [f"a{i}.jpg" for i in range(7)], "test": []},
        "placement": {"train": "device", "val": "device", "test": "memory"}, "au_coverage": 0.95}


@pytest.fixture
def extended_run(tmp_path):
    """Three trials of CAM + GradCAM (shared): w/o AU ok; w/ AU ok but GradCAM's extractor failed;
    seed 1 w/o AU failed as a whole. Extended metrics and curves on the finished trials."""
    run = tmp_path / "ext"
    store = RunStore(run)
    curves = ([1.0, 0.4, 0.0], [0.1, 0.7, 1.0])
    ext = {"deletion_auc": 0.3, "insertion_auc": 0.6, "sanity_similarity": 0.2, "sanity_pass": True}
    for au in (False, True):
        trial = f"ok-{au}"
        grad = (_row("gradcam", "GradCAM", None, setting="s", status="failed", error="ValueError: no grad",
                     shared_model="cam") if au else _row("gradcam", "GradCAM", 70.0, setting="s", shared_model="cam", **ext))
        write_record(run, trial, setting="s" * 12, au=au, evaluate=("cam", "gradcam"), data=DATA,
                     rows=[_row("cam", "CAM", 70.0 + 5 * au, setting="s", **ext), grad])
        write_maps(run, trial, _fake_arrays(0.5, curves))
    write_record(run, "broken", setting="s" * 12, seed=1, status="failed", error="RuntimeError: OOM",
                 evaluate=("cam", "gradcam"))
    return tmp_path


def test_report_counts_data_section_extended_table_and_curves(monkeypatch, capsys, extended_run):
    code, _, err = bench(monkeypatch, capsys, "report", "--results-dir", str(extended_run), "--run", "ext")
    assert code == 0, err
    text = (extended_run / "ext" / "report.md").read_text()
    # Trials and results counted one way, and the table's footnote agrees.
    assert ("3 trials (2 finished, 1 failed); 6 results, one per evaluated method (3 ok, 3 failed: "
            "2 in 1 failed trial, 1 failed extractor in finished trials)") in text
    assert "Failed results (3: 2 from 1 failed trial, 1 failed extractor in a finished trial): " in text
    assert "gradcam on synthetic (w/ AU, seed 0; its trial finished): ValueError: no grad" in text
    assert "cam, gradcam on synthetic (w/o AU, seed 1): RuntimeError: OOM" in text
    # The data the numbers were computed on.
    assert "| train | 100 | 3 | 7 | device |" in text and "| val | 20 | 0 | — | device |" in text
    assert "| test | 50 | 1 | 0 | memory |" in text
    assert "- Dropped labels (dataset codes): train: code 7: 12, code 8: 3; test: code 7: 1" in text
    assert "- Skipped images, train: `a0.jpg`, `a1.jpg`, `a2.jpg`, `a3.jpg`, `a4.jpg`, and 2 more" in text
    assert "- AU coverage: 0.950" in text and "- Landmarks: dataset (digest `ld123`)" in text
    assert "1 of 3 trials has no data section" in text
    # Extended metrics: their own table, shared CL marked; curves embedded.
    assert "## Faithfulness and sanity (`--eval extended`)" in text and "Deletion AUC ↓ w/o AU" in text
    assert "| GradCAM | 70.00‡ | — |" in text
    assert "![curves-synthetic](figures/curves-synthetic.png)" in text
    assert (extended_run / "ext" / "figures" / "curves-synthetic.png").is_file()


def test_table_extended_metrics_from_the_cli(monkeypatch, capsys, extended_run):
    code, out, err = bench(monkeypatch, capsys, "table", "--results-dir", str(extended_run), "--run", "ext",
                           "--metric", "cl,deletion,sanity")
    assert code == 0, err
    # Ties are bold (GradCAM's own deletion and sanity values); its CL is CAM's model's: marked, not bold.
    assert "| CAM | 70.00 | 75.00 | **0.300** | 0.300 | **0.200** | 0.200 |" in out
    assert "| GradCAM | 70.00‡ | — | **0.300** | — | **0.200** | — |" in out
    assert "‡ marks CL cells that repeat the numbers of another method's trained model (sharing on): GradCAM uses CAM's." in out
    code, out, err = bench(monkeypatch, capsys, "table", "--results-dir", str(extended_run), "--run", "ext",
                           "--metric", "cl,deletion", "--format", "latex")
    assert code == 0 and r"Deletion AUC $\downarrow$" in out and r"70.00$^{\ddagger}$" in out


def test_data_section_shows_coverage_per_au_mode_and_differing_data_as_variants():
    from bench.reporting.report import data_section

    def rec(au, seed, **data):
        return {"spec": {"dataset": "rafdb", "au": au, "seed": seed}, "data": {**DATA, **data}}

    same = data_section([rec(False, 0, au_coverage=None), rec(True, 0, au_coverage=0.9)])
    assert "- AU coverage: w/o AU: —, w/ AU: 0.900" in same and "Variant" not in "\n".join(same)
    other_counts = {**DATA["counts"], "test": 49}
    lines = "\n".join(data_section([rec(True, 0), rec(True, 1, counts=other_counts), rec(False, 1, counts=other_counts)]))
    assert "**Variant 1 of 2** (1 trial: w/ AU, seed 0):" in lines
    assert "**Variant 2 of 2** (2 trials: w/o AU and w/ AU, seed 1):" in lines
    assert "| test | 50 | 1 | 0 | memory |" in lines and "| test | 49 | 1 | 0 | memory |" in lines
    assert data_section([{"spec": {"dataset": "rafdb", "au": True, "seed": 0}, "data": {}}])[4].startswith(
        "1 of 1 trial has no data section")


# --------------------------------------------------------------------------------------------
# Issue 20: the provenance names each method's plugin distribution and version

def test_report_provenance_lists_each_plugins_distribution_and_version(monkeypatch, capsys, tmp_path):
    run = tmp_path / "plugins"
    for seed, extra_version in ((0, "0.3.0"), (1, "0.3.0"), (2, "0.4.0")):
        write_record(run, f"t{seed}", setting="a1a1a1a1a1a1", seed=seed, evaluate=("cam", "xgradcam"), mtime=1000.0 + seed,
                     rows=[_row("cam", "CAM", 80.0, setting="a1a1a1a1a1a1", plugin="au-cam-bench==0.1.0"),
                           _row("xgradcam", "XGrad-CAM", 79.0, setting="a1a1a1a1a1a1",
                                plugin=f"au-cam-extra=={extra_version}")])
    code, _, err = bench(monkeypatch, capsys, "report", "--results-dir", str(tmp_path), "--run", "plugins",
                         "--no-figures")
    assert code == 0, err
    text = (run / "report.md").read_text()
    line = next(line for line in text.splitlines() if line.startswith("| method plugins |"))
    assert line == ("| method plugins | cam: au-cam-bench==0.1.0; xgradcam: au-cam-extra==0.3.0 (2 results), "
                    "au-cam-extra==0.4.0 (1 result) |")


def test_plugin_provenance_falls_back_to_the_evaluation_identity():
    from bench.reporting.report import plugins_cell

    failed = {"status": "failed", "rows": [], "spec": {"evaluate": ["gradcam"]},
              "identity": {"plugin": {"distribution": "au-cam-bench", "version": "0.1.0", "source": "x"}}}
    old = {"status": "ok", "rows": [{"method": "cam"}], "spec": {"evaluate": ["cam"]}}    # written before rows had it
    assert plugins_cell([failed, old]) == "gradcam: au-cam-bench==0.1.0"
    assert plugins_cell([old]) == "—"
