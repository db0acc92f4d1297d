"""``bench check-plugin``: registration checks and the conformance suite on any method plugin.

The target is a registered name, an entry point or ``BENCH_PLUGINS`` module that was skipped (then
its full error is shown), or ``module[:Class]`` to import (from the current folder too).
"""
from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.errors import UserError

console = Console(soft_wrap=True, highlight=False)


def _show_broken(target: str, source: str, details: str) -> None:
    console.print(f"[red]{target!r} was skipped[/]: {source}", markup=True)
    console.print(details.rstrip(), markup=False)
    sys.exit(1)


def _import_target(target: str):
    """The plugin class named by ``module[:Class]`` (a module with one plugin needs no ``:Class``)."""
    import traceback

    from methods import Method, all_methods
    from methods.registry import import_plugin_module, plugin_classes

    module_name, _, attr = target.partition(":")
    try:
        module = import_plugin_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name.split(".")[0]:
            _show_broken(target, f"importing module {module_name!r} failed", traceback.format_exc())
        raise UserError(f"{target!r} is neither a registered method ({', '.join(all_methods())}) nor an importable "
                        "module; install the plugin, add its folder to PYTHONPATH or run from that folder") from None
    except Exception:  # noqa: BLE001 - the plugin's own import error is what the author needs to see
        _show_broken(target, f"importing module {module_name!r} failed", traceback.format_exc())
    if attr:
        cls = getattr(module, attr, None)
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise UserError(f"{target!r} is not a methods.Method subclass")
        return cls
    found = plugin_classes(module)
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise UserError(f"module {module_name!r} defines {len(found)} Method subclasses with a name ({names}); "
                        f"name one as {module_name}:Class")
    return found[0]


def resolve_plugin(target: str):
    """The class to check: registered, skipped (exits showing the full error), or imported."""
    from methods import all_methods, broken_plugins

    registered = all_methods()
    if target in registered:
        return registered[target]
    broken = broken_plugins().get(target)
    if broken is not None:
        _show_broken(target, broken.source, broken.details)
    return _import_target(target)


def registration_problem(cls) -> str | None:
    """Why ``cls`` cannot be registered (validation or a name clash), or None."""
    from methods import PluginError, all_methods
    from methods.registry import validate

    try:
        validate(cls)
    except PluginError as exc:
        return str(exc)
    taken = all_methods().get(cls.name)
    if taken is not None and taken is not cls:
        return (f"method name {cls.name!r} of {cls.__module__}.{cls.__qualname__} is already taken by "
                f"{taken.__module__}.{taken.__qualname__}; give the plugin another name")
    return None


def check_plugin(
    target: str = typer.Argument(..., help="Method name, or module[:Class] (from the current folder too)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also print the full traceback of each failed check."),
) -> None:
    """Check a plugin: registration, then the conformance suite (shapes, CAM grid, labels, clean Output,
    batching, gradients, alignment, determinism, hooks). A check whose premise failed is not run.
    Exit 1 if anything fails."""
    from bench.metrics.conformance import CheckResult, run_suite

    cls = resolve_plugin(target)
    problem = registration_problem(cls)
    results = [CheckResult("registration (name, title, family, Config)", problem)] + run_suite(cls)
    label = getattr(cls, "name", cls.__qualname__)
    table = Table(title=f"conformance of {label!r} ({cls.__module__}.{cls.__qualname__})")
    table.add_column("check")
    table.add_column("result")
    for result in results:
        shown = {"pass": "[green]pass[/]", "FAIL": f"[red]FAIL[/] {escape(result.reason or '')}",
                 "not run": f"[yellow]{escape(result.reason or '')}[/]"}[result.status]
        table.add_row(result.label, shown)
    # Piped output keeps each reason on one line (rich would wrap it into 80 columns).
    out = console if console.is_terminal else Console(soft_wrap=True, highlight=False, width=10_000)
    out.print(table)
    counts = {status: sum(r.status == status for r in results) for status in ("pass", "FAIL", "not run")}
    out.print(f"{counts['pass']} passed, {counts['FAIL']} failed"
              + (f", {counts['not run']} not run (a check they depend on failed)" if counts["not run"] else ""))
    tracebacks = [r for r in results if r.status == "FAIL" and r.details]
    if verbose:
        for result in tracebacks:
            out.print(f"\n--- {result.label}: traceback ---", markup=False)
            out.print(result.details.rstrip(), markup=False)
    elif tracebacks:
        out.print(f"bench check-plugin {target} --verbose shows the full traceback of each failure")
    if counts["FAIL"] or counts["not run"]:
        sys.exit(1)


def register(app: typer.Typer) -> None:
    app.command("check-plugin")(check_plugin)
