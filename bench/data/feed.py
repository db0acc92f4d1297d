"""How a split's batches reach the training device: bounded host memory, and the step never waits.

``feed(arrays, device, budget)`` chooses, per split, where the images live while a trial runs,
and the choice (``SplitFeed.placement``) goes into each result row:

- ``device``: on CUDA, a split whose bytes fit ``budget`` is copied to the GPU once (in chunks,
  so the host never holds it) and batches are gathered there;
- ``stream``: the images stay in the shared read-only memory-mapped cache. A background thread
  gathers each batch's rows (in training order) into fresh buffers, at most ``PREFETCH`` batches
  ahead; on CUDA into pinned buffers (a ring of ``PREFETCH + 1``) copied non-blocking, a buffer
  being reused only after its copy has finished. A trial's host memory is then a few batches,
  whatever the size of its split, and concurrent trials share the OS page cache;
- ``memory``: on the CPU, a split that is already an in-memory array (not a cache file) is
  indexed in place.

Every placement yields the same batches for the same ``order``: the choice changes where bytes
come from, never which bytes.
"""
from __future__ import annotations

import queue
import threading
from abc import ABC, abstractmethod
from typing import Iterator, Sequence

import numpy as np
import torch

from bench.data.arrays import Arrays

PREFETCH = 2                    # batches gathered ahead of the step
DEVICE_COPY_CHUNK = 64 * 2**20  # bytes per host->GPU chunk when a split is copied whole

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def batch_count(n: int, batch_size: int, drop_last_single: bool) -> int:
    """Batches of an epoch over ``n`` samples; a last batch of one sample is dropped when asked
    (batch norm cannot train on it)."""
    if drop_last_single and n % batch_size == 1:
        return n // batch_size
    return -(-n // batch_size)


def split_bytes(arrays: Arrays) -> int:
    """Bytes a split takes on the device: images, labels and landmarks."""
    return int(arrays.images.nbytes + arrays.labels.nbytes + arrays.landmarks.nbytes)


def choose_placement(device: torch.device, nbytes: int, budget: int, in_memory: bool) -> str:
    """``device`` when an accelerator has room for the split, else ``memory`` for in-RAM arrays on
    the CPU, else ``stream``."""
    if device.type != "cpu":
        return "device" if nbytes <= budget else "stream"
    return "memory" if in_memory else "stream"


class SplitFeed(ABC):
    """A split, delivered in batches on ``device``: (uint8 (B, H, W, 3), long (B,), float (B, 68, 2)).

    ``labels`` and ``landmarks`` are the whole split on the host (small); ``shape`` is the images'.
    """

    placement: str = ""

    def __init__(self, labels: np.ndarray | torch.Tensor, landmarks: np.ndarray | torch.Tensor,
                 shape: tuple[int, ...], device: torch.device):
        self.labels = torch.as_tensor(labels).long().cpu()
        self.landmarks = torch.as_tensor(landmarks).float().cpu()
        self.shape = tuple(shape)
        self.device = torch.device(device)
        self.device_bytes = 0           # bytes of this split held on the device (``device`` placement)

    def __len__(self) -> int:
        return len(self.labels)

    @abstractmethod
    def batches(self, order: torch.Tensor | None, batch_size: int,
                drop_last_single: bool = True) -> Iterator[Batch]:
        """The epoch's batches on the device, in ``order`` (None: sequential); a last batch of one
        sample is dropped when ``drop_last_single``."""

    @abstractmethod
    def take(self, index: Sequence[int]) -> Batch:
        """A few rows (figure gallery, extended sample) on the device, in the order given."""

    def _plan(self, order: torch.Tensor | None, batch_size: int, drop_last_single: bool) -> list:
        """Per batch: a slice (sequential) or an index array (``order``)."""
        n = len(self)
        count = batch_count(n, batch_size, drop_last_single)
        if order is None:
            return [slice(b * batch_size, min((b + 1) * batch_size, n)) for b in range(count)]
        order = np.asarray(order.cpu() if isinstance(order, torch.Tensor) else order, dtype=np.int64)
        return [order[b * batch_size:(b + 1) * batch_size] for b in range(count)]


class TensorFeed(SplitFeed):
    """A split held as tensors (on the GPU for ``device``, in RAM for ``memory``): batches are indexed in place."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, landmarks: torch.Tensor, device: torch.device,
                 placement: str):
        super().__init__(labels, landmarks, tuple(images.shape), device)
        self.placement = placement
        self.images = images
        self.labels_at = labels if labels.device == images.device else labels.to(images.device)
        self.landmarks_at = landmarks if landmarks.device == images.device else landmarks.to(images.device)
        if images.device.type != "cpu":
            self.device_bytes = int(images.nbytes + self.labels_at.nbytes + self.landmarks_at.nbytes)

    def _out(self, batch: Batch) -> Batch:
        if batch[0].device == self.device:
            return batch
        return tuple(t.to(self.device, non_blocking=True) for t in batch)

    def batches(self, order, batch_size, drop_last_single=True):
        plan = self._plan(None, batch_size, drop_last_single) if order is None else None
        if plan is not None:
            for sl in plan:
                yield self._out((self.images[sl], self.labels_at[sl], self.landmarks_at[sl]))
            return
        order = order.to(self.images.device)                  # one copy per epoch
        for b in range(batch_count(len(self), batch_size, drop_last_single)):
            idx = order[b * batch_size:(b + 1) * batch_size]
            yield self._out((self.images[idx], self.labels_at[idx], self.landmarks_at[idx]))

    def take(self, index):
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64), device=self.images.device)
        return self._out((self.images[idx], self.labels_at[idx], self.landmarks_at[idx]))


class _Stop(Exception):
    pass


class StreamFeed(SplitFeed):
    """Batches gathered from the memory-mapped cache by a background thread, ``prefetch`` ahead."""

    placement = "stream"

    def __init__(self, arrays: Arrays, device: torch.device, prefetch: int = PREFETCH):
        super().__init__(arrays.labels, arrays.landmarks, arrays.images.shape, device)
        self.store = arrays.store
        self.rows = arrays.rows
        self.labels_np = np.ascontiguousarray(arrays.labels, dtype=np.int64)
        self.landmarks_np = np.ascontiguousarray(arrays.landmarks, dtype=np.float32)
        self.prefetch = max(1, int(prefetch))
        self.pinned = self.device.type == "cuda"
        self._rings: dict[int, tuple[list, list]] = {}
        self._rings_in_use: set[int] = set()

    # --- gathering (background thread: numpy only, which releases the GIL while copying) --------
    def _rows(self, sel) -> np.ndarray:
        index = np.arange(len(self))[sel] if isinstance(sel, slice) else sel
        return index if self.rows is None else self.rows[index]

    def _gather_into(self, sel, images: np.ndarray, labels: np.ndarray, landmarks: np.ndarray) -> int:
        rows = self._rows(sel)
        m = len(rows)
        np.take(self.store, rows, axis=0, out=images[:m])
        labels[:m] = self.labels_np[sel]
        landmarks[:m] = self.landmarks_np[sel]
        return m

    def _gather(self, sel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = self._rows(sel)
        images = np.empty((len(rows), *self.shape[1:]), dtype=self.store.dtype)
        labels = np.empty(len(rows), dtype=np.int64)
        landmarks = np.empty((len(rows), *self.landmarks_np.shape[1:]), dtype=np.float32)
        self._gather_into(sel, images, labels, landmarks)
        return images, labels, landmarks

    # --- delivery -----------------------------------------------------------------------------
    def batches(self, order, batch_size, drop_last_single=True):
        plan = self._plan(order, batch_size, drop_last_single)
        if not plan:
            return
        if self.pinned:
            yield from self._pinned_batches(plan, batch_size)
        else:
            yield from self._host_batches(plan)

    @staticmethod
    def _put(q: queue.Queue, item, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return
            except queue.Full:
                continue
        raise _Stop

    @staticmethod
    def _get(q: queue.Queue, stop: threading.Event):
        while not stop.is_set():
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                continue
        raise _Stop

    def _run(self, produce, ready: queue.Queue, stop: threading.Event) -> threading.Thread:
        def target():
            try:
                produce()
            except _Stop:
                return
            except BaseException as exc:      # surfaces in the consumer, not lost in the thread
                try:
                    self._put(ready, exc, stop)
                except _Stop:
                    pass
        thread = threading.Thread(target=target, name="bench-feed", daemon=True)
        thread.start()
        return thread

    def _consume(self, plan: list, ready: queue.Queue, stop: threading.Event, thread: threading.Thread, deliver):
        try:
            for _ in plan:
                item = ready.get()
                if isinstance(item, BaseException):
                    raise item
                yield deliver(item)
        finally:
            stop.set()                         # the consumer stopped early, or finished: end the thread
            thread.join()

    def _host_batches(self, plan: list) -> Iterator[Batch]:
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def produce():
            for sel in plan:
                self._put(ready, self._gather(sel), stop)

        def deliver(item):
            images, labels, landmarks = (torch.from_numpy(a) for a in item)
            if self.device.type == "cpu":
                return images, labels, landmarks
            return images.to(self.device), labels.to(self.device), landmarks.to(self.device)

        yield from self._consume(plan, ready, stop, self._run(produce, ready, stop), deliver)

    def _new_ring(self, batch_size: int) -> tuple[list, list]:
        slots = self.prefetch + 1
        ring = [(torch.empty((batch_size, *self.shape[1:]), dtype=torch.uint8).pin_memory(),
                 torch.empty(batch_size, dtype=torch.long).pin_memory(),
                 torch.empty((batch_size, *self.landmarks_np.shape[1:]), dtype=torch.float32).pin_memory())
                for _ in range(slots)]
        return ring, [None] * slots

    def _ring(self, batch_size: int) -> tuple[list, list]:
        """Pinned buffers for ``batch_size`` (made once, reused every epoch) and their last copies' events."""
        if batch_size not in self._rings:
            self._rings[batch_size] = self._new_ring(batch_size)
        return self._rings[batch_size]

    def _upload(self, pinned: torch.Tensor) -> torch.Tensor:
        """Enqueue the copy of a pinned buffer to the device (returns at once)."""
        return pinned.to(self.device, non_blocking=True)

    def _pinned_batches(self, plan: list, batch_size: int) -> Iterator[Batch]:
        """CUDA: a ring of pinned buffers; the thread fills slot s only after slot s's copy finished."""
        if batch_size in self._rings_in_use:   # a second iterator at once gets its own buffers
            ring, copied = self._new_ring(batch_size)
        else:
            ring, copied = self._ring(batch_size)  # copied[s]: CUDA event recorded after slot s's last copy
        self._rings_in_use.add(batch_size)
        slots = len(ring)
        free: queue.Queue = queue.Queue()
        for s in range(slots):
            free.put(s)
        ready: queue.Queue = queue.Queue()
        stop = threading.Event()

        def produce():
            for sel in plan:
                s = self._get(free, stop)
                if copied[s] is not None:
                    copied[s].synchronize()    # its last copy to the GPU may still be reading it
                images, labels, landmarks = (t.numpy() for t in ring[s])
                m = self._gather_into(sel, images, labels, landmarks)
                self._put(ready, (s, m), stop)

        def deliver(item):
            s, m = item
            out = tuple(self._upload(t[:m]) for t in ring[s])
            event = torch.cuda.Event()
            event.record()
            copied[s] = event
            free.put(s)
            return out

        try:
            yield from self._consume(plan, ready, stop, self._run(produce, ready, stop), deliver)
        finally:
            self._rings_in_use.discard(batch_size)

    def take(self, index):
        images, labels, landmarks = self._gather(np.asarray(index, dtype=np.int64))
        out = torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(landmarks)
        return out if self.device.type == "cpu" else tuple(t.to(self.device) for t in out)


def _copy_to_device(arrays: Arrays, device: torch.device) -> torch.Tensor:
    """The split's images on ``device``, copied in chunks (the host holds one chunk at a time)."""
    shape = arrays.images.shape
    out = torch.empty(shape, dtype=torch.uint8, device=device)
    per_row = max(1, int(np.prod(shape[1:])))
    step = max(1, DEVICE_COPY_CHUNK // per_row)
    for start in range(0, shape[0], step):
        chunk = np.asarray(arrays.images[start:start + step])
        out[start:start + len(chunk)].copy_(torch.from_numpy(chunk))
    return out


def feed(arrays: Arrays, device: torch.device, device_budget_bytes: int) -> SplitFeed:
    """The split's feed on ``device``; ``device_budget_bytes`` is how much of the device it may hold."""
    device = torch.device(device)
    in_memory = isinstance(arrays.images, np.ndarray) and not isinstance(arrays.images, np.memmap)
    placement = choose_placement(device, split_bytes(arrays), int(device_budget_bytes), in_memory)
    labels = torch.from_numpy(np.ascontiguousarray(arrays.labels, dtype=np.int64))
    landmarks = torch.from_numpy(np.ascontiguousarray(arrays.landmarks, dtype=np.float32))
    if placement == "device":
        return TensorFeed(_copy_to_device(arrays, device), labels.to(device), landmarks.to(device), device, "device")
    if placement == "memory":
        return TensorFeed(torch.from_numpy(arrays.images), labels, landmarks, device, "memory")
    return StreamFeed(arrays, device)


def as_feed(images, labels: torch.Tensor, landmarks: torch.Tensor | None, device: torch.device) -> SplitFeed:
    """``images`` if it is a feed already, else the tensors as one (tests, ``bench perf``); without
    ``landmarks`` its batches carry empty (B, 0, 2) ones."""
    if isinstance(images, SplitFeed):
        return images
    if landmarks is None:
        landmarks = torch.empty((len(labels), 0, 2), device=labels.device)
    return TensorFeed(images, labels, landmarks, device, "device" if images.device.type != "cpu" else "memory")


def rows_of(images, index: Sequence[int]) -> np.ndarray:
    """uint8 images of ``index`` on the host, from a feed or a tensor (figure galleries)."""
    if isinstance(images, SplitFeed):
        return images.take(index)[0].cpu().numpy()
    return images[torch.as_tensor(np.asarray(index, dtype=np.int64))].cpu().numpy()
