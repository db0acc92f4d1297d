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

from methods.source import normalised_tree, source_digest

FIRST_PARTY = ("bench", "au", "backbones", "methods")

#: Modules whose code (and everything first-party they import) decides a model's weights.
TRAINING_ROOTS = ("bench.train.fit", "bench.data", "backbones")

#: Modules whose code decides an evaluation's numbers, given a model.
EVALUATION_ROOTS = ("bench.sweep.evaluation", "bench.metrics.base", "bench.metrics.extended",
                    "bench.metrics.interventions", "bench.metrics.region_deletion", "bench.data.transforms",
                    "backbones")


def _parsed(path: str) -> tuple[str, tuple[str, ...]]:
    """(normalised-source digest, imported module names) of one file (parsed once per content)."""
    return _parse_source(Path(path).read_bytes(), path)


@lru_cache(maxsize=None)
def _parse_source(source: bytes, path: str) -> tuple[str, tuple[str, ...]]:
    tree = normalised_tree(source, path)
    imports: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            prefix = "." * node.level
            imports.extend(f"{prefix}{base}:{alias.name}" for alias in node.names)
    return source_digest(tree), tuple(imports)


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


_MEMO: dict[tuple, tuple[dict[str, str], dict[str, str]]] = {}


def _stamps(modules: Iterable[str]) -> dict[str, str]:
    """A hash of each module file's bytes (cheap next to parsing; mtimes can repeat within a clock tick)."""
    out = {}
    for name in modules:
        path = _module_file(name)
        if path is not None:
            out[name] = hashlib.blake2b(path.read_bytes(), digest_size=8).hexdigest()
    return out


def code_digests(roots: Iterable[str], extra_packages: Iterable[str] = ()) -> dict[str, str]:
    """{module name: normalised-source digest} of ``roots`` and every first-party module they import.

    The walk is remembered per (roots, packages) while none of the files it read has changed, so a
    sweep of many cells walks the imports once."""
    key = (tuple(roots), tuple(sorted(set(extra_packages))))
    if key in _MEMO:
        digests, stamps = _MEMO[key]
        if _stamps(stamps) == stamps:
            return dict(digests)
    digests = _walk(key[0], key[1])
    _MEMO[key] = (digests, _stamps(digests))
    return dict(digests)


def _walk(roots: Iterable[str], extra_packages: Iterable[str] = ()) -> dict[str, str]:
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
        digest, imports = _parsed(str(path))
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
