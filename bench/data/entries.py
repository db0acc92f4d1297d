"""Cache entries: one folder per (dataset, split, key), built atomically, listed and pruned safely.

An entry is ``<cache>/<group>/<split>-<key>/`` holding ``images.npy`` (opened memory-mapped by
every trial), its other arrays, ``meta.json`` (dataset, split, key, image size, images...) and
``COMPLETE``, written last. A build goes to a temporary sibling folder under the entry's lock
(``bench.files``: ``flock`` or a lock file; the folder is named by host, pid and a random part, so
builders on different nodes never touch each other's) and is renamed into place, so a reader never
sees half an entry. Entries of other keys are never
touched by a build: switching profiles or landmark variants and back costs nothing.

Opening an entry touches its ``last_used`` file (one ``utime``), which ``bench cache list|prune``
reads. Pruning takes the same lock without waiting (an entry being built is skipped) and renames
the entry away before deleting it: a trial that already mapped its files keeps reading them
(POSIX keeps unlinked files alive), and one that comes later rebuilds the entry.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from bench.files import exclusive_lock, may_clean, temp_owner, unique_temp_name

COMPLETE = "COMPLETE"
LAST_USED = "last_used"
META = "meta.json"


def is_complete(entry: Path) -> bool:
    return (entry / COMPLETE).is_file() and (entry / META).is_file()


def _lock_path(entry: Path) -> Path:
    return entry.parent / f".{entry.name}.lock"


@contextmanager
def entry_lock(entry: Path, wait: bool = True) -> Iterator[bool]:
    """Hold the entry's exclusive lock (``bench.files.exclusive_lock``: ``flock``, or a lock file
    where the filesystem has none); with ``wait=False`` yields False at once when it is held."""
    with exclusive_lock(_lock_path(entry), wait=wait) as got:
        yield got


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(folder: Path) -> None:
    """Rename ``folder`` out of the way (atomic), then delete it."""
    trash = folder.with_name(unique_temp_name(folder.name, "trash"))
    try:
        os.rename(folder, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def ensure(entry: Path, build: Callable[[Path], dict]) -> bool:
    """Build ``entry`` with ``build(tmp_folder) -> meta`` unless it is complete; True if this call built it.

    Concurrent callers wait on the lock and find it complete. Files ``build`` writes are fsynced
    before the ``COMPLETE`` marker, which goes last.
    """
    if is_complete(entry):
        return False
    with entry_lock(entry):
        if is_complete(entry):
            return False
        tmp = entry.with_name(unique_temp_name(entry.name))     # ours alone: no other build is touched
        tmp.mkdir(parents=True)
        try:
            meta = {**build(tmp), "built": time.time()}
            (tmp / META).write_text(json.dumps(meta, indent=1))
            for path in tmp.iterdir():
                _fsync(path)
            (tmp / COMPLETE).write_text("ok\n")
            (tmp / LAST_USED).touch()
            if is_complete(entry):           # published meanwhile by a holder of a lock we could not see
                shutil.rmtree(tmp, ignore_errors=True)
                return False
            if entry.exists():               # torn (no marker): out of the way first
                _discard(entry)
            try:
                os.replace(tmp, entry)
            except OSError:                  # a non-empty folder appeared meanwhile: keep a complete one
                if not is_complete(entry):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
                return False
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return True


def touch(entry: Path) -> None:
    """Record that a trial opened ``entry`` now (for ``bench cache list|prune``)."""
    try:
        (entry / LAST_USED).touch()
    except OSError:                          # a read-only cache only loses the statistic
        pass


def read_meta(entry: Path) -> dict:
    return json.loads((entry / META).read_text())


# --- listing and pruning ----------------------------------------------------------------------------

@dataclass
class Entry:
    path: Path
    dataset: str
    split: str
    key: str
    image_size: int
    images: int
    bytes: int
    last_used: float
    root: str = ""              # data root that built it ("" for entries older than this field)
    image_set: str = ""         # folder under the root holding its images (e.g. Image/original)
    options: dict | None = None # dataset options that chose the images, when recorded
    built: float = 0.0          # when it was built (0: unknown)


def image_set(paths, root: Path) -> str:
    """The deepest folder under ``root`` holding all ``paths`` ("." when they share none): what tells
    a RAF-DB ``Image/aligned`` entry from an ``Image/original`` one in ``bench cache list``."""
    common: list[str] | None = None
    for path in paths:
        try:
            parts = list(Path(path).relative_to(root).parts[:-1])
        except ValueError:
            parts = list(Path(path).parts[:-1])
        if common is None:
            common = parts
        else:
            n = 0
            while n < min(len(common), len(parts)) and common[n] == parts[n]:
                n += 1
            del common[n:]
        if not common:
            break
    return "/".join(common) if common else "."


def _disk_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            st = path.lstat()
        except OSError:
            continue
        total += getattr(st, "st_blocks", 0) * 512 or st.st_size
    return total


def _under(path: str, root: Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(root).expanduser().resolve())
        return True
    except ValueError:
        return False


def list_entries(root: Path, dataset: str | None = None, data_root: Path | None = None) -> list[Entry]:
    """Every complete entry under the cache ``root``, least recently used first; only ``dataset``'s,
    and only those built from data at or under ``data_root``, when given."""
    out = []
    for meta_path in sorted(Path(root).glob(f"*/*/{META}")):
        entry = meta_path.parent
        if entry.name.startswith(".") or not is_complete(entry):
            continue
        try:
            meta = read_meta(entry)
            used = (entry / LAST_USED).stat().st_mtime if (entry / LAST_USED).exists() else meta_path.stat().st_mtime
            built = float(meta.get("built") or (entry / COMPLETE).stat().st_mtime)
        except (OSError, ValueError):
            continue
        if "split" not in meta or "key" not in meta:
            continue
        name = meta.get("dataset", entry.parent.name)
        if dataset is not None and name != dataset:
            continue
        if data_root is not None and not (meta.get("root") and _under(meta["root"], data_root)):
            continue
        out.append(Entry(entry, name, meta["split"], meta["key"], int(meta.get("image_size", 0)),
                         int(meta.get("kept", meta.get("images", 0))), _disk_bytes(entry), used,
                         str(meta.get("root", "")), str(meta.get("image_set", "")), meta.get("options"), built))
    return sorted(out, key=lambda e: e.last_used)


def _entry_of(leftover: Path) -> Path:
    """The entry a temporary or trash folder belongs to (new names and the old ``.<entry>.tmp<pid>``)."""
    owner = temp_owner(leftover)
    if owner is not None:
        return leftover.with_name(owner[0])
    return leftover.with_name(leftover.name[1:].split(".tmp")[0].split(".trash")[0])


def stale_temporaries(root: Path) -> list[Path]:
    """Leftovers of interrupted builds and deletions that are safe to delete: the entry's lock is
    free and the leftover's owner is a dead process on this host (or, from another host, it has not
    changed for a day: ``bench.files.may_clean``). A build in progress elsewhere is never listed."""
    found = []
    for path in Path(root).glob("*/.*"):
        if not path.is_dir() or not (".tmp" in path.name or ".trash" in path.name):
            continue
        if not may_clean(path):
            continue
        with entry_lock(_entry_of(path), wait=False) as free:
            if free:
                found.append(path)
    return found


def select_for_pruning(entries: list[Entry], older_than: float | None, keep_bytes: int | None,
                       now: float | None = None) -> list[Entry]:
    """Entries unused for more than ``older_than`` seconds, then least recently used ones until the
    rest fits in ``keep_bytes``. ``entries`` must be sorted least recently used first."""
    now = time.time() if now is None else now
    chosen = [e for e in entries if older_than is not None and now - e.last_used > older_than]
    if keep_bytes is not None:
        left = [e for e in entries if e not in chosen]
        size = sum(e.bytes for e in left)
        for e in left:
            if size <= keep_bytes:
                break
            chosen.append(e)
            size -= e.bytes
    return chosen


def remove(entry: Path) -> bool:
    """Delete ``entry`` unless a build holds its lock; True when it was removed. The lock file
    stays: unlinking it would let a waiting builder and a later one both hold "the lock"."""
    with entry_lock(entry, wait=False) as free:
        if not free:
            return False
        _discard(entry)
    return True
