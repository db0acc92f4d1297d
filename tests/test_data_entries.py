"""Cache entries: atomic builds, one per key, last-used stamps, list/prune safe against builds in progress."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench.cli.cache import parse_duration, parse_size
from bench.data import entries
from bench.data.cache import Item, decode_split
from bench.data.entries import Entry, ensure, entry_lock, list_entries, remove, select_for_pruning, stale_temporaries
from bench.errors import UserError
from bench.files import host_name


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))


def make_items(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.fromarray(np.full((10, 10, 3), 20 * i, np.uint8)).save(path)
        items.append(Item(id=path.name, path=path, label=i % 7))
    return items


def test_a_failed_build_leaves_nothing_and_a_good_one_is_built_once(tmp_path):
    entry = tmp_path / "group" / "train-abc"

    def broken(tmp):
        (tmp / "images.npy").write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        ensure(entry, broken)
    assert not entry.exists() and [p.name for p in entry.parent.iterdir()] == [".train-abc.lock"]
    calls = []

    def good(tmp):
        calls.append(1)
        (tmp / "images.npy").write_bytes(b"x")
        return {"dataset": "d", "split": "train", "key": "abc", "image_size": 8, "images": 1}

    assert ensure(entry, good) and not ensure(entry, good) and len(calls) == 1
    assert (entry / "COMPLETE").is_file() and (entry / "last_used").is_file()


def test_list_reports_each_entry_and_opening_touches_last_used(tmp_path):
    items = make_items(tmp_path / "data", 5)
    folder = tmp_path / "cache" / "folder-0123456789"
    a = decode_split(items, 8, folder, "train", tmp_path / "data", "folder")
    b = decode_split(items, 4, folder, "train", tmp_path / "data", "folder")      # another key, kept beside
    os.utime(a.folder / "last_used", (time.time() - 86400 * 40,) * 2)
    found = list_entries(tmp_path / "cache")
    assert [(e.dataset, e.split, e.image_size, e.images) for e in found] == [("folder", "train", 8, 5),
                                                                             ("folder", "train", 4, 5)]
    assert found[0].key == a.meta["key"] and found[0].bytes >= 5 * 8 * 8 * 3
    decode_split(items, 8, folder, "train", tmp_path / "data", "folder")           # a trial opens it again
    assert [e.image_size for e in list_entries(tmp_path / "cache")] == [4, 8]      # now the most recent
    assert b.folder.exists()


def test_selection_by_age_then_by_size():
    now = 1_000_000.0
    day = 86400.0
    found = [Entry(None, "a", "train", str(i), 8, 1, size, now - age * day)
             for i, (size, age) in enumerate([(50, 40), (30, 20), (20, 10), (10, 1)])]
    assert [e.key for e in select_for_pruning(found, 30 * day, None, now)] == ["0"]
    assert [e.key for e in select_for_pruning(found, None, 35, now)] == ["0", "1"]          # 110 -> 30 left
    assert [e.key for e in select_for_pruning(found, 30 * day, 60, now)] == ["0"]           # 60 left already
    assert select_for_pruning(found, None, 1000, now) == []


def test_remove_skips_an_entry_being_built_and_a_removed_entry_is_rebuilt(tmp_path):
    items = make_items(tmp_path / "data", 4)
    folder = tmp_path / "cache" / "folder-0123456789"
    first = decode_split(items, 8, folder, "train", tmp_path / "data", "folder")
    pixels = np.asarray(first.images)
    with entry_lock(first.folder):                         # a build in progress holds the lock
        assert not remove(first.folder)
    assert (first.folder / "COMPLETE").is_file()
    assert remove(first.folder) and not first.folder.exists()
    np.testing.assert_array_equal(np.asarray(first.images), pixels)   # an open mapping keeps reading (POSIX)
    again = decode_split(items, 8, folder, "train", tmp_path / "data", "folder")
    assert again.built and again.folder == first.folder


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leftovers_are_cleaned_only_when_their_owner_is_gone(tmp_path):
    """A leftover is deleted when its builder (host + pid in its name) is a dead process on this
    host, or another host's and a day old; never while the entry's lock is held."""
    group = tmp_path / "cache" / "synthetic"
    me = host_name()
    dead = group / f".train-k1.tmp.{me}.{_dead_pid()}.00ff00ff"
    alive = group / f".train-k2.tmp.{me}.{os.getpid()}.00ff00ff"
    elsewhere = group / ".train-k3.tmp.other-node.4242.00ff00ff"
    old_elsewhere = group / ".train-k4.trash.other-node.4242.00ff00ff"
    legacy = group / ".train-k5.tmp4242"
    for path in (dead, alive, elsewhere, old_elsewhere, legacy):
        path.mkdir(parents=True)
    day_ago = time.time() - 2 * 86400
    os.utime(old_elsewhere, (day_ago, day_ago))
    assert sorted(stale_temporaries(tmp_path / "cache")) == sorted([dead, old_elsewhere])
    with entry_lock(group / "train-k1"):
        assert stale_temporaries(tmp_path / "cache") == [old_elsewhere]


def test_cli_list_and_prune(tmp_path):
    from bench.cli.main import app

    items = make_items(tmp_path / "data", 3)
    folder = tmp_path / "cache" / "folder-0123456789"
    old = decode_split(items, 8, folder, "test", tmp_path / "data", "folder")
    new = decode_split(items, 6, folder, "test", tmp_path / "data", "folder")
    os.utime(old.folder / "last_used", (time.time() - 86400 * 3,) * 2)
    runner = CliRunner()
    listed = runner.invoke(app, ["cache", "list"])
    assert listed.exit_code == 0 and "2 entries" in listed.output and old.meta["key"] in listed.output
    dry = runner.invoke(app, ["cache", "prune", "--older-than", "2d", "--dry-run"])
    assert dry.exit_code == 0 and "would remove 1 entries" in dry.output and old.folder.exists()
    done = runner.invoke(app, ["cache", "prune", "--older-than", "2d", "--dataset", "folder"])
    assert done.exit_code == 0 and "removed 1 entries" in done.output
    assert not old.folder.exists() and new.folder.exists()


def test_duration_and_size_parsing():
    assert parse_duration("30d") == 30 * 86400 and parse_duration("1.5h") == 5400 and parse_duration("2w") == 14 * 86400
    assert parse_size("50G") == 50 * 2**30 and parse_size("500MiB") == 500 * 2**20 and parse_size("2048") == 2048
    for bad in ("30", "d", "-1d"):
        with pytest.raises(UserError, match="--older-than"):
            parse_duration(bad)
    with pytest.raises(UserError, match="--keep-size"):
        parse_size("lots")


def test_entries_module_never_deletes_other_keys(tmp_path):
    items = make_items(tmp_path / "data", 3)
    folder = tmp_path / "cache" / "folder-0123456789"
    keys = {decode_split(items, size, folder, "train", tmp_path / "data", "folder").folder for size in (4, 6, 8)}
    assert all((k / "COMPLETE").is_file() for k in keys) and len(entries.list_entries(tmp_path / "cache")) == 3


def test_cli_list_tells_entries_apart_and_prunes_by_root(tmp_path):
    """Issue 25.5: two copies of the data, two image sizes and an old entry without the new fields."""
    import json as _json

    from bench.cli.main import app

    a_items = make_items(tmp_path / "a" / "Image" / "original", 3)
    b_items = make_items(tmp_path / "b" / "Image" / "aligned", 3)
    folder = tmp_path / "cache" / "folder"
    a8 = decode_split(a_items, 8, folder, "train", tmp_path / "a", "folder")
    decode_split(a_items, 6, folder, "train", tmp_path / "a", "folder")
    b8 = decode_split(b_items, 8, folder, "test", tmp_path / "b", "folder")
    assert a8.meta["image_set"] == "Image/original" and b8.meta["image_set"] == "Image/aligned"
    old = _json.loads((b8.folder / "meta.json").read_text())
    for field in ("root", "image_set", "built", "cropped"):
        old.pop(field)
    (b8.folder / "meta.json").write_text(_json.dumps(old))            # written by an older version
    runner = CliRunner()
    listed = runner.invoke(app, ["cache", "list"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert "data root" in lines[1] and "images" in lines[1] and "built" in lines[1]
    rows = [line.split() for line in lines[2:]]
    a_rows = [r for r in rows if str(tmp_path / "a") in r]
    assert sorted(r[4] for r in a_rows) == ["6", "8"] and all("Image/original" in r for r in a_rows)
    b_row = next(r for r in rows if b8.meta["key"] in r)
    assert b_row[2] == "-" and b_row[3] == "-"                          # old entry: unknown root and images
    only_a = runner.invoke(app, ["cache", "list", "--root", str(tmp_path / "a")])
    assert "2 entries" in only_a.output and b8.meta["key"] not in only_a.output
    pruned = runner.invoke(app, ["cache", "prune", "--root", str(tmp_path / "a")])
    assert pruned.exit_code == 0 and "removed 2 entries" in pruned.output, pruned.output
    assert not a8.folder.exists() and b8.folder.exists()
