"""Content digests of image files, remembered so that each file is read for hashing once.

The data part of a model's id and the decode cache's key describe the images by content (relative
path, size and a digest of the bytes), never by the root they sit under or their mtimes: a copy of a
dataset staged to a node's local disk gets the same id and reuses the same decoded arrays, while one
changed image gives another. Hashing reads every byte, so digests are remembered in an index beside
the caches (``<cache>/digests/<root hash>.json``: absolute path -> size, mtime, inode, digest); a file
whose size, mtime and inode are unchanged is not read again.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from bench.files import atomic_write_text

CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """blake2b of the file's bytes (16 hex characters); "" for a file that cannot be read."""
    h = hashlib.blake2b(digest_size=8)
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                h.update(chunk)
    except OSError:
        return ""
    return h.hexdigest()


def _stamp(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def content_digests(paths: Sequence[Path], index_file: Path, workers: int | None = None) -> list[tuple[int, str]]:
    """(size, digest) of each path, in order; (-1, "") for a missing file. Reuses and updates the index."""
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError):
        index = {}
    stamps = [_stamp(p) for p in paths]
    out: list[tuple[int, str] | None] = [None] * len(paths)
    todo = []
    for i, (path, stamp) in enumerate(zip(paths, stamps)):
        if stamp is None:
            out[i] = (-1, "")
            continue
        known = index.get(str(path))
        if known is not None and known[:3] == stamp:
            out[i] = (stamp[0], known[3])
        else:
            todo.append(i)
    if todo:
        with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) * 2)) as pool:
            digests = list(pool.map(lambda i: file_digest(paths[i]), todo))
        for i, digest in zip(todo, digests):
            out[i] = (stamps[i][0], digest)
            if digest:
                index[str(paths[i])] = [*stamps[i], digest]
        try:
            atomic_write_text(index_file, json.dumps(index))
        except OSError:                 # a read-only cache still works, it just hashes again next time
            pass
    return out  # type: ignore[return-value]
