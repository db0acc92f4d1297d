"""Plugins in real sweeps (``bench run --executor local --profile smoke``): one failing extractor
keeps the shared model's other rows, an edited default reruns only its plugin's trials, and badly
typed plugin options stop before anything runs (issue 11, problems 2, 3 and 4)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parent / "plugins"
THIRD_PARTY_SRC = PLUGINS / "thirdparty" / "src"
BENCH = str(Path(sys.executable).parent / "bench")
BASE_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BENCH_PLUGINS")}
BASE_ENV.update(HF_HUB_OFFLINE="1", COLUMNS="200")
SMOKE = ("--profile", "smoke", "--executor", "local", "--au", "off", "--datasets", "synthetic")


def bench(*args, cwd=None, **env):
    return subprocess.run([BENCH, *args], capture_output=True, text=True, env={**BASE_ENV, **env}, cwd=cwd,
                          timeout=600)


def records(results: Path) -> list[dict]:
    return [json.loads(f.read_text()) for f in sorted(results.glob("*/evaluations/*.json"))]


def rows(results: Path) -> list[dict]:
    return [row for record in records(results) for row in record.get("rows", [])]


@pytest.mark.slow
def test_a_failing_extractor_fails_its_own_row_only(tmp_path):
    out = bench("run", "--methods", "cam,fx_failing", *SMOKE, "--results-dir", str(tmp_path),
                BENCH_PLUGINS="posthoc_plugins:FxFailingCAM", PYTHONPATH=str(PLUGINS))
    assert out.returncode in (0, 1), out.stderr[-3000:]
    assert len(list(tmp_path.glob("*/models/*/model.json"))) == 1     # one shared training run
    assert len(records(tmp_path)) == 2                                 # one evaluation record per extractor
    by_method = {row["method"]: row for row in rows(tmp_path)}
    assert by_method["cam"]["status"] == "ok" and 0 <= by_method["cam"]["cl"] <= 100   # CAM's row landed
    failed = by_method["fx_failing"]
    assert failed["status"] == "failed" and failed.get("cl") is None        # no number from a failed extraction
    assert "deliberately failing extractor" in failed["error"]
    table = bench("table", "--results-dir", str(tmp_path),
                  BENCH_PLUGINS="posthoc_plugins:FxFailingCAM", PYTHONPATH=str(PLUGINS))
    assert table.returncode == 0, table.stderr
    assert any(line.startswith("| CAM |") for line in table.stdout.splitlines())


EDITED = '''"""A trainable plugin whose default is edited between two runs; its version stays "1.0"."""
from dataclasses import dataclass

import torch.nn.functional as F

from methods.cam import CAM


class EditedCAM(CAM):
    name = "edited"
    title = "Edited"
    version = "1.0"

    @dataclass(frozen=True)
    class Config:
        label_smoothing: float = {default}

    def loss(self, output, batch):
        return F.cross_entropy(output.logits, batch.labels, label_smoothing=self.config.label_smoothing)
'''


@pytest.mark.slow
def test_editing_a_plugin_default_reruns_its_trials_only(tmp_path):
    plugin_dir, results = tmp_path / "plugin", tmp_path / "results"
    plugin_dir.mkdir()
    env = {"BENCH_PLUGINS": "edited_plugin", "PYTHONPATH": str(plugin_dir)}
    args = ("run", "--methods", "cam,edited", *SMOKE, "--results-dir", str(results))
    (plugin_dir / "edited_plugin.py").write_text(EDITED.format(default=0.0))
    first = bench(*args, **env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 models, 2 to train; evaluations: 0 already finished, 2 to run" in first.stderr
    (plugin_dir / "edited_plugin.py").write_text(EDITED.format(default=0.25))
    second = bench(*args, **env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "2 models, 1 to train; evaluations: 1 already finished, 1 to run" in second.stderr
    edited = [r for r in records(results) if r["spec"]["method"] == "edited"]
    assert len(edited) == 2
    texts = sorted(json.dumps(r) for r in edited)
    # Each record carries the resolved Config (the default included) and the plugin's origin.
    assert sum('"label_smoothing": 0.25' in t for t in texts) == 1
    assert sum('"label_smoothing": 0.0' in t for t in texts) == 1
    assert all("unpackaged:edited_plugin" in t and '"1.0"' in t for t in texts)


@pytest.mark.parametrize("setting, field", [
    ("methods.has.hide_prob=abc", "hide_prob"),    # float
    ("methods.has.hide_au=maybe", "hide_au"),      # bool: not silently true
    ("methods.has.grid=2.5", "grid"),              # int: not after 21 s of training
])
def test_badly_typed_plugin_options_stop_before_anything_runs(tmp_path, setting, field):
    out = bench("run", "--methods", "has", *SMOKE, "--results-dir", str(tmp_path), "--set", setting,
                BENCH_PLUGINS="au_cam_extra.hide_and_seek", PYTHONPATH=str(THIRD_PARTY_SRC))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and f"methods.has.{field}" in lines[0], out.stderr
    assert not list(tmp_path.rglob("*.json"))
