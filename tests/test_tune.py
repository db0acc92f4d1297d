"""``bench tune``: the search runs on validation through Ray Tune and its best config feeds ``bench run``."""
import json
import subprocess

import pytest

from bench.errors import UserError
from bench.tune import config_overrides, objective_value
from test_cli import BENCH, ENV


def test_objectives():
    assert objective_value(80.0, 0.5, "cl", 1.0) == 80.0
    assert objective_value(80.0, 0.5, "cl+att", 2.0) == pytest.approx(0.8 + 1.0)
    with pytest.raises(UserError, match="bad --objective"):
        objective_value(80.0, 0.5, "auc", 1.0)


def test_config_file_flattens_to_overrides(tmp_path):
    path = tmp_path / "best.toml"
    path.write_text('[au]\nweight = 3.5\nlayers = ["layer5", "layer4"]\n[train]\nlr = 0.01\n')
    assert config_overrides(path) == [("au.weight", 3.5), ("au.layers", ["layer5", "layer4"]), ("train.lr", 0.01)]
    with pytest.raises(UserError, match="no such file"):
        config_overrides(tmp_path / "missing.toml")


def test_tune_then_run_with_the_best_config(tmp_path):
    out = subprocess.run([*BENCH, "tune", "--method", "cam", "--profile", "smoke", "--num-samples", "2",
                          "--objective", "cl+att", "--results-dir", str(tmp_path), "--set", "train.epochs=1"],
                         capture_output=True, text=True, env=ENV, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    best = tmp_path / "tune-cam-synthetic" / "best.toml"
    tuned = dict(config_overrides(best))
    assert set(tuned) == {"au.weight", "au.layers", "train.lr"}
    assert 0.1 <= tuned["au.weight"] <= 20
    trials = (tmp_path / "tune-cam-synthetic" / "trials.csv").read_text().splitlines()
    assert len(trials) == 3 and "val_att_cos" in trials[0]
    assert not (tmp_path / "tune-cam-synthetic" / "trials").exists()       # tuning writes no benchmark rows

    run = subprocess.run([*BENCH, "run", "--methods", "cam", "--profile", "smoke", "--au", "on", "--executor", "local",
                          "--results-dir", str(tmp_path), "--config", str(best), "--set", "train.epochs=1"],
                         capture_output=True, text=True, env=ENV, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "smoke" / "trials").glob("*.json")]
    overrides = dict((k, v) for k, v in record["spec"]["overrides"])
    assert overrides["au.weight"] == tuned["au.weight"] and overrides["train.lr"] == tuned["train.lr"]
    assert record["rows"][0]["alignment_layers"] == ",".join(tuned["au.layers"])
