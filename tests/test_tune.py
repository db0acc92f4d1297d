"""``bench tune``: each AU mode is searched on its own objective and ``bench run --config`` applies
each mode's settings only to trials of that mode; layer choices come from the method's own model."""
import json
import subprocess
import tomllib

import pytest

from bench.config.settings import resolve
from bench.errors import UserError
from methods import get_method
from bench.integrations.tune import (SEARCHED, TuneRequest, best_toml, config_overrides, layer_sets, mode_objective,
                        model_layer_sets, objective_value)
from test_cli import BENCH, ENV


def tune(*args):
    return subprocess.run([*BENCH, "tune", *args], capture_output=True, text=True, env=ENV, timeout=600)


def run(*args):
    return subprocess.run([*BENCH, "run", *args], capture_output=True, text=True, env=ENV, timeout=600)


def records(run_dir):
    return [json.loads(p.read_text()) for p in sorted((run_dir / "evaluations").glob("*.json"))]


def test_objectives():
    assert objective_value(80.0, 0.5, "cl", 1.0) == 80.0
    assert objective_value(80.0, 0.5, "cl+att", 2.0) == pytest.approx(0.8 + 1.0)
    with pytest.raises(UserError, match="bad --objective"):
        objective_value(80.0, 0.5, "auc", 1.0)
    with pytest.raises(ValueError, match="finite"):          # never a score from a missing ATT-COS
        objective_value(80.0, None, "cl+att", 1.0)


def test_the_baseline_is_tuned_on_cl_and_on_the_learning_rate_only():
    request = TuneRequest("cam", "synthetic", "smoke", (), objective="cl+att")
    assert mode_objective(request, False) == "cl" and mode_objective(request, True) == "cl+att"
    assert SEARCHED[False] == ("train.lr",)
    assert set(SEARCHED[True]) == {"train.lr", "au.weight", "au.layers"}


def test_layer_sets_from_map_names():
    names = ["layer1", "layer2", "layer3", "layer4", "layer5"]
    assert layer_sets(names, ("layer5",)) == (
        "layer5", "layer1", "layer2", "layer3", "layer4", "layer5,layer4", "layer5,layer4,layer3")
    assert layer_sets(["stage3"], ("stage3",)) == ("stage3",)
    assert layer_sets(["tokens", "final"], ("tokens",)) == ("tokens", "final", "final,tokens")


@pytest.mark.parametrize("method, expected", [
    ("cam", {"layer1", "layer2", "layer3", "layer4", "layer5"}),
    ("tscam", {"tokens", "final"}),
    ("apvit", {"stage3"}),
])
def test_layer_choices_come_from_the_methods_own_model(method, expected):
    sets = model_layer_sets(method, "smoke", (), "synthetic")
    singles = {s for s in sets if "," not in s}
    assert singles == expected                                 # not a ResNet list for the transformers
    for layer_set in sets:                                     # every set trains: its maps exist
        resolve("smoke", [("au.layers", layer_set)], "synthetic", method, True)
    assert sets[0] == ",".join(get_method(method).alignment_layers)   # the method's own choice comes first


def _results():
    return {False: {"best": {"train.lr": 0.0005}, "objective": 40.0, "objective_name": "cl"},
            True: {"best": {"train.lr": 0.004, "au.weight": 2.5, "au.layers": "layer4,layer3"},
                   "objective": 0.9, "objective_name": "cl+att"}}


def test_best_config_applies_each_mode_only_to_its_trials(tmp_path):
    path = tmp_path / "best.toml"
    path.write_text(best_toml(TuneRequest("cam", "synthetic", "smoke", ()), _results()))
    raw = tomllib.loads(path.read_text())
    assert raw["per_au"]["off"] == {"train": {"lr": 0.0005}}
    overrides = config_overrides(path)
    assert ("per_au.on.au.layers", ["layer4", "layer3"]) in overrides
    off = resolve("smoke", overrides, "synthetic", "cam", False)
    on = resolve("smoke", overrides, "synthetic", "cam", True)
    plain = resolve("smoke", [], "synthetic", "cam", False)
    assert off.train.lr == 0.0005 and on.train.lr == 0.004
    assert off.au == plain.au                                  # the baseline keeps the profile's λ and layers
    assert on.au.weight == 2.5 and on.au.layers == ("layer4", "layer3")


def test_config_file_flattens_to_overrides(tmp_path):
    path = tmp_path / "best.toml"
    path.write_text('[per_au.on.au]\nweight = 3.5\nlayers = ["layer5", "layer4"]\n[per_au.off.train]\nlr = 0.01\n')
    assert config_overrides(path) == [("per_au.on.au.weight", 3.5), ("per_au.on.au.layers", ["layer5", "layer4"]),
                                      ("per_au.off.train.lr", 0.01)]
    with pytest.raises(UserError, match="no such file"):
        config_overrides(tmp_path / "missing.toml")


