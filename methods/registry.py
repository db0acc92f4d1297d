"""Method registry: a decorator for built-ins, an entry-point group for third-party plugins.

Plugins that are not packaged yet can be loaded by module name with the environment variable
``BENCH_PLUGINS=pkg.module,other.module``; a module that is not importable otherwise is looked for
in the current folder, and that folder is added to ``PYTHONPATH`` so Ray workers find it too.

Registration checks what the harness relies on (a lower-case name, a ``title`` of the class's own,
a dataclass ``Config`` with defaults, a known family). An installed plugin that fails to import or
to register is skipped with one warning line naming its distribution, entry point and reason, so
one broken plugin never stops the others or any command that does not need it;
``broken_plugins()`` keeps the full traceback for ``bench check-plugin``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import logging
import os
import re
import sys
import traceback
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, entry_points, packages_distributions, version as dist_version
from pathlib import Path

from methods.base import Method
from methods.source import normalised_tree, source_digest

ENTRY_POINT_GROUP = "au_cam_bench.methods"
PLUGINS_ENV = "BENCH_PLUGINS"
#: Registry keys: lower case, no separators the CLI uses (``,`` in --methods, ``.`` in --set keys).
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]*")
FAMILIES = ("cnn", "transformer")
CAM_KINDS = ("class", "class-agnostic")
THIS_DISTRIBUTION = "au-cam-bench"

_REGISTRY: dict[str, type[Method]] = {}
_ORIGINS: dict[type[Method], tuple[str, str, str]] = {}   # entry-point classes: (distribution, version, source)
_BROKEN: dict[str, "BrokenPlugin"] = {}
_entry_points_loaded = False


class UnknownMethodError(ValueError):
    pass


class PluginError(ValueError):
    """A plugin class that cannot be registered (the message is one line: what and how to fix)."""


@dataclass(frozen=True)
class BrokenPlugin:
    """An installed plugin that was skipped: where it came from, why (one line) and the traceback."""

    source: str          # "entry point mycam = mypkg.mycam:MyCam of mypkg 1.0" or "BENCH_PLUGINS module mymod"
    reason: str
    details: str         # the full traceback
    keys: tuple[str, ...]  # names that ``bench check-plugin`` may be given for it


def _log() -> logging.Logger:
    """A logger that prints one line to the current stderr, whatever logging setup the host has."""
    logger = logging.getLogger("au_cam_bench.plugins")
    if not logger.handlers:
        class _Stderr(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                print(self.format(record), file=sys.stderr)

        handler = _Stderr()
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    return logger


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def validate(cls: object) -> None:
    """Raise ``PluginError`` (one line) unless ``cls`` is a Method subclass the harness can use."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise PluginError(f"{cls!r} is not a subclass of methods.Method")
    where = cls.__qualname__
    own = vars(cls)
    name = own.get("name")
    if name is None:
        inherited = getattr(cls, "name", None)
        hint = f" (it inherits {inherited!r})" if inherited else ""
        raise PluginError(f"{where} needs a name of its own{hint}: set name = 'lowercase_name' on the class")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise PluginError(f"{where}.name = {name!r} must be lower case: a letter, then letters, digits, '_' or '-'")
    title = own.get("title")
    if not isinstance(title, str) or not title.strip():
        inherited = getattr(cls, "title", None)
        hint = f" (it inherits {inherited!r}, which would label two rows alike)" if inherited else ""
        raise PluginError(f"{where} needs a title of its own for tables{hint}: set title = '...' on the class")
    if cls.family not in FAMILIES:
        raise PluginError(f"{where}.family = {cls.family!r} must be one of {', '.join(FAMILIES)}")
    if cls.cam_kind not in CAM_KINDS:
        raise PluginError(f"{where}.cam_kind = {cls.cam_kind!r} must be one of {', '.join(CAM_KINDS)}")
    layers = cls.alignment_layers
    if not (isinstance(layers, tuple) and layers and all(isinstance(x, str) for x in layers)):
        raise PluginError(f"{where}.alignment_layers = {layers!r} must be a non-empty tuple of feature names")
    if cls.trains_like is not None and not isinstance(cls.trains_like, str):
        raise PluginError(f"{where}.trains_like = {cls.trains_like!r} must be a method name or None")
    if cls.version is not None and not isinstance(cls.version, str):
        raise PluginError(f"{where}.version = {cls.version!r} must be a string or None")
    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        raise PluginError(f"{where}.Config must be a @dataclass(frozen=True) class of options with defaults")
    try:
        config()
    except TypeError as exc:
        raise PluginError(f"{where}.Config() fails ({exc}): give every option a default") from None


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a Method subclass available by its ``name`` (checked, see ``validate``)."""
    validate(cls)
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise PluginError(f"method name {cls.name!r} of {_qualname(cls)} is already taken by {_qualname(existing)}; "
                          "give the plugin another name")
    _REGISTRY[cls.name] = cls
    return cls


def _skip(source: str, exc: BaseException, keys: tuple[str, ...]) -> None:
    reason = str(exc) if isinstance(exc, PluginError) else " ".join(f"{type(exc).__name__}: {exc}".split())
    if len(reason) > 300:
        reason = reason[:297] + "..."
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    broken = BrokenPlugin(source, reason, details, tuple(k for k in keys if k))
    for key in broken.keys:
        _BROKEN.setdefault(key, broken)
    # Point at a key that reaches this plugin, not a registered method of the same name.
    key = next((k for k in broken.keys if k not in _REGISTRY), broken.keys[-1] if broken.keys else "")
    _log().warning("plugin skipped: %s: %s (bench check-plugin %s shows the full error)", source, reason, key)


def import_plugin_module(module: str):
    """Import ``module``; if it is not importable, try the current folder, and if that works put the
    folder on ``PYTHONPATH`` so processes started from here (Ray workers) import it as well."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        here = os.getcwd()
        if exc.name != top or here in sys.path:
            raise
    sys.path.append(here)
    try:
        loaded = importlib.import_module(module)
    except BaseException:
        sys.path.remove(here)
        raise
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if here not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([*paths, here])
    return loaded


