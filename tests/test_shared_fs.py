"""Caches on a shared filesystem (issue 21.4): temporary names unique across hosts, a lock that
works where ``flock`` does not, and leftovers of one node never deleted by another."""
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.files import (atomic_write_text, exclusive_lock, host_name, lock_is_stale, temp_owner,
                         unique_temp_name)

ROOT = Path(__file__).resolve().parents[1]

# Each builder: flock raises ENOLCK (as on Lustre without flock, or NFS without a lock daemon),
# both start at the same moment, and each prints whether it built the entry.
BUILDER = textwrap.dedent("""
    import errno, fcntl, json, sys, time
    from pathlib import Path

    def no_flock(*args, **kwargs):
        raise OSError(errno.ENOLCK, "No locks available")

    fcntl.flock = no_flock
    from bench.data.cache import Item, decode_split

    data, cache, start = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    items = [Item(id=p.name, path=p, label=0) for p in sorted(data.glob("*.png"))]
    while time.time() < start:
        time.sleep(0.001)
    decoded = decode_split(items, 16, cache / "folder-0123456789", "train", data, "folder")
    print(json.dumps({"built": decoded.built, "kept": decoded.meta["kept"],
                      "first": int(decoded.images[0][0, 0, 0])}))
""")


def _images(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((40, 40, 3), 3 * i, np.uint8)).save(folder / f"{i:03d}.png")


def test_two_builders_without_flock_end_with_one_valid_entry(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    _images(data, 60)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_CACHE": str(cache)}
    start = time.time() + 3.0                     # both interpreters are up by then
    procs = [subprocess.Popen([sys.executable, "-c", BUILDER, str(data), str(cache), str(start)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert sorted(r["built"] for r in results) == [False, True]      # built once, the other waited
    assert all(r["kept"] == 60 and r["first"] == 0 for r in results)
    group = cache / "folder-0123456789"
    entries = [p for p in group.iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and (entries[0] / "COMPLETE").is_file()
    assert np.load(entries[0] / "images.npy", mmap_mode="r").shape == (60, 16, 16, 3)
    # no temporary folder left behind and no lock file still claimed
    assert [p.name for p in group.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")] == []


def test_temporary_names_carry_host_pid_and_a_random_part(tmp_path):
    a, b = unique_temp_name("images.npy"), unique_temp_name("images.npy")
    assert a != b and a.startswith(".images.npy.tmp.")
    assert temp_owner(Path(a)) == ("images.npy", host_name(), os.getpid())
    assert temp_owner(Path(".train-k1.tmp4242")) is None            # an old-style name: unknown owner
    atomic_write_text(tmp_path / "x.json", "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.fixture
def no_flock(monkeypatch):
    """Lock files instead of flock, as ``BENCH_LOCKS=file`` asks (e.g. for NFS)."""
    monkeypatch.setenv("BENCH_LOCKS", "file")


def test_lock_file_excludes_and_is_released(tmp_path, no_flock):
    lock = tmp_path / ".e.lock"
    with exclusive_lock(lock) as got:
        assert got and (tmp_path / ".e.lock.held").is_file()
        holder = json.loads((tmp_path / ".e.lock.held").read_text())
        assert holder["host"] == host_name() and holder["pid"] == os.getpid()
        with exclusive_lock(lock, wait=False) as second:
            assert second is False
    assert not (tmp_path / ".e.lock.held").exists()
    with exclusive_lock(lock, wait=False) as again:
        assert again


def test_a_lock_of_a_dead_process_or_without_heartbeat_is_taken_over(tmp_path, no_flock):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    held = tmp_path / ".e.lock.held"
    held.write_text(json.dumps({"host": host_name(), "pid": child.pid, "time": 0, "token": "x"}))
    assert lock_is_stale(held)
    with exclusive_lock(tmp_path / ".e.lock", wait=False) as got:
        assert got and json.loads(held.read_text())["pid"] == os.getpid()
    # another host's lock: alive while its heartbeat is fresh, stale after stale_after seconds
    held.write_text(json.dumps({"host": "other-node", "pid": 1, "time": 0, "token": "y"}))
    assert not lock_is_stale(held, stale_after=60)
    with exclusive_lock(tmp_path / ".e.lock", wait=False, stale_after=60) as got:
        assert got is False
    old = time.time() - 120
    os.utime(held, (old, old))
    with exclusive_lock(tmp_path / ".e.lock", wait=False, stale_after=60) as got:
        assert got
