"""One job: train a model (unless it is kept) and evaluate its extractors, writing every record.

``run_job(job, store, reporter)`` is what every executor calls (in-process or as a Ray Tune trial).
1. Load the data and recompute the model id (and each evaluation id) from what was actually loaded,
   the code on disk and where it runs; stop if they differ from what the driver planned.
2. Train and keep the model (``models/<model id>/``), or read the kept weights back.
3. Evaluate each extractor and write its evaluation record (with figure arrays and per-face results).
"""
from __future__ import annotations

import dataclasses
import socket
import time
from datetime import datetime, timezone
from typing import Any, Callable

import torch

from au import get_codebook
from au.coverage import au_coverage
from bench.config.settings import Config, resolve
from bench.data import load_dataset
from bench.plan.identity import (check_identity, digest, evaluation_identity, model_identity, plugin_label,
                                 training_config)
from bench.plan.spec import Job
from bench.provenance import provenance
from bench.store.records import RunStore
from bench.sweep.evaluation import evaluate_model, test_facts
from bench.sweep.report_row import final_metrics
from bench.train.fit import fit
from bench.train.model import build_model, feature_sizes, make_method, pick_device
from bench.train.session import build_session, seed_everything, use_deterministic_kernels

Reporter = Callable[[dict[str, Any]], None]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def where_it_ran(device: torch.device) -> dict[str, Any]:
    """Device, torch threads, host and Ray node of this job (a cluster run spreads jobs over nodes)."""
    node = None
    try:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray there is no node id
        node = None
    return {"device": str(device), "threads": torch.get_num_threads(), "host": socket.gethostname(), "ray_node_id": node}