def test_run_with_a_per_mode_config_trains_each_mode_with_its_own_settings(tmp_path):
    best = tmp_path / "best.toml"
    best.write_text(best_toml(TuneRequest("cam", "synthetic", "smoke", ()), _results()))
    out = run("--methods", "cam", "--profile", "smoke", "--au", "both", "--executor", "local",
              "--results-dir", str(tmp_path), "--config", str(best), "--set", "train.epochs=1")
    assert out.returncode == 0, out.stderr[-2000:]
    by_mode = {r["spec"]["au"]: r for r in records(tmp_path / "smoke")}
    assert set(by_mode) == {False, True}
    for au, record in by_mode.items():
        spec = record["spec"]
        config = resolve(spec["profile"], [tuple(kv) for kv in spec["overrides"]], spec["dataset"], spec["method"], au)
        assert record["rows"][0]["config_hash"] == config.digest()   # the trial trained with this config
        assert config.train.lr == (0.004 if au else 0.0005)
    assert by_mode[True]["rows"][0]["alignment_layers"] == "layer4,layer3"


@pytest.mark.slow
def test_tune_searches_each_mode_on_validation_and_writes_per_mode_tables(tmp_path):
    out = tune("--method", "cam", "--profile", "smoke", "--num-samples", "2", "--objective", "cl+att",
               "--results-dir", str(tmp_path), "--set", "train.epochs=1")
    assert out.returncode == 0, out.stderr[-2000:]
    folder = tmp_path / "tune-cam-synthetic"
    raw = tomllib.loads((folder / "best.toml").read_text())
    assert set(raw["per_au"]["off"]) == {"train"} and set(raw["per_au"]["off"]["train"]) == {"lr"}
    assert set(raw["per_au"]["on"]["train"]) == {"lr"} and set(raw["per_au"]["on"]["au"]) == {"weight", "layers"}
    assert 0.1 <= raw["per_au"]["on"]["au"]["weight"] <= 20
    base_lr = resolve("smoke", [], "synthetic", "cam").train.lr
    for mode in ("off", "on"):
        assert base_lr / 10 <= raw["per_au"][mode]["train"]["lr"] <= base_lr * 10
    import polars as pl

    trials = pl.read_csv(folder / "trials.csv")
    assert sorted(trials["au"].to_list()) == ["off", "off", "on", "on"]
    off = trials.filter(pl.col("au") == "off")
    assert off["au.weight"].is_null().all() and off["val_att_cos"].is_null().all()
    assert (off["objective"] == off["val_cl"]).all()          # the baseline's objective is validation CL
    on = trials.filter(pl.col("au") == "on")
    assert (on["objective"] - (on["val_cl"] / 100 + on["val_att_cos"])).abs().max() < 1e-9
    assert not (tmp_path / "tune-cam-synthetic" / "evaluations").exists()     # tuning writes no benchmark rows


@pytest.mark.slow
@pytest.mark.parametrize("method, offered", [("tscam", {"tokens", "final"}), ("apvit", {"stage3"})])
def test_tune_works_for_the_transformers(tmp_path, method, offered):
    out = tune("--method", method, "--profile", "smoke", "--au", "on", "--num-samples", "1",
               "--results-dir", str(tmp_path), "--set", "train.epochs=1")
    assert out.returncode == 0, out.stderr[-2000:]
    raw = tomllib.loads((tmp_path / f"tune-{method}-synthetic" / "best.toml").read_text())
    assert "off" not in raw["per_au"]                          # --au on tunes the aligned mode only
    assert set(raw["per_au"]["on"]["au"]["layers"]) <= offered


# --- issue 21.6: bench tune takes bench run's paths and preflight, before any trial ---
from bench.cli.paths import absolute_data_root  # noqa: E402
from test_data_rafdb import make_rafdb  # noqa: E402

SMALL = ["--profile", "smoke", "--set", "data.image_size=32", "--set", "data.val_fraction=0.3"]


def _one_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("root_from", ["--data-root", "BENCH_DATA"])
def test_a_w_au_search_on_data_without_landmarks_stops_before_any_trial(tmp_path, cli, monkeypatch, root_from):
    """It used to tune λ against a zero alignment loss; now the coverage check of bench run stops it."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    root, *_ = make_rafdb(tmp_path / "data")
    where = ["--data-root", root] if root_from == "--data-root" else []
    if root_from == "BENCH_DATA":
        monkeypatch.setenv("BENCH_DATA", str(root))
    results = tmp_path / "results"
    code, _, err = cli("tune", "--method", "cam", "--dataset", "rafdb", "--au", "on", *where, *SMALL,
                       "--set", "data.landmarks=none", "--results-dir", results)
    line = _one_line(err)
    assert code == 2 and "rafdb w/ AU: only 0 of 6 training faces" in line and "landmarks: none" in line, line
    assert not results.exists()                                   # no Ray experiment, no trial folder


def test_the_dry_run_stops_a_search_whose_first_step_diverges(tmp_path, cli):
    code, _, err = cli("tune", "--method", "cam", "--au", "off", *SMALL, "--set", "train.lr=1e30",
                       "--results-dir", tmp_path)
    line = _one_line(err)
    assert code == 2 and "already makes the model's logits non-finite" in line, line
    assert not list(tmp_path.iterdir())


def test_a_relative_data_root_is_made_absolute_before_ray_changes_the_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_data_root((("data.root", "data/raf"), ("train.lr", 0.1))) == (
        ("data.root", str(tmp_path / "data" / "raf")), ("train.lr", 0.1))
    assert absolute_data_root((("data.root", ""),)) == (("data.root", ""),)     # "" keeps meaning $BENCH_DATA
