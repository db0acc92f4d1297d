"""``bench table`` / ``figures`` / ``report`` through the real CLI entry point, on hand-written runs."""
import sys

import pytest

from bench.cli import main
from bench.spec import TrialSpec
from bench.store import RunStore

from test_figures import _fake_trial


def bench(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def _record(store: RunStore, au: bool, seed: int, cl: float) -> None:
    spec = TrialSpec("cam", ("cam",), "synthetic", au, seed, "smoke")
    row = {"method": "cam", "title": "CAM", "family": "cnn", "alignment_layers": "layer5", "selection_split": "val",
           "config_hash": "abc123", "data_fingerprint": "fp", "best_epoch": 1, "cl": cl, "cam_cos": 0.5,
           "att_cos_layer5": 0.4 + 0.1 * au}
    store.write(spec, "ok", [row], timings={"train_seconds": 10.0, "eval_seconds": 1.0, "total_seconds": 12.0},
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


def test_duplicate_cells_across_runs_exit_2(monkeypatch, capsys, runs):
    store = RunStore(runs / "c")
    _record(store, False, 0, 70.0)
    code, _, err = bench(monkeypatch, capsys, "table", "--results-dir", str(runs), "--run", "a,c")
    assert code == 2 and "two results for cam on synthetic w/o AU seed 0" in err


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
