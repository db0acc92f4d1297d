"""Issue 10, as a user meets it: real files on disk, the real ``bench`` entry point.

Each test is one way the harness used to print a wrong or stale number without a word: a "w/ AU"
row trained without AU maps, a skipped trial whose data had changed, a failure that every trial
repeated, a diverged model reported as a result, results other people could not read.
"""
import json
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

from test_data_rafdb import make_rafdb, write_landmarks

SMOKE = ["--profile", "smoke", "--set", "data.image_size=32", "--set", "data.val_fraction=0.3"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BENCH_DATA", raising=False)


@pytest.fixture
def rafdb(tmp_path):
    """A RAF-DB tree (official basic/ layout) with landmarks detected on the aligned images."""
    root, basic, names, truth = make_rafdb(tmp_path / "data")
    write_landmarks(basic, names, truth, "aligned")
    return root, basic, names, truth


def _one_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _trial_files(results):
    return sorted(results.rglob("evaluations/*.json"))


def test_au_trial_with_landmarks_of_other_images_stops(rafdb, tmp_path, cli):
    root, basic, *_ = rafdb
    results = tmp_path / "results"
    code, _, err = cli("run", "--datasets", "rafdb", "--data-root", root, "--results-dir", results, *SMOKE,
                       "--set", "data.rafdb_images=original")
    line = _one_line(err)
    assert code == 2 and "only 0 of" in line and "data.min_au_coverage=0.5" in line      # train or test split
    assert (f"bench landmarks rafdb --profile smoke --data-root {root}" in line
            and "--set data.rafdb_images=original" in line), line
    assert not results.exists()


def test_au_trial_without_landmarks_stops(rafdb, tmp_path, cli):
    root, *_ = rafdb
    code, _, err = cli("run", "--datasets", "rafdb", "--data-root", root, "--results-dir", tmp_path / "r", *SMOKE,
                       "--set", "data.landmarks=none")
    assert code == 2 and "rafdb w/ AU" in _one_line(err) and "landmarks: none" in err


def test_landmarks_json_with_other_keys_stops(tmp_path, cli):
    from test_data_folder import make_folder

    root, marks = make_folder(tmp_path / "faces")
    (root / "landmarks.json").write_text(json.dumps({f"other/{k}": v for k, v in marks.items()}))
    code, _, err = cli("run", "--datasets", "folder", "--data-root", root, "--results-dir", tmp_path / "r", *SMOKE)
    assert code == 2 and "folder w/ AU: only 0 of" in _one_line(err)


def test_changed_landmarks_rerun_and_another_copy_of_the_same_data_does_not(rafdb, tmp_path, cli, monkeypatch):
    root, basic, names, truth = rafdb
    results = tmp_path / "results"
    args = ["run", "--datasets", "rafdb", "--au", "on", "--executor", "local", "--results-dir", results, *SMOKE]
    code, _, err = cli(*args, "--data-root", root)
    assert code == 0, err
    code, _, err = cli(*args, "--data-root", root)
    assert code == 0 and "1 already finished, 0 to run" in err
    # The landmarks are detected again (here: shifted by 1 px): the trial's numbers depend on them.
    shifted = {name: {**t, "aligned": t["aligned"] + np.float32(1.0)} for name, t in truth.items()}
    write_landmarks(basic, names, shifted, "aligned")
    code, _, err = cli(*args, "--data-root", root)
    assert code == 0 and "0 already finished, 1 to run" in err, err
    # A second copy of the same data, given through $BENCH_DATA: same content, nothing to train or evaluate.
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    write_landmarks(next(copy.rglob("basic")), names, shifted, "aligned")     # landmark caches are per root
    monkeypatch.setenv("BENCH_DATA", str(copy))
    code, _, err = cli(*args)
    assert code == 0 and "1 already finished, 0 to run" in err, err
    # Its landmarks set back to the first ones: exactly the data of the first model, which is kept.
    write_landmarks(next(copy.rglob("basic")), names, truth, "aligned")
    code, _, err = cli(*args)
    assert code == 0 and "1 already finished, 0 to run" in err, err
    records = [json.loads(p.read_text()) for p in _trial_files(results)]
    assert {r["data"]["data_root"] for r in records} == {str(basic)}
    assert len({r["data"]["landmark_digest"] for r in records}) == 2
    # Files are readable by collaborators (umask 022 -> 0644), the record and the figure arrays.
    for path in [*_trial_files(results), *results.rglob("evaluations/*.npz")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644 & ~_umask(), path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_unreadable_images_past_the_limit_stop_before_any_trial(rafdb, tmp_path, cli):
    root, basic, *_ = rafdb
    bad = basic / "Image" / "aligned" / "train_00001_aligned.jpg"
    bad.write_bytes(b"")
    results = tmp_path / "results"
    code, _, err = cli("run", "--methods", "cam,gradcam", "--datasets", "rafdb", "--data-root", root,
                       "--results-dir", results, *SMOKE)
    line = _one_line(err)
    assert code == 2 and "could not be read" in line and "train_00001_aligned.jpg" in line
    assert "Traceback" not in err and not results.exists()


def test_offline_paper_profile_stops_before_any_trial(tmp_path, cli):
    code, _, err = cli("run", "--methods", "cam,gradcam", "--profile", "paper", "--results-dir", tmp_path / "r")
    line = _one_line(err)
    assert code == 2 and "could not load pretrained weights" in line and "model.pretrained=false" in line
    assert not (tmp_path / "r").exists()


def test_a_second_setting_in_a_run_folder_is_announced(tmp_path, cli):
    results = tmp_path / "results"
    common = ["run", "--au", "off", "--executor", "local", "--results-dir", results, "--run-name", "shared", *SMOKE]
    assert cli(*common)[0] == 0
    code, _, err = cli(*common, "--set", "train.epochs=1")
    assert code == 0 and "already holds results of another setting" in err


def test_a_learning_rate_that_diverges_at_once_stops_before_any_trial(tmp_path, cli):
    code, _, err = cli("run", "--au", "off", "--results-dir", tmp_path / "r", *SMOKE, "--set", "train.lr=1e30")
    line = _one_line(err)
    assert code == 2 and "already makes the model's logits non-finite" in line and "train.lr=1e+30" in line


NAN_AFTER_THE_DRY_RUN = '''
import torch

from methods.cam import CAM
from methods.registry import register


@register
class Diverges(CAM):
    """Test-only: its loss turns NaN on full batches, i.e. in the trial, after the 4-face dry run."""

    name = "diverges"
    title = "Diverges"

    def loss(self, output, batch):
        loss = super().loss(output, batch)
        return loss * torch.nan if batch.images.shape[0] > 4 else loss
'''


@pytest.mark.slow
def test_a_non_finite_loss_fails_the_trial_loudly_under_ray(tmp_path):
    """A loss that turns NaN must fail the trial and say where, and `bench run` must exit 1 (a NaN loss
    used to give status ok, CL 0.00 and exit 0)."""
    (tmp_path / "divergesplugin.py").write_text(NAN_AFTER_THE_DRY_RUN)
    results = tmp_path / "results"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "BENCH_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(tmp_path), "BENCH_PLUGINS": "divergesplugin"}
    out = subprocess.run([sys.executable, "-c", "from bench.cli.main import main; main()", "run", "--methods", "diverges",
                          "--au", "off", "--results-dir", str(results), *SMOKE],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 1, out.stderr
    assert "1 failed" in out.stderr and "non-finite classification loss" in out.stderr
    record = json.loads(_trial_files(results)[0].read_text())
    assert record["status"] == "failed" and record["rows"] == []
    assert "non-finite classification loss (nan) at epoch 1, step 1" in record["error"]
