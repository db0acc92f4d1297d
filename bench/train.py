"""One trial: train a method with or without AU alignment, select the best epoch, evaluate on test.

``run_trial(spec, store, reporter)`` is the pure core that every executor calls (in-process or as
a Ray Tune trial). The step keeps everything on the device: AU maps are rendered there from the
augmented landmarks at each alignment layer's size, losses accumulate as tensors, and the host
reads numbers once per epoch.
"""
from __future__ import annotations

import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from au import alignment_loss, get_codebook, render_au_maps
from bench.config import Config, method_options, resolve
from bench.data import load_dataset
from bench.data.cache import missing_landmarks
from bench.data.placement import gather, place
from bench.data.transforms import augment
from bench.evaluate import accuracy, evaluate
from bench.provenance import provenance
from bench.spec import TrialSpec
from bench.store import RunStore
from methods import Batch, Method, get_method

Reporter = Callable[[dict[str, Any]], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def make_method(name: str, config: Config) -> Method:
    cls = get_method(name)
    return cls(cls.make_config(method_options(config, name)))


def model_options(config: Config) -> dict[str, Any]:
    m = config.model
    return {"backbone": m.backbone, "pretrained": m.pretrained, "large_maps": m.large_maps, "width": m.width,
            "pretrained_path": m.pretrained_path or None}


def build_model(method: Method, config: Config, num_classes: int) -> torch.nn.Module:
    return method.build(num_classes, method.make_backbone(model_options(config)))


def feature_sizes(model: torch.nn.Module, image_size: int, device: torch.device) -> dict[str, tuple[int, int]]:
    """Spatial size of every named feature map, from one probe forward."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, image_size, image_size, device=device),
                    labels=torch.zeros(2, dtype=torch.long, device=device))
    model.train(was_training)
    return {k: tuple(v.shape[-2:]) for k, v in out.features.items() if v.dim() == 4}


def make_optimizer(model: torch.nn.Module, config: Config):
    t = config.train
    if t.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, nesterov=t.nesterov,
                              weight_decay=t.weight_decay)
    elif t.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {t.optimizer!r} (train.optimizer: sgd | adamw)")
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, t.lr_step), gamma=t.lr_gamma)
    return opt, sched


@dataclass
class TrainStep:
    """The hot path: augment, render AU maps, mix, forward, loss, backward, update. No host sync."""

    method: Method
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    config: Config
    device: torch.device
    align: bool
    align_layers: tuple[str, ...]
    layer_sizes: dict[str, tuple[int, int]]
    generator: torch.Generator

    def __post_init__(self):
        self.codebook = get_codebook(self.config.au.codebook)
        self.cuda = self.device.type == "cuda"
        self.channels_last = self.cuda and self.config.train.channels_last
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                         if self.cuda and self.config.train.amp else nullcontext())
        self.sizes = sorted({self.layer_sizes[name] for name in self.align_layers})

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        t = self.config.train
        x, lm = augment(images, landmarks, self.generator, flip=t.flip, rotation=t.rotation,
                        crop_scale=t.crop_scale, jitter=t.jitter, channels_last=self.channels_last)
        batch = Batch(images=x, labels=labels, landmarks=lm)
        if self.align:
            H, W = x.shape[-2:]
            rendered = [render_au_maps(lm, labels, (H, W), size, self.codebook, self.config.au.edge)
                        for size in self.sizes]
            valid = rendered[0][1]
            for _, v in rendered[1:]:
                valid = valid & v
            batch = batch.replace(au_maps={s: m for s, (m, _) in zip(self.sizes, rendered)}, au_valid=valid)
        batch = self.method.mix(batch, self.generator)
        with self.autocast:
            output = self.model(batch.images, labels=batch.labels if self.method.needs_labels else None)
            loss = self.method.loss(output, batch)
            if self.align:
                loss = loss + alignment_loss(output.features, batch.au_maps, batch.au_valid,
                                             self.align_layers, self.config.au.weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


def _save_checkpoint(path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


@dataclass
class Session:
    """Everything one training run needs, built once from a spec's method/dataset/seed/config."""

    config: Config
    device: torch.device
    data: Any
    trained: Method
    model: torch.nn.Module
    align_layers: tuple[str, ...]
    step: TrainStep
    scheduler: Any
    generator: torch.Generator


def build_session(method: str, dataset: str, seed: int, config: Config, align: bool) -> Session:
    seed_everything(seed)
    device = pick_device()
    data = load_dataset(dataset, config.data, seed)
    trained = make_method(method, config)
    model = build_model(trained, config, data.num_classes).to(device)
    if device.type == "cuda" and config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    align_layers = tuple(config.au.layers) or trained.alignment_layers
    sizes = feature_sizes(model, config.data.image_size, device)
    missing = [name for name in align_layers if name not in sizes]
    if missing:
        raise ValueError(f"alignment layer(s) {missing} not among the model's maps {list(sizes)} (set au.layers)")
    optimizer, scheduler = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(seed)
    step = TrainStep(trained, model, optimizer, config, device, align, align_layers, sizes, generator)
    return Session(config, device, data, trained, model, align_layers, step, scheduler, generator)


@dataclass
class FitResult:
    best_state: dict | None
    best_epoch: int
    best_acc: float
    history: list[dict[str, Any]]
    resumed_from_epoch: int          # 0 for a fresh run
    train_seconds: float


EpochHook = Callable[[Session, int], dict[str, float]]


def fit(s: Session, reporter: Reporter | None = None, checkpoint: "Path | None" = None,
        epoch_metrics: EpochHook | None = None) -> FitResult:
    """Train for ``train.epochs``, keeping the best epoch on the selection split.

    With ``checkpoint``, every epoch is saved there atomically (model, optimiser, scheduler, RNG
    states, best state, history) and a run that finds the file resumes after its last epoch.
    ``epoch_metrics`` adds metrics to each epoch's report (``bench tune``: validation ATT-COS).
    """
    t, model, device = s.config.train, s.model, s.device
    train_x, train_y, train_lm = place(s.data.train, device)
    sel_x, sel_y, _ = place(s.data.split(t.select_on), device)
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

    n = len(train_y)
    n_batches = n // t.batch_size if n % t.batch_size == 1 else -(-n // t.batch_size)  # no batch of 1
    train_seconds = 0.0
    for epoch in range(start_epoch, t.epochs):
        epoch_start = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=s.generator).to(train_x.device)   # one copy per epoch
        loss_sum = torch.zeros((), device=device)
        for b in range(n_batches):
            idx = order[b * t.batch_size:(b + 1) * t.batch_size]
            loss_sum += s.step(gather(train_x, idx, device), gather(train_y, idx, device),
                               gather(train_lm, idx, device))
        s.scheduler.step()
        acc = accuracy(model, s.trained.needs_labels, sel_x, sel_y, batch_size=t.eval_batch_size, device=device,
                       channels_last=s.step.channels_last)
        acc_value, loss_value = float(acc), float(loss_sum) / max(n_batches, 1)   # one sync per epoch
        train_seconds += time.perf_counter() - epoch_start
        if acc_value >= best_acc:
            best_acc, best_epoch = acc_value, epoch
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        extra = epoch_metrics(s, epoch) if epoch_metrics is not None else {}
        history.append({"epoch": epoch, "train_loss": loss_value, f"{t.select_on}_cl": acc_value,
                        "seconds": time.perf_counter() - epoch_start, **extra})
        if checkpoint is not None:
            _save_checkpoint(checkpoint, {
                "model": model.state_dict(), "optimizer": s.step.optimizer.state_dict(),
                "scheduler": s.scheduler.state_dict(), "generator": s.generator.get_state(),
                "torch_rng": torch.get_rng_state(), "epoch": epoch, "best_acc": best_acc,
                "best_epoch": best_epoch, "best_state": best_state, "history": history,
            })
        if reporter is not None:
            reporter({"epoch": epoch + 1, "epochs": t.epochs, "train_loss": loss_value,
                      f"{t.select_on}_cl": acc_value, "best_cl": best_acc, **extra})
    return FitResult(best_state, best_epoch, best_acc, history, start_epoch, train_seconds)