def plugin_classes(module) -> list[type[Method]]:
    """The plugins a module defines: Method subclasses of its own that have a name of their own
    (abstract helper bases such as ``PostHocCAM`` have none)."""
    return [v for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, Method) and v.__module__ == module.__name__
            and "name" in vars(v)]


def _load_plugin_target(target: str) -> None:
    """``module`` (registers what its import registers, else every plugin class it defines) or ``module:Class``."""
    module_name, _, attr = target.partition(":")
    before = set(_REGISTRY.values())
    module = import_plugin_module(module_name)
    if attr:
        found = getattr(module, attr, None)
        if found is None:
            raise PluginError(f"module {module_name!r} has no attribute {attr!r}")
        classes = [found]
    elif set(_REGISTRY.values()) - before:      # its @register calls did the work
        classes = []
    else:
        classes = plugin_classes(module)
        if not classes:
            raise PluginError(f"module {module_name!r} defines no Method subclass with a name of its own")
    for cls in classes:
        register(cls)


def _load_modules_from_env() -> None:
    for target in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            _load_plugin_target(target)
        except Exception as exc:  # noqa: BLE001 - a broken plugin is skipped, the others load
            _skip(f"{PLUGINS_ENV} module {target!r}", exc, (target, target.partition(":")[0]))


