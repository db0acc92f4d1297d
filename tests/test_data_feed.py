"""Split feeds: the same batches from every placement, bounded prefetch, clean stop, placement by budget."""
import threading
import time
import types

import numpy as np
import pytest
import torch

from bench.data.arrays import Arrays, RowView
from bench.data.feed import (PREFETCH, StreamFeed, TensorFeed, batch_count, choose_placement, feed, split_bytes)
from bench.data.npy import NpyWriter
from bench.data.placement import device_budget_bytes, trial_gpu_fraction


def cached_split(tmp_path, n=23, size=6, rows=None):
    """A split backed by a memory-mapped file whose image i is filled with the value i (easy to check)."""
    with NpyWriter(tmp_path / "images.npy", (n, size, size, 3)) as out:
        for i in range(n):
            out[i] = np.full((size, size, 3), i, np.uint8)
    store = np.load(tmp_path / "images.npy", mmap_mode="r")
    rows = np.arange(n) if rows is None else np.asarray(rows)
    labels = (rows * 10).astype(np.int64)
    landmarks = np.repeat(rows.astype(np.float32)[:, None, None], 68, 1).repeat(2, 2)
    return Arrays(RowView(store, rows), labels, landmarks)


def test_batch_count_drops_only_a_last_batch_of_one():
    assert batch_count(42, 16, True) == 3 and batch_count(49, 16, True) == 3 and batch_count(49, 16, False) == 4
    assert batch_count(48, 16, True) == 3 and batch_count(1, 16, True) == 0 and batch_count(5, 1, True) == 5


def test_stream_gives_the_batches_of_the_order_from_a_carved_view(tmp_path):
    split = cached_split(tmp_path).take(np.array([3, 4, 7, 8, 10, 11, 12, 15, 16, 20, 21, 22, 0, 1, 2, 5, 9]))
    order = torch.randperm(17, generator=torch.Generator().manual_seed(0))
    stream = feed(split, torch.device("cpu"), 0)
    assert stream.placement == "stream" and len(stream) == 17
    got = list(stream.batches(order, 4))                      # 17 = 4 * 4 + 1: the last single is dropped
    assert len(got) == 4
    for b, (images, labels, landmarks) in enumerate(got):
        rows = split.rows[order[b * 4:(b + 1) * 4].numpy()]
        assert images.dtype == torch.uint8 and images.shape == (4, 6, 6, 3)
        assert images[:, 0, 0, 0].tolist() == rows.tolist()   # pixel value = row of the cache file
        assert labels.tolist() == (rows * 10).tolist() and landmarks[:, 0, 0].tolist() == rows.tolist()
    in_memory = feed(Arrays(np.asarray(split.images), split.labels, split.landmarks), torch.device("cpu"), 0)
    assert in_memory.placement == "memory"
    for a, b in zip(got, in_memory.batches(order, 4)):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    sequential = [labels.tolist() for _, labels, _ in stream.batches(None, 8, drop_last_single=False)]
    assert sequential == [split.labels[i:i + 8].tolist() for i in (0, 8, 16)]
    images, labels, _ = stream.take([5, 0])
    assert images[:, 0, 0, 0].tolist() == [split.rows[5], split.rows[0]] and labels.tolist() == [110, 30]


def test_prefetch_is_bounded_and_an_early_stop_ends_the_thread(tmp_path, monkeypatch):
    stream = feed(cached_split(tmp_path, n=40), torch.device("cpu"), 0)
    gathered = []
    real = StreamFeed._gather
    monkeypatch.setattr(StreamFeed, "_gather", lambda self, sel: gathered.append(1) or real(self, sel))
    before = threading.active_count()
    batches = stream.batches(None, 2)                        # 20 batches
    next(batches)
    time.sleep(0.3)                                          # let the producer run as far as it may
    assert len(gathered) <= 1 + PREFETCH + 1                 # consumed + queued + one being put
    batches.close()                                          # the consumer stops early
    assert threading.active_count() == before and len(gathered) < 20


def test_a_failure_while_gathering_reaches_the_consumer(tmp_path):
    split = cached_split(tmp_path, n=8)
    broken = Arrays(RowView(split.store, np.array([0, 1, 2, 99])), split.labels[:4], split.landmarks[:4])
    with pytest.raises(IndexError):
        list(feed(broken, torch.device("cpu"), 0).batches(None, 2))


def test_placement_by_budget():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert choose_placement(cuda, 10 * 2**30, 12 * 2**30, False) == "device"
    assert choose_placement(cuda, 13 * 2**30, 12 * 2**30, False) == "stream"
    assert choose_placement(cuda, 1, 0, True) == "stream"            # no budget: even a small split streams
    assert choose_placement(cpu, 1, 0, True) == "memory" and choose_placement(cpu, 1, 0, False) == "stream"
    split = Arrays(np.zeros((4, 8, 8, 3), np.uint8), np.zeros(4, np.int64), np.zeros((4, 68, 2), np.float32))
    assert split_bytes(split) == 4 * 8 * 8 * 3 + 4 * 8 + 4 * 68 * 2 * 4


