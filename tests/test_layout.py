"""The house by stage: imports point one way, one atomic writer, no method branches, docs that exist.

Ranks (docs/architecture.md): a module may import bench modules of its own rank or lower only, at
top level or inside a function. ``au``, ``backbones`` and ``methods`` never import ``bench``.
"""
import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RANKS = {"errors": 0, "files": 0, "provenance": 0, "config": 1, "data": 2, "store": 3, "plan": 4, "train": 5,
         "metrics": 6, "sweep": 7, "importers": 7, "reporting": 8, "integrations": 9, "cli": 10}


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
            out.extend(f"{node.module}.{a.name}" for a in node.names)
    return out


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "bench" and len(parts) > 1 and parts[1] in RANKS else None


def test_every_bench_module_has_a_rank():
    stages = {p.relative_to(REPO / "bench").parts[0].removesuffix(".py") for p in (REPO / "bench").glob("*")
              if not p.name.startswith("__") and (p.suffix == ".py" or p.is_dir())}
    assert stages <= set(RANKS), stages - set(RANKS)


def test_no_module_imports_a_later_stage():
    wrong = []
    for path in sorted((REPO / "bench").rglob("*.py")):
        own = path.relative_to(REPO / "bench").parts[0].removesuffix(".py")
        if own not in RANKS:
            continue
        for imported in _imports(path):
            stage = _stage(imported)
            if stage is not None and RANKS[stage] > RANKS[own]:
                wrong.append(f"{path.relative_to(REPO)} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_plugins_backbones_and_au_never_import_bench():
    wrong = [f"{p.relative_to(REPO)}: {m}" for pkg in ("au", "backbones", "methods") for p in (REPO / pkg).rglob("*.py")
             for m in _imports(p) if m == "bench" or m.startswith("bench.")]
    assert not wrong, wrong


def test_one_atomic_file_writer():
    """Temporary-name-then-rename file writes live in bench/files.py (au/ keeps a ten-line copy: it may not
    import bench)."""
    pattern = re.compile(r"mkstemp|NamedTemporaryFile|\.tmp\{os\.getpid|with_suffix\(f?\"\.tmp")
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "bench").rglob("*.py")
                 if p.name != "files.py" and pattern.search(p.read_text())]
    assert not offenders, offenders


def test_no_method_branches_in_bench():
    pattern = re.compile(r"""(method|name|\.name)\s*(==|!=|in)\s*\(?["'](cam|wildcat|gradcam|gradcampp|acol|prm|adl|"""
                         r"""cutmix|layercam|tscam|apvit)["']""")
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in (REPO / "bench").rglob("*.py")
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not offenders, offenders


def test_long_files_say_why():
    long = [p for p in (REPO / "bench").rglob("*.py") if len(p.read_text().splitlines()) > 420]
    unexplained = [str(p.relative_to(REPO)) for p in long if "Longer than" not in p.read_text()[:3000]]
    assert not unexplained, unexplained