def run_trial(spec: TrialSpec, store: RunStore, reporter: Reporter | None = None) -> dict[str, Any]:
    """Train and evaluate one grid cell, write its record atomically, and return it."""
    started = time.perf_counter()
    config = resolve(spec.profile, list(spec.overrides), spec.dataset, spec.method)
    session = build_session(spec.method, spec.dataset, spec.seed, config, spec.au)
    t, model, device, data, step = config.train, session.model, session.device, session.data, session.step
    align_layers = session.align_layers
    evaluated = [make_method(name, config) for name in spec.evaluate]
    ckpt_path = store.checkpoint_path(spec.id)
    result = fit(session, reporter, ckpt_path if t.checkpoint else None)
    best_state, best_epoch, best_acc, history = result.best_state, result.best_epoch, result.best_acc, result.history
    train_seconds = result.train_seconds

    if best_state is not None:
        model.load_state_dict(best_state)
    eval_start = time.perf_counter()
    test_x, test_y, test_lm = place(data.test, device)
    figure_maps: dict[str, np.ndarray] = {}   # filled by the same evaluation pass (Fig. 1 arrays)
    metrics = evaluate(model, evaluated, test_x, test_y, test_lm, codebook=get_codebook(config.au.codebook),
                       edge=config.au.edge, class_names=data.class_names, batch_size=t.eval_batch_size,
                       device=device, layers=config.eval.layers, channels_last=step.channels_last,
                       maps=figure_maps)
    eval_seconds = time.perf_counter() - eval_start
    rows = []
    for method in evaluated:
        rows.append({
            "method": method.name, "title": method.title, "family": method.family, "cam_kind": method.cam_kind,
            "alignment_layers": ",".join(align_layers), "selection_split": t.select_on,
            "best_epoch": best_epoch, "selection_cl": best_acc, "config_hash": config.digest(),
            "data_fingerprint": data.fingerprint, "skipped_images": sum(data.skipped.values()),
            "test_without_landmarks": missing_landmarks(data.test), **metrics[method.name],
        })
    timings = {"train_seconds": train_seconds, "eval_seconds": eval_seconds,
               "total_seconds": time.perf_counter() - started, "resumed_from_epoch": result.resumed_from_epoch}
    store.write_maps(spec.id, figure_maps)   # before the record: a finished record always has its maps
    store.write(spec, "ok", rows, timings=timings, provenance={**provenance(), "device": str(device)},
                history=history)
    if ckpt_path.exists():
        ckpt_path.unlink()
    return {"rows": rows, "timings": timings}