def test_device_budget_is_the_trials_share_of_the_card(monkeypatch):
    props = types.SimpleNamespace(total_memory=80 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    assert device_budget_bytes(torch.device("cuda"), 0.5, 0.25) == 10 * 2**30
    assert device_budget_bytes(torch.device("cuda:0"), 0.5) == 40 * 2**30
    assert device_budget_bytes(torch.device("cpu"), 0.5, 1.0) == 0


def test_gpu_fraction_comes_from_the_ray_trial(monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "ray", raising=False)
    assert trial_gpu_fraction() == 1.0
    context = types.SimpleNamespace(get_assigned_resources=lambda: {"CPU": 1.0, "GPU": 0.25})
    fake = types.SimpleNamespace(is_initialized=lambda: True, get_runtime_context=lambda: context)
    monkeypatch.setitem(sys.modules, "ray", fake)
    assert trial_gpu_fraction() == 0.25
    context.get_assigned_resources = lambda: {"CPU": 1.0}             # a CPU trial, or outside a trial
    assert trial_gpu_fraction() == 1.0


def test_an_unreadable_share_is_a_warning_and_the_conservative_budget(monkeypatch, capsys):
    """Issue 21.5: a 0.25-GPU trial whose share cannot be read must not budget the whole card."""
    import sys

    def broken():
        raise RuntimeError("no runtime context")

    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(is_initialized=lambda: True,
                                                                  get_runtime_context=broken))
    props = types.SimpleNamespace(total_memory=80 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    fraction = trial_gpu_fraction()
    err = capsys.readouterr().err
    assert fraction == 0.25
    assert err.count("\n") == 1 and err.startswith("warning: this trial's GPU share could not be read")
    assert "RuntimeError: no runtime context" in err and "assuming 0.25 of the card" in err
    assert device_budget_bytes(torch.device("cuda"), 0.5, fraction) == 10 * 2**30     # not 40 GiB


def test_device_budget_counts_what_the_model_already_holds(monkeypatch):
    props = types.SimpleNamespace(total_memory=80 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    # a 0.5 share of an 80 GiB card is 40 GiB; the model and a step hold 12 GiB; half of the rest
    assert device_budget_bytes(torch.device("cuda"), 0.5, 0.5, reserved_bytes=12 * 2**30) == 14 * 2**30
    assert device_budget_bytes(torch.device("cuda"), 0.5, 0.25, reserved_bytes=30 * 2**30) == 0


def test_tensor_feed_matches_slicing():
    images = torch.arange(5 * 2 * 2 * 3, dtype=torch.uint8).view(5, 2, 2, 3)
    labels, landmarks = torch.arange(5), torch.zeros(5, 68, 2)
    tensors = TensorFeed(images, labels, landmarks, torch.device("cpu"), "memory")
    got = [b[1].tolist() for b in tensors.batches(torch.tensor([4, 3, 2, 1, 0]), 2)]
    assert got == [[4, 3], [2, 1]]                                    # 5 = 2 * 2 + 1: last single dropped
    assert [b[1].tolist() for b in tensors.batches(None, 2, False)] == [[0, 1], [2, 3], [4]]


def test_pinned_ring_logic_on_the_cpu(tmp_path, monkeypatch):
    """The CUDA path's bookkeeping, run with stand-ins: pinning is the identity and events are recorded
    objects, the upload a clone. A slot is refilled only after waiting on the event of its previous
    copy, and every batch holds the rows of the order."""
    events = []

    class FakeEvent:
        def __init__(self):
            self.recorded = self.waited = False
            events.append(self)

        def record(self):
            self.recorded = True

        def synchronize(self):
            assert self.recorded
            self.waited = True

    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: self)
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(StreamFeed, "_upload", lambda self, pinned: pinned.clone())   # the "device copy"
    split = cached_split(tmp_path, n=30)
    stream = StreamFeed(split, torch.device("cpu"))
    stream.pinned = True
    order = torch.randperm(30, generator=torch.Generator().manual_seed(1))
    for epoch in range(2):                                           # the ring is reused across epochs
        got = list(stream.batches(order, 4))
        assert len(got) == 8                                         # 30 = 7 * 4 + 2
        for b, (images, labels, _) in enumerate(got):
            rows = order[b * 4:(b + 1) * 4].tolist()
            assert images[:, 0, 0, 0].tolist() == rows and labels.tolist() == [r * 10 for r in rows]
    assert len(stream._rings) == 1 and len(stream._rings[4][0]) == PREFETCH + 1
    assert sum(e.waited for e in events) == 16 - (PREFETCH + 1)       # every refill after the first use waited