def throughput(result, n_train: int, device: torch.device) -> dict[str, float | None]:
    """Training images per second and peak memory, for the paper-size and GPU checks."""
    import resource

    epochs = len(result.history) - result.resumed_from_epoch
    return {"train_images_per_second": n_train * epochs / result.train_seconds if result.train_seconds else None,
            "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
            "peak_host_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def job_config(job: Job) -> Config:
    m = job.model
    return resolve(m.profile, list(m.overrides), m.dataset, m.method, m.au)


def _base_record(job: Job, extractors: list[str] | None = None) -> dict[str, Any]:
    m = job.model
    return {"spec": {**m.to_dict(), "evaluate": list(job.evaluate if extractors is None else extractors)},
            "setting": m.setting}


def _train(job: Job, store: RunStore, config: Config, data, identity: dict, reporter: Reporter | None):
    """Train, keep the selected weights, return (model, trained method, model record)."""
    m = job.model
    session = build_session(m.method, m.dataset, m.seed, config, m.au, data=data)
    coverage = None
    if m.au:
        coverage = au_coverage(data.train.landmarks, data.train.labels, tuple(data.train.images.shape[1:3]),
                               get_codebook(config.au.codebook), config.au.edge)
    checkpoint = store.checkpoint_path(m.model_id)
    result = fit(session, reporter, checkpoint if config.train.checkpoint else None)
    if result.best_state is not None:
        session.model.load_state_dict(result.best_state)
    record = {
        **_base_record(job), "id": m.model_id, "kind": "model", "created": now(), "identity": identity,
        "cell": {"method": m.method, "dataset": m.dataset, "au": m.au, "seed": m.seed},
        "training_config": training_config(config, m.au), "history": result.history,
        "selection": {"split": config.train.select_on, "best_epoch": result.best_epoch, "cl": result.best_acc},
        "alignment_layers": list(session.align_layers),
        "data": {**(data.stats or {}), "dataset": m.dataset, "au_coverage": None if coverage is None else coverage.share},
        "timings": {"train_seconds": result.train_seconds, "resumed_from_epoch": result.resumed_from_epoch,
                    **throughput(result, len(data.train.labels), session.device)},
        "provenance": {**provenance(), **where_it_ran(session.device)},
    }
    if config.train.keep_models:
        store.models.save(m.model_id, session.model.state_dict(), record)
    checkpoint.unlink(missing_ok=True)
    return session.model, session.trained, record, session.step.channels_last, session.device


def _load(job: Job, store: RunStore, config: Config, data):
    """The kept model of ``job`` (or the older-code model it reuses), read back onto the device."""
    m = job.model
    model_id = job.source_model or m.model_id
    record = store.models.record(model_id)
    if record is None or not store.models.is_ready(model_id):
        raise RuntimeError(f"model {model_id} of {m.label} is not in {store.run_dir}/models; run `bench run` to train it")
    seed_everything(m.seed)
    use_deterministic_kernels(config.train.deterministic)
    device = pick_device()
    trained = make_method(m.method, config)
    model = build_model(trained, config, data.num_classes)
    model.load_state_dict(store.models.load_weights(model_id))
    model = model.to(device)
    channels_last = device.type == "cuda" and config.train.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    feature_sizes(model, config.data.image_size, device, trained.needs_labels)     # the shape check a session does
    return model, trained, record, channels_last, device


def run_job(job: Job, store: RunStore, reporter: Reporter | None = None) -> dict[str, str]:
    """Run ``job``; returns {extractor: error} for the evaluations that failed (empty: all landed)."""
    started = time.perf_counter()
    m = job.model
    planned = bool(m.model_id or job.source_model)
    config = job_config(job)
    device_type = pick_device().type
    threads = torch.get_num_threads()
    data = load_dataset(m.dataset, config.data, m.seed)
    identity = model_identity(config, m.method, m.au, data.fingerprint, device_type, threads)
    if m.model_id:                     # a job built by hand (tests, scripts) has none to check against
        check_identity(m.model_id, identity, "model")
    else:                              # ... and is kept under the id of what it loaded
        job = dataclasses.replace(job, model=dataclasses.replace(m, model_id=digest(identity)))
        m = job.model
    if job.train:
        model, trained, model_record, channels_last, device = _train(job, store, config, data, identity, reporter)
    else:
        model, trained, model_record, channels_last, device = _load(job, store, config, data)
    model_id = job.source_model or m.model_id
    extractors = [make_method(name, config) for name in job.evaluate]
    eval_identities = [evaluation_identity(model_id, config, name, device_type, threads) for name in job.evaluate]
    if planned:                                 # planned by the driver (not built by hand)
        for expected, ident in zip(job.eval_ids, eval_identities):
            check_identity(expected, ident, "evaluation")
    result = evaluate_model(model, extractors, trained, data, config, device, channels_last, m.seed, m.dataset)
    selection = model_record.get("selection") or {}
    model_info = {"id": model_id, "created": model_record.get("created"), "older_code": job.older_code,
                  "imported": model_record.get("imported")}
    common = {"alignment_layers": ",".join(model_record.get("alignment_layers") or []),
              "selection_split": selection.get("split"), "best_epoch": selection.get("best_epoch"),
              "selection_cl": selection.get("cl"), "setting": m.setting, "config_hash": config.digest(),
              "model_id": model_id, "image_size": config.data.image_size, "epochs": config.train.epochs,
              **test_facts(data)}
    for method, eval_id, ident in zip(extractors, job.eval_ids, eval_identities):
        row = {"method": method.name, "title": method.title, "family": method.family, "cam_kind": method.cam_kind,
               "shared_model": m.method if method.name != m.method else None, "plugin": plugin_label(ident),
               "method_config": ident["method_config"], **common}
        if method.name in result.failures:
            row.update(status="failed", error=result.failures[method.name])
        else:
            row.update(status="ok", error=None, **result.metrics[method.name])
            maps = {k: v for k, v in result.maps.items() if "." not in k or k.split(".")[0] == method.name}
            store.evaluations.write_maps(eval_id, maps)
            if method.name in result.faces:
                store.evaluations.write_faces(eval_id, result.faces[method.name])
        store.evaluations.write({
            **_base_record(job, [method.name]), "id": eval_id, "kind": "evaluation", "created": now(), "model": model_info,
            "status": "ok", "error": None, "rows": [row], "identity": ident,
            "history": model_record.get("history") or [], "data": {**(model_record.get("data") or {}),
                                                                      "placement": data.stats.get("placement")},
            "timings": {**((model_record.get("timings") or {}) if job.train else {}), "eval_seconds": result.seconds,
                        "total_seconds": time.perf_counter() - started},
            "provenance": {**provenance(), **where_it_ran(device)},
        })
    if reporter is not None:          # the final row, for experiment trackers (Ray Tune's loggers)
        rows = [{"method": name, **metrics} for name, metrics in result.metrics.items()]
        history = model_record.get("history") or []
        last = history[-1] if history else {}
        epochs = config.train.epochs
        reporter({"epoch": epochs, "epochs": epochs, "train_loss": last.get("train_loss", float("nan")),
                  "best_cl": float("nan") if selection.get("cl") is None else selection["cl"], **final_metrics(rows)})
    return dict(result.failures)


def record_failure(job: Job, store: RunStore, error: str) -> None:
    """A job that raised: its model (when it was to be trained) and each evaluation are recorded as failed."""
    base = _base_record(job)
    if job.train:
        store.models.save_failed(job.model.model_id, {**base, "id": job.model.model_id, "kind": "model",
                                                      "created": now()}, error)
    for name, eval_id in zip(job.evaluate, job.eval_ids):
        store.evaluations.write({**_base_record(job, [name]), "id": eval_id, "kind": "evaluation", "created": now(),
                                 "model": {"id": job.source_model or job.model.model_id},
                                 "status": "failed", "error": error, "rows": []})
