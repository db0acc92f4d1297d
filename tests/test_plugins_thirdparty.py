"""A stranger's distribution (tests/plugins/thirdparty: Hide-and-Seek, trainable; Score-CAM, post-hoc)
installed with pip beside the project (not into its venv), run end to end under Ray, then tabled."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent / "plugins" / "thirdparty"
BENCH = str(Path(sys.executable).parent / "bench")
BASE_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BENCH_PLUGINS")}
BASE_ENV.update(HF_HUB_OFFLINE="1", COLUMNS="200")


@pytest.mark.slow
def test_a_third_party_package_runs_under_ray_and_lands_in_its_family(tmp_path):
    source, site, results = tmp_path / "source", tmp_path / "site", tmp_path / "results"
    shutil.copytree(PACKAGE, source)             # the build writes beside its sources: not into the repo
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(site), str(source)],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    env = {**BASE_ENV, "PYTHONPATH": str(site)}
    run = subprocess.run([BENCH, "run", "--methods", "has,scorecam", "--datasets", "synthetic", "--au", "off",
                          "--profile", "smoke", "--executor", "ray", "--cpus-per-trial", "1",
                          "--results-dir", str(results), "--set", "train.epochs=1"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {row["method"]: row for f in results.glob("*/evaluations/*.json") for row in json.loads(f.read_text())["rows"]}
    assert set(rows) == {"has", "scorecam"}
    for row in rows.values():
        assert row["status"] == "ok" and 0 <= row["cl"] <= 100 and -1 <= row["cam_cos"] <= 1
        assert row["plugin"] == "au-cam-extra==0.3.0"
    assert rows["has"]["method_config"] == {"grid": 4, "hide_prob": 0.5, "hide_au": True}
    table = subprocess.run([BENCH, "table", "--results-dir", str(results)], capture_output=True, text=True,
                           env=env, timeout=300)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("| **CNN-based** |")))
    family = []
    for line in lines[start + 1:]:
        if not line.startswith("| ") or line.startswith("| **"):
            break
        family.append(line.split("|")[1].strip())
    assert sorted(family) == ["Hide-and-Seek", "Score-CAM"]
