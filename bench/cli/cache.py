"""``bench cache list|prune``: the decoded-image cache entries, and removing them by age and size.

Every (dataset, split, preprocessing) key has its own entry (``bench/data/entries.py``), so the
cache grows as profiles and variants are tried. ``list`` tells entries apart by the data root that
built them, the image set (the folder under that root, e.g. RAF-DB's ``Image/original``), the image
size and the decode key; ``prune`` removes the entries unused for longest, or (``--root``) those of
one copy of the data. Entries written before these fields existed show "-". An entry being built is skipped (its lock is held); removal is a rename first, so a trial never
opens half an entry, and one that already has it open keeps reading it.
"""
from __future__ import annotations

import re
import shutil
import time
from typing import Optional

import typer
from rich.console import Console

from bench.errors import UserError

console = Console(stderr=True, soft_wrap=True, highlight=False)
stdout = Console(highlight=False, soft_wrap=True)
cache_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Show or prune the decoded-image cache ($BENCH_CACHE or ~/.cache/au-cam-bench).")

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")


def parse_duration(text: str) -> float:
    """'30d', '12h', '90m', '45s', '2w' -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text.lower())
    if not match:
        raise UserError(f"bad --older-than {text!r}: expected a number and a unit s, m, h, d or w (e.g. 30d)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(text: str) -> int:
    """'50G', '500M', '1.5T', '2048' (bytes) -> bytes (binary units; a trailing B or iB is allowed)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not match:
        raise UserError(f"bad --keep-size {text!r}: expected a size such as 50G, 500M or 1.5T")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def human_age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit} ago"
    return f"{max(seconds, 0):.0f}s ago"


def _images(e) -> str:
    """The entry's image set and the dataset options that chose it ("-" where an old entry lacks them)."""
    parts = [e.image_set] if e.image_set else []
    if e.options:
        parts.append(",".join(f"{k}={v}" for k, v in sorted(e.options.items())))
    return " ".join(parts) or "-"


def _table(found, now: float, title: str) -> str:
    """Plain aligned columns (one entry a line, never wrapped), under ``title``."""
    header = ("dataset", "split", "data root", "images", "px", "count", "key", "size on disk", "built",
              "last used")
    rows = [(e.dataset, e.split, e.root or "-", _images(e), str(e.image_size), str(e.images), e.key,
             human_size(e.bytes), human_age(now - e.built) if e.built else "-",
             f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(e.last_used))} ({human_age(now - e.last_used)})")
            for e in found]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {4, 5, 7}
    lines = [title] + ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                       .rstrip() for r in ([header, *rows] if rows else [])]
    return "\n".join(lines)


@cache_app.command("list")
def list_command(
    dataset: Optional[str] = typer.Option(None, help="Only this dataset's entries."),
    root: Optional[str] = typer.Option(None, "--root", help="Only entries decoded from data at or under this folder."),
) -> None:
    """Cache entries, least recently used first: dataset, split, data root, image set, image size,
    images, decode key, size on disk, when built and last used."""
    from bench.data.cache import cache_root
    from bench.data.entries import list_entries

    where = cache_root()
    found = list_entries(where, dataset, _root(root))
    now = time.time()
    stdout.print(_table(found, now, f"{where}: {len(found)} entries, {human_size(sum(e.bytes for e in found))}"))


def _root(root: Optional[str]):
    from pathlib import Path

    return None if root is None else Path(root).expanduser().resolve()


@cache_app.command("prune")
def prune_command(
    older_than: Optional[str] = typer.Option(None, "--older-than", help="Remove entries unused for longer (30d, 12h)."),
    keep_size: Optional[str] = typer.Option(None, "--keep-size", help="Then remove least recently used entries "
                                            "until the rest fits (50G)."),
    dataset: Optional[str] = typer.Option(None, help="Only this dataset's entries."),
    root: Optional[str] = typer.Option(None, "--root", help="Only entries decoded from data at or under this folder "
                                       "(with neither --older-than nor --keep-size: all of them)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be removed; remove nothing."),
) -> None:
    """Remove cache entries by age and total size (entries being built are left alone)."""
    if older_than is None and keep_size is None and root is None:
        raise UserError("bench cache prune needs --older-than AGE (e.g. 30d), --keep-size SIZE (e.g. 50G) "
                        "and/or --root DIR (the entries decoded from that data)")
    age = parse_duration(older_than) if older_than is not None else None
    keep = parse_size(keep_size) if keep_size is not None else None
    if root is not None and age is None and keep is None:
        age = -1.0                                  # --root alone: every entry of that data
    from bench.data.cache import cache_root
    from bench.data.entries import list_entries, remove, select_for_pruning, stale_temporaries

    where = cache_root()
    now = time.time()
    chosen = select_for_pruning(list_entries(where, dataset, _root(root)), age, keep, now)
    stdout.print(_table(chosen, now, f"{'would remove' if dry_run else 'removing'} {len(chosen)} entries, "
                                     f"{human_size(sum(e.bytes for e in chosen))}"))
    leftovers = [] if dataset is not None or root is not None else stale_temporaries(where)
    if dry_run:
        if leftovers:
            stdout.print(f"and {len(leftovers)} leftover(s) of interrupted builds")
        return
    busy = [e for e in chosen if not remove(e.path)]
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    for e in busy:
        console.print(f"skipped {e.dataset} {e.split} {e.key}: being built right now")
    stdout.print(f"removed {len(chosen) - len(busy)} entries"
                 + (f" and {len(leftovers)} leftover(s) of interrupted builds" if leftovers else ""))
