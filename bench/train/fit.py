"""The epoch loop: train, select the best epoch on the selection split, checkpoint every epoch.

Selection uses top-1 accuracy computed here (``selection_accuracy``), not the evaluation stage's
code, so that changing a metric never changes a model's id (docs/reproducibility.md).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from bench.data.feed import as_feed, feed
from bench.data.placement import device_budget_bytes, trial_gpu_fraction
from bench.data.transforms import to_input
from bench.files import atomic_write
from bench.train.health import LossMonitor
from bench.train.session import Session

Reporter = Callable[[dict[str, Any]], None]


def selection_accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                       batch_size: int, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """Top-1 accuracy (%) as a device tensor (no sync): the model-selection metric."""
    model.eval()
    correct = torch.zeros((), device=device, dtype=torch.long)
    with torch.no_grad():
        for x, y, _ in as_feed(images, labels, None, device).batches(None, batch_size, False):
            x = to_input(x, channels_last)
            logits = model(x).logits            # never the labels: a plugin's logits must not read them
            correct += (logits.argmax(1) == y).sum()
    return correct.double() * 100 / max(len(labels), 1)


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda fh: torch.save(state, fh))


@dataclass
class FitResult:
    best_state: dict | None
    best_epoch: int
    best_acc: float
    history: list[dict[str, Any]]
    resumed_from_epoch: int          # 0 for a fresh run
    train_seconds: float


EpochHook = Callable[[Session, int], dict[str, float]]


def fit(s: Session, reporter: Reporter | None = None, checkpoint: Path | None = None,
        epoch_metrics: EpochHook | None = None) -> FitResult:
    """Train for ``train.epochs``, keeping the best epoch on the selection split.

    With ``checkpoint``, every epoch is saved there atomically (model, optimiser, scheduler, RNG
    states, best state, history) and a run that finds the file resumes after its last epoch.
    ``epoch_metrics`` adds metrics to each epoch's report (``bench tune``: validation ATT-COS).
    """
    t, model, device = s.config.train, s.model, s.device
    if device.type == "cuda":         # a reused Ray worker must not report an earlier trial's peak
        torch.cuda.reset_peak_memory_stats(device)
    reserved = torch.cuda.memory_reserved(device) if device.type == "cuda" else 0     # the model's own memory
    budget = device_budget_bytes(device, s.config.data.device_budget, trial_gpu_fraction(), reserved_bytes=reserved)
    train = feed(s.data.train, device, budget)                       # on the GPU if it fits, else streamed
    sel_x = feed(s.data.split(t.select_on), device, budget - train.device_bytes)
    sel_y = sel_x.labels
    s.data.stats["placement"] = {"train": train.placement, t.select_on: sel_x.placement}
    start_epoch, best_acc, best_state, best_epoch, history = 0, -1.0, None, -1, []
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        s.step.optimizer.load_state_dict(state["optimizer"])
        s.scheduler.load_state_dict(state["scheduler"])
        s.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, best_acc, best_epoch = state["epoch"] + 1, state["best_acc"], state["best_epoch"]
        best_state, history = state["best_state"], state["history"]

    monitor = LossMonitor(device)
    train_seconds = 0.0
    for epoch in range(start_epoch, t.epochs):
        epoch_start = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), generator=s.generator)
        monitor.start_epoch(epoch)
        for images, labels, landmarks in train.batches(order, t.batch_size):   # no last batch of 1
            monitor.add(s.step(images, labels, landmarks))
        loss_value = monitor.end_epoch()
        s.scheduler.step()
        acc = selection_accuracy(model, sel_x, sel_y, batch_size=t.eval_batch_size, device=device,
                       channels_last=s.step.channels_last)
        acc_value = float(acc)
        train_seconds += time.perf_counter() - epoch_start
        if acc_value >= best_acc:
            best_acc, best_epoch = acc_value, epoch
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        extra = epoch_metrics(s, epoch) if epoch_metrics is not None else {}
        history.append({"epoch": epoch, "train_loss": loss_value, f"{t.select_on}_cl": acc_value,
                        "seconds": time.perf_counter() - epoch_start, **extra})
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "model": model.state_dict(), "optimizer": s.step.optimizer.state_dict(),
                "scheduler": s.scheduler.state_dict(), "generator": s.generator.get_state(),
                "torch_rng": torch.get_rng_state(), "epoch": epoch, "best_acc": best_acc,
                "best_epoch": best_epoch, "best_state": best_state, "history": history,
            })
        if reporter is not None:
            reporter({"epoch": epoch + 1, "epochs": t.epochs, "train_loss": loss_value,
                      f"{t.select_on}_cl": acc_value, "best_cl": best_acc, **extra})
    return FitResult(best_state, best_epoch, best_acc, history, start_epoch, train_seconds)
