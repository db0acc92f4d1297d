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
from au.coverage import au_coverage
from bench.config.settings import Config, method_options, resolve
from bench.data import load_dataset
from bench.data.cache import missing_landmarks
from bench.data.feed import feed
from bench.data.placement import device_budget_bytes, trial_gpu_fraction
from bench.data.transforms import augment
from bench.metrics.base import accuracy, evaluate
from bench.train.health import LossMonitor
from bench.plan.identity import check_identity, plugin_label, trial_identity
from bench.train.optim import make_optimizer
from bench.provenance import provenance
from bench.plan.spec import TrialSpec
from bench.store.records import RunStore
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


def feature_sizes(model: torch.nn.Module, image_size: int, device: torch.device,
                  needs_labels: bool = False) -> dict[str, tuple[int, int]]:
    """Spatial size of every named feature map, from one probe forward (labels only where the
    method's forward takes them, as everywhere in the harness)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, image_size, image_size, device=device),
                    labels=torch.zeros(2, dtype=torch.long, device=device) if needs_labels else None)
    model.train(was_training)
    return {k: tuple(v.shape[-2:]) for k, v in out.features.items() if v.dim() == 4}


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
        """One update; returns the detached (classification, alignment) losses (``health.LOSS_TERMS``)."""
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
            method_loss = self.method.loss(output, batch)
            align_loss = (alignment_loss(output.features, batch.au_maps, batch.au_valid, self.align_layers,
                                         self.config.au.weight)
                          if self.align else torch.zeros((), device=method_loss.device))
        self.optimizer.zero_grad(set_to_none=True)
        (method_loss + align_loss).backward()
        self.optimizer.step()
        return torch.stack([method_loss.detach().float(), align_loss.detach().float()])


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


def use_deterministic_kernels(on: bool) -> None:
    """Set per trial (the switch is process-wide and Ray reuses worker processes). On CUDA, some
    backward kernels (atomic adds in pooling and interpolation) differ from run to run unless this
    is on; cuBLAS then needs a fixed workspace, set before CUDA starts in this process."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=True)
    torch.backends.cudnn.benchmark = False


