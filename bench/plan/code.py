"""The code a number depends on, as digests of normalised source.

A model's id and an evaluation's id cover the source of the modules that compute them, found by
following imports from a few root modules (the method's own module and its base classes' modules,
the training or evaluation entry modules) through first-party packages: ``bench``, ``au``,
``backbones``, ``methods`` and the top-level package of any third-party plugin. Source is
normalised through Python's AST with docstrings removed, so comments, docstrings and formatting
never change an id, while any change to what the code does does.

Which roots count for what (see docs/reproducibility.md):
- training: ``TRAINING_ROOTS`` + the trained method's modules (its class and base classes);
- evaluation: ``EVALUATION_ROOTS`` + each extractor's modules.
Static imports are followed, including those inside functions, so a lazily imported module counts.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
from functools import lru_cache
from pathlib import Path
from typing import Iterable

FIRST_PARTY = ("bench", "au", "backbones", "methods")

#: Modules whose code (and everything first-party they import) decides a model's weights.
TRAINING_ROOTS = ("bench.train.fit", "bench.data", "backbones")

#: Modules whose code decides an evaluation's numbers, given a model.
EVALUATION_ROOTS = ("bench.metrics.base", "bench.metrics.extended", "bench.data.transforms", "backbones")


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@lru_cache(maxsize=None)
def _parsed(path: str, mtime_ns: int, size: int) -> tuple[str, tuple[str, ...]]:
    """(normalised-source digest, imported module names) of one file."""
    source = Path(path).read_text(encoding="utf-8")
    tree = ast.parse(source, filename=path)
    imports: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            prefix = "." * node.level
            imports.extend(f"{prefix}{base}:{alias.name}" for alias in node.names)
    dump = ast.dump(_strip_docstrings(tree), annotate_fields=False, include_attributes=False)
    return hashlib.sha256(dump.encode()).hexdigest()[:16], tuple(imports)


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _absolute(name: str, module: str, is_package: bool) -> str:
    """``from .x import y`` inside ``module`` -> its absolute name."""
    if not name.startswith("."):
        return name
    level = len(name) - len(name.lstrip("."))
    parts = module.split(".") if is_package else module.split(".")[:-1]
    base = parts[: len(parts) - (level - 1)] if level > 1 else parts
    rest = name.lstrip(".")
    return ".".join([*base, rest] if rest else base)


def _defining_module(module: str, name: str) -> str:
    """``from module import name`` -> the module that defines ``name``: a submodule, the module of a
    re-exported class or function, or ``module`` itself. Following the definition (not the package
    that re-exports it) keeps one plugin's edit out of every other plugin's id."""
    if _module_file(f"{module}.{name}") is not None:
        return f"{module}.{name}"
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return module
    defined_in = getattr(obj, "__module__", None)
    return defined_in if isinstance(defined_in, str) else module


def code_digests(roots: Iterable[str], extra_packages: Iterable[str] = ()) -> dict[str, str]:
    """{module name: normalised-source digest} of ``roots`` and every first-party module they import.

    A package's ``__init__`` reached through an import counts with its own source, but its imports
    are followed only when it is a root (``methods/__init__`` imports every plugin to register it)."""
    allowed = set(FIRST_PARTY) | {p for p in extra_packages if p}
    root_set = set(roots)
    out: dict[str, str] = {}
    todo = list(dict.fromkeys(roots))
    while todo:
        name = todo.pop()
        if name in out or name.split(".")[0] not in allowed:
            continue
        path = _module_file(name)
        if path is None:
            continue
        stat = path.stat()
        digest, imports = _parsed(str(path), stat.st_mtime_ns, stat.st_size)
        out[name] = digest
        is_package = path.name == "__init__.py"
        if is_package and name not in root_set:
            continue
        for imported in imports:
            module, _, member = imported.partition(":")
            absolute = _absolute(module, name, is_package)
            if not absolute or absolute.split(".")[0] not in allowed:
                continue
            for dependency in (_defining_module(absolute, member) if member else absolute, absolute):
                if dependency not in out:
                    todo.append(dependency)
    return dict(sorted(out.items()))


def class_modules(cls: type) -> tuple[list[str], list[str]]:
    """(module names, their top-level packages) of a plugin class and its base classes."""
    modules = [klass.__module__ for klass in inspect.getmro(cls) if klass.__module__ not in ("builtins", "abc")]
    modules = [m for m in dict.fromkeys(modules) if not m.startswith(("typing", "torch", "dataclasses"))]
    return modules, sorted({m.split(".")[0] for m in modules})


def code_of(roots: Iterable[str], classes: Iterable[type]) -> dict[str, str]:
    """Digests of ``roots`` plus the modules of ``classes`` (built-in methods and plugins alike)."""
    modules: list[str] = list(roots)
    packages: set[str] = set()
    for cls in classes:
        mods, pkgs = class_modules(cls)
        modules.extend(mods)
        packages.update(pkgs)
    return code_digests(modules, packages)


def changed_modules(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Module names whose code differs (added, removed or changed), for the 'why it runs' line."""
    return sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))


def module_path(name: str) -> str:
    """``methods.cam`` -> ``methods/cam.py`` (how the user sees a module in messages)."""
    return name.replace(".", "/") + ".py"
