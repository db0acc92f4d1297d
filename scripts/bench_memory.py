"""Does a trial's memory scale with the node rather than the dataset? Numbers for the README.

Every measurement runs in a fresh subprocess (``--child``), on synthetic faces at ``--size`` px
(default 128) generated once into a cache under ``--workdir``:

1. peak private memory (``RssAnon`` from /proc/self/status, sampled every 5 ms by a thread in
   the trial) of a real ``bench.sweep.jobs.run_job`` (smoke profile at ``--size`` px, ``--epochs``)
   on a training split of N and of 8N faces. File-backed pages of the shared cache are not
   counted: the page cache holds them once per node. Target: 8N / N <= 1.10;
2. the combined proportional set size (``Pss`` from /proc/<pid>/smaps_rollup, sampled by this
   process) of two such trials running at once on the one 8N cache, against one trial alone.
   Target: <= 1.3 x;
3. training steps/s (AU on) with the split streamed from the cache (``SplitFeed`` placement
   ``stream``: background gather, bounded prefetch) against the same split copied into memory
   (``memory``), interleaved rounds, fastest kept; by wall time (target: stream / memory >= 0.95)
   and by the process's CPU time (all threads), which a busy shared machine disturbs less;
4. peak ``RssAnon`` of building a decode cache from N and 8N JPEG files (the ``folder`` loader:
   decode, crop, resize, write), and of generating the synthetic cache.

Run: ``.venv/bin/python scripts/bench_memory.py [--n 500] [--size 128] [--epochs 1]``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# --- reading /proc -------------------------------------------------------------------------------

def status_kib(pid: int | str, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (``RssAnon``, ``RssFile``, ``VmHWM``...), in KiB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise KeyError("Pss")


def file_pss_kib(pid: int, prefix: str) -> int:
    """PSS of the mappings of files under ``prefix`` (the shared cache) in /proc/<pid>/smaps, in KiB."""
    total, inside = 0, False
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            first = line.split(maxsplit=1)[0]
            if "-" in first and not first.endswith(":"):          # a mapping's header line
                parts = line.split(maxsplit=5)
                inside = len(parts) == 6 and parts[5].strip().startswith(prefix)
            elif inside and first == "Pss:":
                total += int(line.split()[1])
    return total


class PeakSampler:
    """Largest value of ``read()`` seen by a background thread sampling every ``interval`` seconds."""

    def __init__(self, read, interval: float = 0.005):
        self.read, self.interval, self.peak = read, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.read())
            except (OSError, KeyError, ValueError):   # the process ended
                return
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        try:
            self.peak = max(self.peak, self.read())
        except (OSError, KeyError, ValueError):
            pass


# --- children ------------------------------------------------------------------------------------

def overrides(size: int, train: int, epochs: int) -> list[tuple[str, object]]:
    return [("data.image_size", size), ("data.train_size", train), ("data.val_size", 140), ("data.test_size", 140),
            ("train.epochs", epochs), ("train.checkpoint", False), ("train.batch_size", 32)]


def child_generate(args) -> dict:
    with PeakSampler(lambda: status_kib("self", "RssAnon")) as anon:
        from bench.config.settings import resolve
        from bench.data import load_dataset

        config = resolve("smoke", overrides(args.size, args.train, 1))
        entries = Path(os.environ["BENCH_CACHE"]) / "synthetic"
        before = len(list(entries.glob("train-*/COMPLETE")))
        start = time.perf_counter()
        data = load_dataset("synthetic", config.data, 0)
        seconds = time.perf_counter() - start
    built = len(list(entries.glob("train-*/COMPLETE"))) > before
    return {"rss_anon_peak_kib": anon.peak, "seconds": seconds, "train": len(data.train.labels), "built": built}


def child_trial(args) -> dict:
    anon = PeakSampler(lambda: status_kib("self", "RssAnon"))
    with anon:
        import torch

        torch.set_num_threads(args.threads)
        from bench.plan.spec import Job, ModelSpec
        from bench.store.records import RunStore
        from bench.sweep.jobs import run_job

        after_imports = status_kib("self", "RssAnon")
        model = ModelSpec("cam", "synthetic", True, 0, "smoke", tuple(overrides(args.size, args.train, args.epochs)))
        job = Job(model, ("cam",), ("memory-check",), train=True)     # hand-built: no planned ids to check
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as results:
            run_job(job, RunStore(Path(results) / "run"))
        seconds = time.perf_counter() - start
    return {"rss_anon_peak_kib": anon.peak, "rss_anon_after_imports_kib": after_imports,
            "vm_hwm_kib": status_kib("self", "VmHWM"), "rss_file_kib": status_kib("self", "RssFile"),
            "seconds": seconds}


def child_throughput(args) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from bench.config.settings import resolve
    from bench.data.arrays import Arrays
    from bench.data.feed import feed
    from bench.train.session import build_session

    config = resolve("smoke", overrides(args.size, args.train, 1))
    session = build_session("cam", "synthetic", 0, config, align=True)
    train = session.data.train
    feeds = {"stream": feed(train, torch.device("cpu"), 0),
             "memory": feed(Arrays(np.array(train.images), train.labels, train.landmarks), torch.device("cpu"), 0)}
    assert feeds["stream"].placement == "stream" and feeds["memory"].placement == "memory"
    bs, steps = config.train.batch_size, args.steps
    generator = torch.Generator().manual_seed(0)
    wall = {name: float("inf") for name in feeds}
    cpu = {name: float("inf") for name in feeds}

    def run(name: str) -> tuple[float, float]:
        order = torch.randperm(len(train), generator=generator)
        start, start_cpu = time.perf_counter(), time.process_time()     # CPU time of all threads
        for k, (images, labels, landmarks) in enumerate(feeds[name].batches(order, bs)):
            if k == steps:
                break
            loss = session.step(images, labels, landmarks)
        float(loss.sum())
        return time.perf_counter() - start, time.process_time() - start_cpu

    for name in feeds:                                   # warm-up
        run(name)
    for _ in range(args.rounds):                         # interleaved, fastest kept
        for name in feeds:
            w, c = run(name)
            wall[name], cpu[name] = min(wall[name], w), min(cpu[name], c)
    rates = {name: steps / wall[name] for name in feeds}
    return {"steps": steps, "batch": bs, "stream_steps_per_s": rates["stream"], "memory_steps_per_s": rates["memory"],
            "ratio": rates["stream"] / rates["memory"], "cpu_ratio": cpu["memory"] / cpu["stream"]}


def child_decode(args) -> dict:
    with PeakSampler(lambda: status_kib("self", "RssAnon")) as anon:
        from bench.config.settings import DataConfig
        from bench.data import load_dataset

        start = time.perf_counter()
        data = load_dataset("folder", DataConfig(root=args.root, image_size=args.size, landmarks="none",
                                                 val_fraction=0.0, test_fraction=0.1), 0)
        seconds = time.perf_counter() - start
    return {"rss_anon_peak_kib": anon.peak, "seconds": seconds,
            "images": sum(len(data.split(s).labels) for s in ("train", "val", "test"))}


CHILDREN = {"generate": child_generate, "trial": child_trial, "throughput": child_throughput, "decode": child_decode}


# --- the parent ------------------------------------------------------------------------------------

def spawn(kind: str, env: dict, **options) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--child", kind]
    for key, value in options.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.args}):\n{err[-4000:]}")
    return json.loads(out.strip().splitlines()[-1])


def run_child(kind: str, env: dict, **options) -> dict:
    return result(spawn(kind, env, **options))


def trial_with_pss(env: dict, count: int, **options) -> tuple[int, int, list[dict]]:
    """Start ``count`` trials at once; the largest sums of their PSS, and of the PSS of their
    mappings of the cache files, seen while they ran (KiB)."""
    procs = [spawn("trial", env, **options) for _ in range(count)]
    peak = peak_cache = 0
    while any(p.poll() is None for p in procs):
        total = cache = 0
        for p in procs:
            try:
                total += pss_kib(p.pid)
                cache += file_pss_kib(p.pid, env["BENCH_CACHE"])
            except (OSError, KeyError, ValueError):
                pass
        peak, peak_cache = max(peak, total), max(peak_cache, cache)
        time.sleep(0.2)
    return peak, peak_cache, [result(p) for p in procs]


def write_jpegs(root: Path, count: int, size: int) -> None:
    """``count`` face JPEGs at ``2 * size`` px in 7 class folders (50 distinct faces, re-encoded with noise)."""
    import numpy as np
    from PIL import Image

    from bench.data.synthetic import SyntheticOptions, generate

    names = ["neutral", "happy", "surprise", "fear", "angry", "disgust", "sad"]
    base = generate("test", 50, 0, SyntheticOptions(image_size=2 * size))
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / names[i % 7]
        folder.mkdir(parents=True, exist_ok=True)
        noisy = np.clip(base.images[i % 50].astype(np.int16) + rng.integers(-3, 4, base.images.shape[1:]), 0, 255)
        Image.fromarray(noisy.astype(np.uint8)).save(folder / f"{i:06d}.jpg", quality=90)


def pss_at_scale(env: dict, count: int, common: dict) -> None:
    """Measurement 2 alone: one trial, then two at once, on one cache of ``count`` faces."""
    gen = run_child("generate", env, train=count, size=common["size"])
    alone_pss, alone_cache, alone = trial_with_pss(env, 1, train=count, **common)
    pair_pss, pair_cache, pair = trial_with_pss(env, 2, train=count, **common)
    print()
    print(f"| {count} training faces at {common['size']} px (cache generated in {gen['seconds']:.0f} s) | one trial "
          f"| two at once | ratio | target |")
    print("|---|---:|---:|---:|---|")
    print(f"| peak PSS | {mib(alone_pss)} | {mib(pair_pss)} | {pair_pss / alone_pss:.3f} | <= 1.3 |")
    print(f"| PSS of the cache files' mappings | {mib(alone_cache)} | {mib(pair_cache)} "
          f"| {pair_cache / alone_cache:.3f} | |")
    print(f"| trial seconds | {alone[0]['seconds']:.0f} | {pair[0]['seconds']:.0f}, {pair[1]['seconds']:.0f} | | |")


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=sorted(CHILDREN))
    parser.add_argument("--n", type=int, default=500, help="N: the small training split (8N is the large one)")
    parser.add_argument("--size", type=int, default=128, help="image side in px (>= 128 for the README numbers)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per trial")
    parser.add_argument("--steps", type=int, default=10, help="throughput: steps per round")
    parser.add_argument("--rounds", type=int, default=8, help="throughput: interleaved rounds")
    parser.add_argument("--train", type=int, default=0)
    parser.add_argument("--root", default="")
    parser.add_argument("--workdir", default="", help="cache and JPEG folder (default: a temporary folder)")
    parser.add_argument("--pss-only", action="store_true",
                        help="only measurement 2, on the 8N cache: the PSS ratio approaches 1 as the cache grows "
                             "past the trials' own memory (--n 5000 at 128 px: a 2 GB cache)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-memory-"))
    env = {**os.environ, "BENCH_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    small, large = args.n, 8 * args.n
    common = {"size": args.size, "epochs": args.epochs, "threads": args.threads}
    print(f"work folder {work}; synthetic faces at {args.size} px; N = {small}, 8N = {large}", flush=True)
    if args.pss_only:
        pss_at_scale(env, large, common)
        return
    gen = {n: run_child("generate", env, train=n, size=args.size) for n in (small, large)}
    alone = {n: trial_with_pss(env, 1, train=n, **common) for n in (small, large)}
    pair_pss, pair_cache, pair = trial_with_pss(env, 2, train=large, **common)
    speed = run_child("throughput", env, train=large, size=args.size, threads=args.threads, steps=args.steps,
                      rounds=args.rounds)
    jpegs = {}
    for n in (small, large):
        folder = work / f"jpeg-{n}"
        if not folder.is_dir():
            write_jpegs(folder, n, args.size)
        decode_cache = work / "decode-cache"                       # built from scratch every time
        shutil.rmtree(decode_cache, ignore_errors=True)
        jpegs[n] = run_child("decode", {**env, "BENCH_CACHE": str(decode_cache)}, root=folder, size=args.size)

    anon = {n: alone[n][2][0]["rss_anon_peak_kib"] for n in (small, large)}
    print()
    print("| measurement | N = %d | 8N = %d | ratio | target |" % (small, large))
    print("|---|---:|---:|---:|---|")
    print(f"| trial peak RssAnon (smoke profile, {args.size} px, {args.epochs} epoch) | {mib(anon[small])} "
          f"| {mib(anon[large])} | {anon[large] / anon[small]:.3f} | <= 1.10 |")
    print(f"| trial peak PSS alone | {mib(alone[small][0])} | {mib(alone[large][0])} | | |")
    print(f"| two concurrent trials on one cache: peak PSS together | | {mib(pair_pss)} "
          f"| {pair_pss / alone[large][0]:.3f} x one trial | <= 1.3 |")
    print(f"| PSS of the cache files' mappings: one trial / two together | {mib(alone[small][1])} "
          f"| {mib(alone[large][1])} / {mib(pair_cache)} | {pair_cache / alone[large][1]:.3f} | |")
    print(f"| steps/s (AU on, batch {speed['batch']}): stream / memory | | {speed['stream_steps_per_s']:.2f} / "
          f"{speed['memory_steps_per_s']:.2f} | {speed['ratio']:.3f} | >= 0.95 |")
    print(f"| the same by CPU time of all threads (memory CPU s / stream CPU s) | | | {speed['cpu_ratio']:.3f} | |")
    print(f"| building the decode cache from JPEGs ({2 * args.size} px -> {args.size} px): peak RssAnon "
          f"| {mib(jpegs[small]['rss_anon_peak_kib'])} | {mib(jpegs[large]['rss_anon_peak_kib'])} "
          f"| {jpegs[large]['rss_anon_peak_kib'] / jpegs[small]['rss_anon_peak_kib']:.3f} | |")
    if gen[small]["built"] and gen[large]["built"]:
        print(f"| generating the synthetic cache: peak RssAnon | {mib(gen[small]['rss_anon_peak_kib'])} "
              f"| {mib(gen[large]['rss_anon_peak_kib'])} "
              f"| {gen[large]['rss_anon_peak_kib'] / gen[small]['rss_anon_peak_kib']:.3f} | |")
    else:
        print("| generating the synthetic cache | (already in the work folder: not measured) | | | |")
    print()
    print(f"RssAnon after imports: {mib(alone[small][2][0]['rss_anon_after_imports_kib'])}; "
          f"trial seconds N / 8N: {alone[small][2][0]['seconds']:.0f} / {alone[large][2][0]['seconds']:.0f}; "
          f"concurrent pair: {pair[0]['seconds']:.0f} s, {pair[1]['seconds']:.0f} s; torch threads per trial: "
          f"{args.threads}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
