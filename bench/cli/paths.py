"""Paths and options the commands share: the data root (absolute, since Ray runs trials elsewhere)
and a word on options that a command line sets for methods it does not run."""
from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from bench.errors import UserError

console = Console(stderr=True, soft_wrap=True)


def absolute_data_root(overrides: tuple) -> tuple:
    """A relative ``--set data.root`` made absolute here: Ray runs each trial in a folder of its own."""
    return tuple((key, str(Path(value).expanduser().resolve()))
                 if key == "data.root" and isinstance(value, str) and value.strip() else (key, value)
                 for key, value in overrides)


def data_root_override(data_root: Path | None, datasets: list[str], overrides: tuple) -> tuple:
    """``data.root`` as an absolute path, from --data-root or $BENCH_DATA, for datasets that read
    files: Ray workers run in other folders (and on other nodes, with other environments), and the
    root is part of each trial's identity."""
    from bench.data.cache import CATALOGS

    if data_root is not None:
        if data_root.exists() and not data_root.is_dir():
            raise UserError(f"--data-root {data_root} is a file; point it at the folder that holds the dataset")
        return (("data.root", str(data_root.expanduser().resolve())),)
    if any(key == "data.root" for key, _ in overrides) or not any(d in CATALOGS for d in datasets):
        return ()
    env = os.environ.get("BENCH_DATA", "").strip()
    return (("data.root", str(Path(env).expanduser().resolve())),) if env else ()


def warn_unused_method_options(overrides: tuple, methods: list[str]) -> None:
    """``--set methods.gradcam.target_layer=…`` with ``--methods cam`` has no effect (the options are
    still checked for their names and types): say so instead of accepting it silently."""
    from methods import get_method

    running = set(methods) | {get_method(m).train_group() for m in methods}
    unused = sorted({key.split(".")[1] for key, _ in overrides
                     if key.startswith("methods.") and key.count(".") >= 2 and key.split(".")[1] not in running})
    if unused:
        console.print(f"[yellow]warning:[/] options for {', '.join(unused)} have no effect: "
                      f"{'it is' if len(unused) == 1 else 'they are'} not in this run (--methods)", highlight=False)
