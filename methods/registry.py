"""Method registry: a decorator for built-ins, an entry-point group for third-party plugins.

Plugins that are not packaged yet can be loaded by module name with the environment variable
``BENCH_PLUGINS=pkg.module,other.module`` (it reaches Ray workers started from the same shell).
"""
from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points

from methods.base import Method

ENTRY_POINT_GROUP = "au_cam_bench.methods"
_REGISTRY: dict[str, type[Method]] = {}
_entry_points_loaded = False


class UnknownMethodError(ValueError):
    pass


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a Method subclass available by its ``name``."""
    name = getattr(cls, "name", None)
    if not name or name != name.lower():
        raise ValueError(f"{cls.__qualname__}.name must be a non-empty lower-case string")
    if not hasattr(cls, "title"):
        raise ValueError(f"{cls.__qualname__} needs a 'title' for tables")
    if cls.family not in ("cnn", "transformer"):
        raise ValueError(f"{cls.__qualname__}.family must be 'cnn' or 'transformer'")
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(f"method name {name!r} is taken by {existing.__module__}.{existing.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for module in filter(None, (m.strip() for m in os.environ.get("BENCH_PLUGINS", "").split(","))):
        importlib.import_module(module)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if cls.name not in _REGISTRY:
            register(cls)


def all_methods() -> dict[str, type[Method]]:
    """Every registered method, built-ins first, in registration order."""
    _load_entry_points()
    return dict(_REGISTRY)


def method_names() -> list[str]:
    return list(all_methods())


def get_method(name: str) -> type[Method]:
    methods = all_methods()
    if name not in methods:
        raise UnknownMethodError(f"unknown method {name!r}; known methods: {', '.join(methods)}")
    return methods[name]
