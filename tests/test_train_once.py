"""Train once, evaluate many, through the real CLI on a copy of the source tree (so code can be edited).

One results folder, smoke profile, in-process executor: an extended evaluation, more extractors and
a plugin train nothing; a comment in ``methods/cam.py`` trains nothing; a code change there retrains
CAM's models and says why; a change to an evaluation-only module re-evaluates without training;
``--reuse-older-code`` keeps the older models on purpose and marks their rows. And data by content:
a copy of the data elsewhere trains nothing and reuses the decode cache; one changed image retrains.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import JAFFE

REPO = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).resolve().parent / "plugins"
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BENCH_PLUGINS")}
ENV.update(HF_HUB_OFFLINE="1", COLUMNS="200")
FAST = ("--profile", "smoke", "--executor", "local", "--set", "train.epochs=1")


def _source_copy(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for package in ("bench", "methods", "au", "backbones"):
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    return src


def _bench(src: Path, *args, **env):
    out = subprocess.run([sys.executable, "-c", "from bench.cli.main import main; main()", *args], capture_output=True,
                         text=True, timeout=900, cwd=src.parent,
                         env={**ENV, "PYTHONPATH": os.pathsep.join([str(src), str(PLUGINS)]), **env})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stderr


def _records(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("*/evaluations/*.json"))]


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.slow
def test_train_once_evaluate_many_and_code_in_the_ids(tmp_path):
    src, results = _source_copy(tmp_path), tmp_path / "results"
    where = subprocess.run([sys.executable, "-c", "import bench, methods; print(bench.__file__, methods.__file__)"],
                           capture_output=True, text=True, env={**ENV, "PYTHONPATH": str(src)}, cwd=src.parent)
    assert all(path.startswith(str(src)) for path in where.stdout.split())      # the copy is what runs
    run = ("run", *FAST, "--results-dir", str(results))
    out = _bench(src, *run, "--methods", "cam")
    assert "done: 2 trained" in out

    out = _bench(src, *run, "--methods", "cam", "--eval", "extended")
    assert "done: 0 trained, 2 evaluated" in out and "eval.extended False -> True" in out
    rows = [r["rows"][0] for r in _records(results)]
    base = {(r["model_id"], r["method"]): r["cl"] for r in rows if r.get("deletion_auc") is None}
    extended = {(r["model_id"], r["method"]): r["cl"] for r in rows if r.get("deletion_auc") is not None}
    assert len(extended) == 2 and extended == base                 # the same models, the same CL

    out = _bench(src, *run, "--methods", "cam,gradcam,fx_scorecam", BENCH_PLUGINS="posthoc_plugins:FxScoreCAM")
    assert "done: 0 trained" in out and "gradcam new" in out and "fx_scorecam new" in out
    table = subprocess.run([sys.executable, "-c", "from bench.cli.main import main; main()", "table",
                            "--results-dir", str(results), "--format", "csv"], capture_output=True, text=True,
                           env={**ENV, "PYTHONPATH": str(src)}, timeout=300, cwd=src.parent)
    assert table.returncode == 0, table.stderr
    cells = [line.split(",")[:5] for line in table.stdout.splitlines()[1:] if line.strip()]
    for name in ("cam", "gradcam", "fx_scorecam"):          # one row per method: one CL line each
        assert sum(c[0] == name and c[4] == "CL" for c in cells) == 1, table.stdout

    cam = src / "methods" / "cam.py"
    _edit(cam, '"""', '"""A docstring edit, with a new line.\n\n')            # docstring + comment only
    cam.write_text(cam.read_text() + "\n# a comment at the end\n")
    out = _bench(src, *run, "--methods", "cam")
    assert "done: 0 trained, 0 evaluated, 2 skipped" in out

    cam.write_text(cam.read_text() + "\nEDITED = 2\n")                         # a change to what the code is
    out = _bench(src, *run, "--methods", "cam", "--reuse-older-code")
    assert "done: 0 trained, 2 evaluated" in out and "older code" in out
    marked = [r for r in _records(results) if (r.get("model") or {}).get("older_code")]
    assert len(marked) == 2

    out = _bench(src, *run, "--methods", "cam")
    assert "done: 2 trained" in out and "code (methods/cam.py)" in out

    _edit(src / "bench" / "metrics" / "base.py", "\ndef ", "\nEVALUATION_EDIT = 1\n\n\ndef ")
    out = _bench(src, *run, "--methods", "cam")
    assert "done: 0 trained, 2 evaluated" in out and "code (bench/metrics/base.py)" in out


@pytest.mark.slow
@pytest.mark.skipif(not JAFFE.is_dir(), reason="JAFFE faces not available")
def test_data_counts_by_content_not_by_path(tmp_path):
    results, cache = tmp_path / "results", tmp_path / "cache"
    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(JAFFE, first)
    env = {**ENV, "BENCH_CACHE": str(cache)}

    def run(root):
        out = subprocess.run([sys.executable, "-c", "from bench.cli.main import main; main()", "run", *FAST,
                              "--methods", "cam", "--datasets", "folder", "--data-root", str(root),
                              "--results-dir", str(results)], capture_output=True, text=True, timeout=900, env=env,
                             cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stderr

    assert "done: 2 trained" in run(first)
    entries = sorted(p.name for p in (cache / "folder").iterdir())
    shutil.copytree(first, second)                      # staged elsewhere: new paths, new mtimes
    for path in second.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
    out = run(second)
    assert "done: 0 trained, 0 evaluated, 2 skipped" in out and "another setting" not in out
    assert sorted(p.name for p in (cache / "folder").iterdir()) == entries        # decode cache reused

    image = next(p for p in sorted(second.rglob("*")) if p.suffix.lower() in (".tiff", ".tif", ".png", ".jpg"))
    from PIL import Image

    with Image.open(image) as im:
        pixels = im.convert("RGB")
    pixels.putpixel((0, 0), (255, 0, 0))
    pixels.save(image)
    out = run(second)
    assert "done: 2 trained" in out and "data (content or landmarks changed)" in out
