"""``bench check-plugin``: run the conformance suite on any installed method plugin."""
from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console
from rich.table import Table

from bench.errors import UserError

console = Console(soft_wrap=True, highlight=False)


def _resolve(target: str) -> str:
    """A registered name, or ``package.module[:Class]`` to import (it registers its plugin)."""
    from methods import Method, get_method, register

    if ":" not in target and "." not in target:
        get_method(target)
        return target
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"cannot import plugin module {module_name!r} ({exc}); is it installed or on PYTHONPATH?") from None
    if not attr:
        found = [v for v in vars(module).values()
                 if isinstance(v, type) and issubclass(v, Method) and v.__module__ == module.__name__]
        if len(found) != 1:
            raise UserError(f"module {module_name!r} defines {len(found)} Method subclasses; name one as {module_name}:Class")
        cls = found[0]
    else:
        cls = getattr(module, attr, None)
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise UserError(f"{target!r} is not a methods.Method subclass")
    try:
        if get_method(cls.name) is not cls:
            raise UserError(f"plugin name {cls.name!r} is already taken by another method")
    except UserError:
        raise
    except ValueError:
        register(cls)
    return cls.name


def check_plugin(target: str = typer.Argument(..., help="Method name, or package.module[:Class].")) -> None:
    """Run the conformance suite (shapes, CAM, batching, gradients, alignment, determinism, hooks)."""
    from bench.conformance import run_checks

    name = _resolve(target)
    results = run_checks(name)
    table = Table(title=f"conformance of {name!r}")
    table.add_column("check")
    table.add_column("result")
    for label, problem in results:
        table.add_row(label, "[green]pass[/]" if problem is None else f"[red]FAIL[/] {problem}")
    console.print(table)
    failed = sum(problem is not None for _, problem in results)
    console.print(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        sys.exit(1)


def register(app: typer.Typer) -> None:
    app.command("check-plugin")(check_plugin)
