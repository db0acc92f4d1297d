"""End to end through the real ``bench`` entry point (subprocesses), on the smoke profile."""
import json
import os
import subprocess
import sys

import pytest

BENCH = [sys.executable, "-c", "from bench.cli.main import main; main()"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def bench(*args, cwd=None):
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    first = bench("run", "--methods", "cam", "--datasets", "synthetic", "--profile", "smoke",
                  "--executor", "local", "--results-dir", str(results))
    return results, first


def test_local_run_writes_one_row_per_trial(local_run):
    results, first = local_run
    assert first.returncode == 0, first.stderr
    files = sorted((results / "smoke" / "evaluations").glob("*.json"))
    assert len(files) == 2
    records = [json.loads(f.read_text()) for f in files]
    assert {r["spec"]["au"] for r in records} == {False, True}
    for r in records:
        assert r["status"] == "ok"
        row = r["rows"][0]
        assert row["method"] == "cam" and 0 <= row["cl"] <= 100
        assert -1 <= row["att_cos_layer5"] <= 1 and -1 <= row["cam_cos"] <= 1
        assert len(r["history"]) == 2
        assert r["provenance"]["versions"]["torch"]
    assert not list((results / "smoke" / "checkpoints").glob("*.pt"))


def test_rerun_skips_finished_trials(local_run):
    results, _ = local_run
    before = {f: f.stat().st_mtime_ns for f in (results / "smoke" / "evaluations").glob("*.json")}
    again = bench("run", "--methods", "cam", "--profile", "smoke", "--executor", "local",
                  "--results-dir", str(results))
    assert again.returncode == 0
    assert "2 already finished, 0 to run" in again.stderr
    assert {f: f.stat().st_mtime_ns for f in before} == before


def test_table_formats_agree(local_run):
    results, _ = local_run
    md = bench("table", "--results-dir", str(results))
    tex = bench("table", "--results-dir", str(results), "--format", "latex")
    csv = bench("table", "--results-dir", str(results), "--format", "csv")
    assert md.returncode == tex.returncode == csv.returncode == 0
    cam_md = next(line for line in md.stdout.splitlines() if line.startswith("| CAM |"))
    numbers = [c.strip() for c in cam_md.strip("|").split("|")[1:]]
    cam_tex = next(line for line in tex.stdout.splitlines() if line.startswith("CAM &"))
    tex_numbers = [c.strip().replace("$^{\\dagger}$", "†") for c in cam_tex.rstrip("\\ ").split("&")[1:]]
    assert tex_numbers == numbers                # the faces test marks the same cells in both
    csv_cells = [line.split(",")[5:7] for line in csv.stdout.splitlines()[1:]]
    assert [v for pair in csv_cells for v in pair] == [n.rstrip("†") for n in numbers]


def test_bad_set_exits_2_with_one_line(tmp_path):
    out = bench("run", "--set", "train.epochz=3", "--results-dir", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "unknown option train.epochz" in out.stderr


@pytest.mark.parametrize("args,needle", [
    (("run", "--methods", "nosuch"), "unknown method 'nosuch'; known methods: cam"),
    (("run", "--datasets", "nosuch"), "unknown dataset 'nosuch'"),
    (("run", "--datasets", "rafdb", "--data-root", "/nonexistent"), "data root /nonexistent (from --data-root"),
    (("run", "--au", "maybe"), "bad --au"),
    (("run", "--set", "train.epochs"), "expected key=value"),
    (("table", "--format", "pdf"), "bad --format"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    out = bench(*args, "--results-dir", str(tmp_path))
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr and out.stderr.strip().count("\n") == 0


def test_asking_for_gpus_the_cluster_lacks_is_an_error_at_launch(tmp_path):
    out = bench("run", "--profile", "smoke", "--gpus-per-trial", "64", "--results-dir", str(tmp_path))
    assert out.returncode == 2, out.stderr[-2000:]
    assert "--gpus-per-trial 64.0 but the Ray cluster has" in out.stderr
    assert out.stderr.strip().count("\n") == 0        # checked before planning: the one-line error only
    assert not (tmp_path / "smoke").exists()


def test_table_without_runs(tmp_path):
    out = bench("table", "--results-dir", str(tmp_path))
    assert out.returncode == 2 and "no runs under" in out.stderr


def test_methods_lists_every_builtin():
    out = bench("methods")
    assert out.returncode == 0
    for name in ("cam", "wildcat", "gradcam", "gradcampp", "acol", "prm", "adl", "cutmix", "layercam"):
        assert f"│ {name} " in out.stdout


THIRD_PARTY = """
from methods.cam import CAM


class {cls}(CAM):
    name = "{name}"
    title = "{cls}"

    def explain(self, model, x, target):
        if {leak}:
            model.backbone.stem.register_forward_hook(lambda *a: None)
        return super().explain(model, x, target)
"""


@pytest.mark.parametrize("leak", [False, True])
def test_check_plugin_on_a_third_party_module(tmp_path, leak):
    (tmp_path / "thirdparty.py").write_text(THIRD_PARTY.format(cls="OtherCam", name="othercam", leak=leak))
    env = {**ENV, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([*BENCH, "check-plugin", "thirdparty:OtherCam"], capture_output=True, text=True,
                         env=env, timeout=600)
    if leak:
        assert out.returncode == 1 and "hooks leaked" in out.stdout and "10 passed, 1 failed" in out.stdout
    else:
        assert out.returncode == 0 and "11 passed, 0 failed" in out.stdout, out.stdout + out.stderr


def test_ray_run_with_a_relative_results_dir(tmp_path):
    # A relative results dir: Ray Tune runs trials in their own working directory.
    out = bench("run", "--methods", "cam", "--datasets", "synthetic", "--profile", "smoke", "--au", "both",
                "--executor", "ray", "--cpus-per-trial", "1", "--results-dir", ".",
                "--set", "train.epochs=1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(f.read_text()) for f in (tmp_path / "smoke" / "evaluations").glob("*.json")]
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)
    assert list((tmp_path / "smoke" / "ray").glob("sweep-*"))


def test_an_impossible_setting_stops_before_any_trial(tmp_path):
    # A backbone that cannot exist would fail every trial: the preflight says so once, writes nothing.
    out = bench("run", "--methods", "cam", "--profile", "smoke", "--executor", "local", "--au", "both",
                "--results-dir", str(tmp_path), "--set", "model.backbone=resnet999")
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "resnet999" in out.stderr
    assert not (tmp_path / "smoke").exists()