def _load_entry_point(ep) -> None:
    dist = getattr(ep, "dist", None)
    where = f"{dist.metadata['Name'] or dist.name} {dist.version}" if dist is not None else "an unknown distribution"
    source = f"entry point {ep.name} = {ep.value} of {where}"
    attr = ep.value.partition(":")[2]
    keys = (ep.name, ep.value, ep.value.partition(":")[0])
    try:
        cls = ep.load()
        validate(cls)
        # (a class that its own @register registered on import keeps that name)
        if cls.name != ep.name and _REGISTRY.get(cls.name) is not cls:
            raise PluginError(f"the entry point is named {ep.name!r} but {attr or ep.value}.name is {cls.name!r}; "
                              "name the entry point like the method")
        register(cls)
    except Exception as exc:  # noqa: BLE001 - a broken plugin is skipped, the others load
        _skip(source, exc, keys)
        return
    if dist is not None:     # else plugin_origin falls back to the module's distribution or source hash
        _ORIGINS[cls] = (dist.metadata["Name"] or dist.name, dist.version, f"entry point {ep.name} = {ep.value}")


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    _load_modules_from_env()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _load_entry_point(ep)


def all_methods() -> dict[str, type[Method]]:
    """Every registered method, built-ins first, in registration order."""
    _load_entry_points()
    return dict(_REGISTRY)


def method_names() -> list[str]:
    return list(all_methods())


def broken_plugins() -> dict[str, BrokenPlugin]:
    """Skipped plugins, keyed by every name they may be asked for (entry-point name, value, module)."""
    _load_entry_points()
    return dict(_BROKEN)


def get_method(name: str) -> type[Method]:
    methods = all_methods()
    if name not in methods:
        broken = _BROKEN.get(name)
        if broken is not None:
            raise UnknownMethodError(f"method {name!r} is not available: its plugin was skipped ({broken.reason}); "
                                     f"bench check-plugin {name} shows the full error")
        raise UnknownMethodError(f"unknown method {name!r}; known methods: {', '.join(methods)}")
    return methods[name]


# --- where a plugin comes from (part of every result's identity) --------------------------------
def _source_digest(module_name: str) -> str:
    """sha256 of the plugin's normalised source (``source.py``): the whole top-level package when it is
    one, else the module file."""
    top = sys.modules.get(module_name.split(".")[0])
    module = sys.modules.get(module_name)
    if top is not None and getattr(top, "__path__", None) and getattr(top, "__file__", None):
        files = sorted(Path(top.__file__).parent.rglob("*.py"))
        root = Path(top.__file__).parent
    elif module is not None and getattr(module, "__file__", None):
        files = [Path(module.__file__)]
        root = files[0].parent
    else:
        raise PluginError(f"cannot version plugin module {module_name!r}: it has no source file; "
                          "set a version = '...' class attribute on the plugin")
    digest = hashlib.sha256()
    for file in files:      # normalised: a comment or docstring edit is not a new version
        try:
            text = source_digest(normalised_tree(file.read_bytes(), str(file))).encode()
        except SyntaxError:
            text = file.read_bytes()
        digest.update(str(file.relative_to(root)).encode() + b"\0" + text + b"\0")
    return digest.hexdigest()[:12]


@lru_cache(maxsize=None)
def _module_origin(module_name: str) -> tuple[str, str, str]:
    top = module_name.split(".")[0]
    if top == "methods":
        try:
            return THIS_DISTRIBUTION, dist_version(THIS_DISTRIBUTION), "built-in"
        except PackageNotFoundError:
            return THIS_DISTRIBUTION, f"src-{_source_digest(module_name)}", "built-in"
    for dist in packages_distributions().get(top, []):
        try:
            return dist, dist_version(dist), f"module {module_name}"
        except PackageNotFoundError:
            continue
    return f"unpackaged:{module_name}", f"src-{_source_digest(module_name)}", f"module {module_name}"


def plugin_origin(cls: type[Method]) -> dict[str, str]:
    """{"distribution", "version", "source"} of a method class, for trial ids and result rows.

    Built-ins: this package and its version. Entry-point plugins: the entry point's distribution.
    Imported modules (``BENCH_PLUGINS``, ``bench check-plugin pkg.mod``): the distribution that
    provides the module, else ``unpackaged:<module>`` with a hash of its source as the version. A
    ``version`` class attribute, when set, replaces the version.
    """
    distribution, version, source = _ORIGINS.get(cls) or _module_origin(cls.__module__)
    if cls.version is not None:
        version = cls.version
    return {"distribution": distribution, "version": version, "source": source}
