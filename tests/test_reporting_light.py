"""The reporting stage stands on its own: ``bench table``/``report`` import no deep-learning stack,
the paper's numbers ship as package data (found by a non-editable install), and ``make clean``
removes outputs only."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "ray", "methods", "backbones")

CHECK = """
import atexit, json, sys
out = sys.argv[1]
def _report():
    with open(out, "w") as fh:
        json.dump(sorted(m for m in {heavy} if m in sys.modules), fh)
atexit.register(_report)
from bench.cli.main import main
sys.argv = ["bench", *sys.argv[2:]]
main()
""".format(heavy=HEAVY)


def _legacy_run(root: Path) -> Path:
    """A run folder of hand-written (legacy layout) trial records: CAM w/o and w/ AU, one seed."""
    trials = root / "smoke" / "trials"
    trials.mkdir(parents=True)
    for au, cl in ((False, 40.0), (True, 45.0)):
        row = {"method": "cam", "title": "CAM", "family": "cnn", "cam_kind": "class", "alignment_layers": "layer5",
               "selection_split": "val", "status": "ok", "error": None, "cl": cl, "cam_cos": 0.3 + 0.1 * au,
               "att_cos_layer5": 0.35 + 0.1 * au, "num_classes": 7, "image_size": 32, "epochs": 2}
        record = {"id": f"t{int(au)}", "spec": {"method": "cam", "evaluate": ["cam"], "dataset": "synthetic", "au": au,
                                                "seed": 0, "profile": "smoke", "overrides": []},
                  "setting": "s" * 16, "status": "ok", "error": None, "rows": [row], "timings": {},
                  "provenance": {}, "history": [], "data": {}, "identity": {}}
        (trials / f"t{int(au)}.json").write_text(json.dumps(record))
    return root


def _run_cli(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    seen = tmp_path / "modules.json"
    proc = subprocess.run([sys.executable, "-c", CHECK, str(seen), *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    return proc, json.loads(seen.read_text()) if seen.is_file() else None


def test_bench_table_and_report_import_no_deep_learning_stack(tmp_path):
    results = _legacy_run(tmp_path / "results")
    proc, heavy = _run_cli(tmp_path, "table", "--results-dir", str(results), "--reference", "paper")
    assert proc.returncode == 0, proc.stderr
    assert "| CAM | 40.00 | 45.00 |" in proc.stdout and "image size 32, epochs 2" in proc.stdout
    assert heavy == [], f"bench table imported {heavy}"
    proc, heavy = _run_cli(tmp_path, "report", "--results-dir", str(results), "--no-figures")
    assert proc.returncode == 0, proc.stderr
    assert heavy == [], f"bench report imported {heavy}"
    report = (results / "smoke" / "report.md").read_text()
    assert "## Faces the AU modes disagree on" in report and "No per-face results for CAM, Synthetic" in report


@pytest.mark.parametrize("args,needle", [
    (("--test", "foo"), "bad --test 'foo': expected auto, faces, seeds, t, wilcoxon"),
    (("--datasets", "rafdb"), "--datasets: 'rafdb' not in run smoke (there: synthetic)"),
])
def test_bad_table_options_are_one_line_exit_2(tmp_path, args, needle):
    results = _legacy_run(tmp_path / "results")
    proc, _ = _run_cli(tmp_path, "table", "--results-dir", str(results), *args)
    assert proc.returncode == 2 and needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_paper_numbers_are_package_data_found_through_importlib_resources():
    from importlib import resources

    from bench.reporting import reference

    assert resources.files("bench.reporting").joinpath("reference/paper.csv").is_file()
    assert "parents[" not in Path(reference.__file__).read_text()
    assert not (ROOT / "results" / "reference").exists()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"reporting/reference/*.csv"' in pyproject


@pytest.mark.slow
def test_a_non_editable_install_reads_the_paper_numbers(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("bench", "methods", "backbones", "au"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(target), str(src)], capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    assert (target / "bench" / "reporting" / "reference" / "paper.csv").is_file()
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import bench.reporting.reference as r; "
             "assert r.__file__.startswith(sys.argv[1]), r.__file__; "
             "ref = r.load_reference('paper'); print(len(ref.values), ref.get('cam', 'CAM', 'rafdb', 'cl', False))")
    out = subprocess.run([sys.executable, "-c", probe, str(target)], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["128", "88.2"]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_clean_removes_outputs_only(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "results" / "demo" / "trials").mkdir(parents=True)
    (tmp_path / "results" / "demo" / "trials" / "x.json").write_text("{}")
    (tmp_path / "results" / ".gitkeep").write_text("")
    (tmp_path / "bench" / "reporting" / "reference").mkdir(parents=True)
    (tmp_path / "bench" / "reporting" / "reference" / "paper.csv").write_text("kept")
    (tmp_path / "bench" / "__pycache__").mkdir()
    (tmp_path / ".venv").mkdir()
    proc = subprocess.run(["make", "-s", "clean"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "results" / "demo").exists() and not (tmp_path / ".venv").exists()
    assert not (tmp_path / "bench" / "__pycache__").exists()
    assert (tmp_path / "results" / ".gitkeep").is_file()
    assert (tmp_path / "bench" / "reporting" / "reference" / "paper.csv").read_text() == "kept"