def build_session(method: str, dataset: str, seed: int, config: Config, align: bool) -> Session:
    seed_everything(seed)
    device = pick_device()
    use_deterministic_kernels(config.train.deterministic)
    data = load_dataset(dataset, config.data, seed)
    trained = make_method(method, config)
    model = build_model(trained, config, data.num_classes).to(device)
    if device.type == "cuda" and config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    align_layers = tuple(config.au.layers) or trained.alignment_layers
    sizes = feature_sizes(model, config.data.image_size, device, trained.needs_labels)
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
    if device.type == "cuda":         # a reused Ray worker must not report an earlier trial's peak
        torch.cuda.reset_peak_memory_stats(device)
    budget = device_budget_bytes(device, s.config.data.device_budget, trial_gpu_fraction())
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
        acc = accuracy(model, s.trained.needs_labels, sel_x, sel_y, batch_size=t.eval_batch_size, device=device,
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


def where_it_ran(device: torch.device) -> dict[str, Any]:
    """Device, torch threads, host and Ray node of this trial (a cluster run spreads trials over nodes)."""
    import socket

    node = None
    try:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray there is no node id
        node = None
    return {"device": str(device), "threads": torch.get_num_threads(), "host": socket.gethostname(), "ray_node_id": node}


def throughput(result: "FitResult", n_train: int, device: torch.device) -> dict[str, float | None]:
    """Training images per second and peak memory, for the paper-size and GPU checks."""
    import resource

    epochs = len(result.history) - result.resumed_from_epoch
    return {"train_images_per_second": n_train * epochs / result.train_seconds if result.train_seconds else None,
            "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
            "peak_host_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def _select_sample(n: int, size: int, seed: int) -> torch.Tensor:
    """A seeded, sorted choice of ``size`` test faces (all when ``size`` is 0 or too large)."""
    if size <= 0 or size >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].sort().values


def extended_rows(model, methods: list[Method], ok: dict[str, dict], test, config: Config,
                  num_classes: int, device: torch.device, channels_last: bool, seed: int,
                  maps: dict[str, np.ndarray], failures: dict[str, str]) -> None:
    """Faithfulness, sanity and AU-localisation metrics (``--eval extended``) for each evaluated method,
    on a seeded sample of the test split (a feed); merged into ``ok`` rows, curves into the figure arrays."""
    from bench.metrics.extended import extended_metrics

    sample = test.take(_select_sample(len(test), config.eval.sample_size, seed).tolist())
    for method in methods:
        if method.name not in ok:
            continue
        try:
            result = extended_metrics(model, method, *sample, codebook=get_codebook(config.au.codebook),
                                      edge=config.au.edge, num_classes=num_classes, device=device,
                                      channels_last=channels_last, batch_size=config.train.eval_batch_size, seed=seed)
        except Exception as exc:  # noqa: BLE001 - this method's row fails, the others land
            failures[method.name] = f"extended evaluation: {type(exc).__name__}: {exc}"
            continue
        ok[method.name].update(result.metrics)
        for key, curve in result.curves.items():
            maps["curve_fractions" if key == "curve_fractions" else f"{method.name}.{key}"] = curve


def run_trial(spec: TrialSpec, store: RunStore, reporter: Reporter | None = None) -> dict[str, Any]:
    """Train and evaluate one grid cell, write its record atomically, and return it.

    The trial first recomputes its identity from the data it loaded and the plugins it runs; if
    that differs from the id ``bench run`` planned (``spec.identity``), it stops instead of filing
    numbers under the wrong id. Each evaluated method gets its own row: one extractor that fails
    gives a failed row for itself, and the trained model's other rows land.
    """
    started = time.perf_counter()
    config = resolve(spec.profile, list(spec.overrides), spec.dataset, spec.method, spec.au)
    session = build_session(spec.method, spec.dataset, spec.seed, config, spec.au)
    t, model, device, data, step = config.train, session.model, session.device, session.data, session.step
    identity = trial_identity(config, (spec.method, *spec.evaluate), data.fingerprint)
    if spec.identity:                 # a spec built by hand (tests, scripts) has none to check against
        check_identity(spec.identity, identity)
    coverage = None
    if spec.au:
        coverage = au_coverage(data.train.landmarks, data.train.labels, tuple(data.train.images.shape[1:3]),
                               get_codebook(config.au.codebook), config.au.edge)
    evaluated = [make_method(name, config) for name in spec.evaluate]
    ckpt_path = store.checkpoint_path(spec.id)
    result = fit(session, reporter, ckpt_path if t.checkpoint else None)

    if result.best_state is not None:
        model.load_state_dict(result.best_state)
    eval_start = time.perf_counter()
    test_x = feed(data.test, device, device_budget_bytes(device, config.data.device_budget, trial_gpu_fraction()))
    test_y, test_lm = test_x.labels, test_x.landmarks
    data.stats.setdefault("placement", {})["test"] = test_x.placement
    figure_maps: dict[str, np.ndarray] = {}   # filled by the same evaluation pass (Fig. 1 arrays)
    failures: dict[str, str] = {}
    metrics = evaluate(model, evaluated, test_x, test_y, test_lm, codebook=get_codebook(config.au.codebook),
                       edge=config.au.edge, class_names=data.class_names, batch_size=t.eval_batch_size,
                       device=device, layers=config.eval.layers, channels_last=step.channels_last,
                       maps=figure_maps, trained=session.trained, failures=failures)
    if config.eval.extended:
        extended_rows(model, evaluated, metrics, test_x, config, data.num_classes, device,
                      step.channels_last, spec.seed, figure_maps, failures)
        metrics = {name: m for name, m in metrics.items() if name not in failures}
    eval_seconds = time.perf_counter() - eval_start
    common = {"alignment_layers": ",".join(session.align_layers), "selection_split": t.select_on,
              "best_epoch": result.best_epoch, "selection_cl": result.best_acc, "setting": spec.setting,
              "config_hash": config.digest(), "data_fingerprint": data.fingerprint, "num_classes": data.num_classes,
              "skipped_images": sum(data.skipped.values()), "test_without_landmarks": missing_landmarks(data.test)}
    rows = []
    for method in evaluated:
        row = {"method": method.name, "title": method.title, "family": method.family, "cam_kind": method.cam_kind,
               "shared_model": spec.method if method.name != spec.method else None,
               "plugin": plugin_label(identity, method.name),
               "method_config": identity["methods"][method.name]["config"], **common}
        if method.name in failures:
            rows.append({**row, "status": "failed", "error": failures[method.name]})
        else:
            rows.append({**row, "status": "ok", "error": None, **metrics[method.name]})
    timings = {"train_seconds": result.train_seconds, "eval_seconds": eval_seconds,
               "total_seconds": time.perf_counter() - started, "resumed_from_epoch": result.resumed_from_epoch,
               **throughput(result, len(data.train.labels), device)}
    data_section = {**(getattr(data, "stats", None) or {}), "dataset": spec.dataset,
                    "au_coverage": None if coverage is None else coverage.share}
    store.write_maps(spec.id, figure_maps)   # before the record: a finished record always has its maps
    store.write(spec, "ok", rows, timings=timings, provenance={**provenance(), **where_it_ran(device)},
                history=result.history, data=data_section, identity=identity)
    if ckpt_path.exists():
        ckpt_path.unlink()
    if reporter is not None:          # the final row, for experiment trackers (Ray Tune's loggers)
        from bench.integrations.tracking import final_metrics

        final = final_metrics([row for row in rows if row["status"] == "ok"])
        last = result.history[-1] if result.history else {}
        reporter({"epoch": t.epochs, "epochs": t.epochs, "train_loss": last.get("train_loss", float("nan")),
                  "best_cl": result.best_acc, **final})
    return {"rows": rows, "timings": timings, "failures": failures}
