"""Files that readers can trust, on a local disk or a filesystem shared by many nodes.

Every file the harness writes (records, models, caches, reports) goes through ``atomic_write``:
written to a temporary name beside the target, flushed and fsynced, then renamed, so a reader never
sees half a file and nothing finished is lost if the process dies.

Shared filesystems (NFS, Lustre) add two hazards, handled here once for the whole package:

- pids repeat across nodes and containers, so every temporary name carries the host, the pid and a
  random part (``unique_temp_name``); ``temp_owner`` reads them back, and ``may_clean`` says whether
  a leftover can be deleted (its owner is a dead process on this host, or it is very old), so one
  node never deletes another's build in progress;
- ``flock`` raises on some mounts (Lustre without ``flock``, NFS without a lock daemon) and is
  node-local on others. ``exclusive_lock`` uses it when it works and otherwise an atomically created
  lock file (``O_CREAT | O_EXCL``) that records its holder (host, pid, time) and is kept fresh by
  a heartbeat; such a lock is stale, and taken over, when its heartbeat is older than
  ``stale_after`` seconds or its holder is a dead process on this host. ``BENCH_LOCKS=file`` forces
  lock files (for NFS, where ``flock`` would lock one node only). Lock files are never unlinked by
  anyone but their holder: unlinking a lock another process waits on lets two processes hold it.
"""
from __future__ import annotations

import errno
import json
import os
import secrets
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

STALE_AFTER = 120.0            # seconds without a heartbeat after which a lock file is abandoned
LEFTOVER_AGE = 86400.0         # seconds after which another host's temporary counts as abandoned
_POLL = (0.02, 0.5)            # first and longest wait between attempts on a busy lock


def process_umask() -> int:
    """The umask, read without changing it (``os.umask`` can only be read by setting it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --- temporary names ------------------------------------------------------------------------------

def host_name() -> str:
    """This host's name, made safe for a file name (no separators)."""
    name = socket.gethostname() or "host"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:64]


def unique_temp_name(name: str, kind: str = "tmp") -> str:
    """``.<name>.<kind>.<host>.<pid>.<random>``: unique across hosts, pids and calls; hidden."""
    return f".{name}.{kind}.{host_name()}.{os.getpid()}.{secrets.token_hex(4)}"


def temp_owner(path: Path) -> tuple[str, str, int] | None:
    """(target name, host, pid) of a name made by ``unique_temp_name``; None for any other name."""
    parts = Path(path).name.split(".")
    if len(parts) < 6 or parts[0] != "" or not parts[-2].isdigit():
        return None
    return ".".join(parts[1:-4]), parts[-3], int(parts[-2])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # alive, owned by someone else
        return True
    return True


def may_clean(path: Path, max_age: float = LEFTOVER_AGE, now: float | None = None) -> bool:
    """Whether a leftover temporary may be deleted: its owner is a dead process on this host, or
    (another host's, or an old-style name) it has not changed for ``max_age`` seconds."""
    owner = temp_owner(path)
    if owner is not None and owner[1] == host_name():
        return not pid_alive(owner[2])
    try:
        age = (time.time() if now is None else now) - Path(path).lstat().st_mtime
    except OSError:
        return False
    return age > max_age


# --- atomic writes --------------------------------------------------------------------------------

def atomic_write(path: Path, write) -> None:
    """Write through ``write(binary file)`` to a temporary name beside ``path``, then rename.

    The file gets the permissions of a plain ``open`` (0666 minus the umask), so collaborators on a
    shared results folder can read it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(unique_temp_name(path.name))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode()))


# --- locks ----------------------------------------------------------------------------------------

class _Heartbeat(threading.Thread):
    """Refreshes a held lock file's mtime so that waiting processes know its holder is alive."""

    def __init__(self, path: Path, every: float):
        super().__init__(daemon=True, name=f"heartbeat {path.name}")
        self.path, self.every, self.stop = path, every, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                os.utime(self.path)
            except OSError:
                return


def _holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def lock_is_stale(path: Path, stale_after: float = STALE_AFTER, now: float | None = None) -> bool:
    """A lock file whose holder is a dead process on this host, or whose heartbeat stopped."""
    holder = _holder(path)
    if holder and holder.get("host") == host_name() and isinstance(holder.get("pid"), int):
        if not pid_alive(holder["pid"]):
            return True
    try:
        beat = path.stat().st_mtime
    except OSError:
        return False
    return (time.time() if now is None else now) - beat > stale_after


def _break_stale(path: Path, stale_after: float) -> None:
    """Take a stale lock file away (rename first, so only one of several breakers succeeds); a
    fresh lock renamed by mistake (taken over between our check and our rename) is put back."""
    seen = _holder(path)
    if not lock_is_stale(path, stale_after):
        return
    grave = path.with_name(unique_temp_name(path.name, "stale"))
    try:
        os.rename(path, grave)
    except FileNotFoundError:
        return
    if _holder(grave) != seen:
        try:
            os.link(grave, path)                 # put it back unless someone holds a newer one
        except OSError:
            pass
    grave.unlink(missing_ok=True)


def _try_create(path: Path) -> str | None:
    """Create the lock file atomically; its token when this call holds it, None when taken."""
    token = secrets.token_hex(8)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w") as fh:
        json.dump({"host": host_name(), "pid": os.getpid(), "time": time.time(), "token": token}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return token


@contextmanager
def _file_lock(path: Path, wait: bool, stale_after: float) -> Iterator[bool]:
    held = path.with_name(path.name + ".held")
    delay = _POLL[0]
    while True:
        token = _try_create(held)
        if token is not None:
            break
        _break_stale(held, stale_after)
        if not wait:
            token = _try_create(held)
            if token is None:
                yield False
                return
            break
        time.sleep(delay)
        delay = min(_POLL[1], delay * 1.5)
    beat = _Heartbeat(held, max(0.5, stale_after / 4))
    beat.start()
    try:
        yield True
    finally:
        beat.stop.set()
        beat.join()
        holder = _holder(held)
        if holder is not None and holder.get("token") == token:
            held.unlink(missing_ok=True)


def _flock_usable() -> bool:
    return os.environ.get("BENCH_LOCKS", "").strip().lower() != "file"


@contextmanager
def exclusive_lock(path: Path, wait: bool = True, stale_after: float = STALE_AFTER) -> Iterator[bool]:
    """Hold the exclusive lock named ``path``; with ``wait=False`` yield False at once when it is held.

    ``flock`` on ``path`` where the filesystem supports it; otherwise (``flock`` raises, or
    ``BENCH_LOCKS=file``) the lock file ``<path>.held`` described in the module docstring.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:                         # no flock (Windows): lock files
        fcntl = None
    if fcntl is None or not _flock_usable():
        with _file_lock(path, wait, stale_after) as got:
            yield got
        return
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        except OSError as exc:                  # ENOLCK, ENOSYS, EOPNOTSUPP...: no flock on this mount
            if exc.errno in (errno.EINTR,):
                raise
            fh.close()
            with _file_lock(path, wait, stale_after) as got:
                yield got
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
