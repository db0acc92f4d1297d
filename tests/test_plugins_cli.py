"""Plugins through the real console script: broken entry points, BENCH_PLUGINS from the current
folder, ``bench check-plugin module``, piped ``bench methods`` (issue 11, problems 5 and 7)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parent / "plugins"
# The installed console script, as a user runs it: unlike `python -c`, it does not put the
# current folder on sys.path.
BENCH = str(Path(sys.executable).parent / "bench")
BASE_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BENCH_PLUGINS")}
BASE_ENV.update(HF_HUB_OFFLINE="1", COLUMNS="80")


def bench(*args, cwd=None, **env):
    return subprocess.run([BENCH, *args], capture_output=True, text=True, env={**BASE_ENV, **env}, cwd=cwd,
                          timeout=600)


def fake_distribution(root: Path, name: str, version: str, entry_points: dict[str, str]) -> None:
    """An installed distribution as importlib.metadata sees one: a dist-info folder on sys.path."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(
        "[au_cam_bench.methods]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))


BROKEN = {
    "fx_notitle": ("faulty_plugins:NoTitle", "needs a title of its own"),
    "fx_inherited": ("faulty_plugins:InheritedTitle", "inherits 'CAM'"),
    "fx_plainconfig": ("faulty_plugins:PlainConfig", "Config must be a @dataclass"),
    "cam": ("faulty_plugins:ClashingCAM", "already taken by methods.cam.CAM"),
    "gone": ("no_such_module_anywhere:Gone", "ModuleNotFoundError"),
}


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory):
    """A site folder with one broken distribution (five bad entry points) and one good one."""
    site = tmp_path_factory.mktemp("site")
    fake_distribution(site, "brokenpkg", "0.1", {k: v for k, (v, _) in BROKEN.items()})
    fake_distribution(site, "goodpkg", "1.0", {"fx_transposed": "faulty_plugins:TransposedCAM"})
    return {"PYTHONPATH": os.pathsep.join([str(site), str(PLUGINS)])}


def test_broken_entry_points_cost_one_warning_line_each(broken_site):
    out = bench("methods", **broken_site)
    assert out.returncode == 0, out.stderr
    warnings = out.stderr.strip().splitlines()
    assert len(warnings) == len(BROKEN), out.stderr
    for line, (ep, (value, reason)) in zip(warnings, BROKEN.items()):
        assert line.startswith(f"warning: plugin skipped: entry point {ep} = {value} of brokenpkg 0.1: "), line
        assert reason in line, line
        hint = value if ep == "cam" else ep          # "cam" itself names the built-in
        assert line.endswith(f"(bench check-plugin {hint} shows the full error)"), line
    assert "Traceback" not in out.stderr
    lines = out.stdout.splitlines()
    assert any("│ fx_transposed " in line and "goodpkg 1.0" in line for line in lines)
    assert any("│ cam " in line and "│ CAM " in line and "au-cam-bench" in line for line in lines)
    assert not any("Another CAM" in line for line in lines)


@pytest.mark.parametrize("ep", ["gone", "fx_inherited", "faulty_plugins:ClashingCAM"])
def test_check_plugin_shows_the_full_error_of_a_skipped_plugin(broken_site, ep):
    out = bench("check-plugin", ep, **broken_site)
    name = "cam" if ep.endswith("ClashingCAM") else ep
    assert out.returncode == 1
    assert f"entry point {name} = {BROKEN[name][0]} of brokenpkg 0.1" in out.stdout
    assert "Traceback (most recent call last)" in out.stdout and BROKEN[name][1] in out.stdout


@pytest.mark.slow
def test_run_and_table_work_beside_a_broken_plugin(broken_site, tmp_path):
    run = bench("run", "--methods", "cam", "--au", "off", "--profile", "smoke", "--executor", "local",
                "--results-dir", str(tmp_path), **broken_site)
    assert run.returncode == 0, run.stderr[-3000:]
    table = bench("table", "--results-dir", str(tmp_path), **broken_site)
    assert table.returncode == 0, table.stderr
    assert any(line.startswith("| CAM |") for line in table.stdout.splitlines())
    assert "Traceback" not in run.stderr + table.stderr


LONG_DEFAULTS = '''
from dataclasses import dataclass

from methods.cam import CAM


class HereCam(CAM):
    name = "herecam"
    title = "HereCAM"

    @dataclass(frozen=True)
    class Config:
        description: str = "{text}"
'''


def test_bench_plugins_from_the_current_folder_and_piped_methods_keep_whole_defaults(tmp_path):
    text = "a default far longer than eighty columns " * 3
    (tmp_path / "mymodule.py").write_text(LONG_DEFAULTS.format(text=text))
    out = bench("methods", cwd=tmp_path, BENCH_PLUGINS="mymodule")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    line = next(line for line in out.stdout.splitlines() if "│ herecam " in line)
    assert f"description={text}" in line and "unpackaged:mymodule src-" in line


TRANSPOSED = '''
from faulty_plugins import TransposedCAM


class MyTransposed(TransposedCAM):
    name = "mytransposed"
    title = "MyTransposed"
'''


@pytest.mark.slow
def test_check_plugin_on_a_module_in_the_current_folder_without_class(tmp_path):
    (tmp_path / "mymodule.py").write_text(TRANSPOSED)
    out = bench("check-plugin", "mymodule", cwd=tmp_path, PYTHONPATH=str(PLUGINS))
    assert out.returncode == 1, out.stdout + out.stderr
    line = next(line for line in out.stdout.splitlines() if "CAM on the map grid" in line)
    assert "FAIL expected a CAM of spatial size (4, 4) (the grid of 'layer5'), came (4, 3)" in line
    assert "10 passed, 1 failed" in out.stdout
    assert "assertion failed" not in out.stdout


SHAPE_AND_CRASH = '''
import torch.nn.functional as F

from methods.cam import CAM


class CrashingCAM(CAM):
    """Its CAM goes through torch with the wrong size: the error fires inside the library."""
    name = "crashingcam"
    title = "CrashingCAM"

    def explain(self, model, x, target):
        output, cam = super().explain(model, x, target)
        return output, F.interpolate(cam, size=(3, 3, 3))
'''


def test_check_plugin_verbose_shows_the_traceback_and_dependent_checks_say_they_did_not_run(
        tmp_path, monkeypatch, cli):
    """Issue 20: a failure inside a library used to print only 'ValueError at …/torch/nn/functional.py',
    and checks on the CAM it rejected could still pass."""
    (tmp_path / "crashingplugin.py").write_text(SHAPE_AND_CRASH)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "crashingplugin", raising=False)
    code, out, _ = cli("check-plugin", "crashingplugin")
    assert code == 1
    line = next(line for line in out.splitlines() if "finite CAM (B, h, w)" in line)
    assert "FAIL ValueError at " in line and "called from " in line and "crashingplugin.py:14" in line
    grid = next(line for line in out.splitlines() if "CAM on the map grid" in line)
    assert "not run: depends on 'finite CAM (B, h, w)', which failed" in grid and "pass" not in grid
    assert "6 passed, 1 failed, 4 not run" in out
    assert "bench check-plugin crashingplugin --verbose shows the full traceback" in out
    assert "Traceback" not in out

    code, out, _ = cli("check-plugin", "crashingplugin", "--verbose")
    assert code == 1
    shown = out[out.index("--- finite CAM (B, h, w): traceback ---"):]
    assert shown.count("Traceback (most recent call last):") == 1       # one failure, one traceback
    assert 'crashingplugin.py", line 14, in explain' in shown and "in interpolate" in shown
    assert "--verbose shows" not in out
