"""What a model's weights and an evaluation's numbers depend on, and the ids hashed from them.

*Model id* = digest of ``model_identity``: the trained method and its resolved Config (defaults
included) with its plugin's distribution and version; the training-relevant configuration
(``training_config``: not ``eval.*``, the evaluation batch size, the device budget, checkpointing or
preflight thresholds, not the data root); the data by content (``Splits.fingerprint``: relative
paths, sizes, content digests, labels, preprocessing, the landmarks actually used, the validation
carve); the content of weight files named in the configuration; the normalised source of the code
that trains (``bench.plan.code``); library versions; device type and, on CPU, the thread count.

*Evaluation id* = digest of ``evaluation_identity``: the model id, the extractor (method, resolved
Config, plugin, code), the evaluation configuration, the evaluation code, libraries and device.

The driver computes both before anything runs; a job recomputes them from what it actually loaded
and refuses to run when they differ (``check_identity``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from functools import lru_cache
from typing import Any

from bench.config.settings import Config, method_options
from bench.provenance import library_versions
from bench.plan.code import EVALUATION_ROOTS, TRAINING_ROOTS, changed_modules, code_of, module_path
from methods import get_method
from methods.registry import plugin_origin

TRAINING_LIBRARIES = ("torch", "torchvision", "timm", "numpy", "pillow")
EVALUATION_LIBRARIES = TRAINING_LIBRARIES + ("grad-cam", "scipy", "opencv-python-headless")

#: Settings that never change a model's weights (they change what is evaluated, where data sits, or
#: when a run stops), so a change to them trains nothing.
NOT_TRAINING = {"eval": None, "train": ("eval_batch_size", "checkpoint"),
                "data": ("root", "device_budget", "min_au_coverage", "max_skipped", "landmarks")}


class IdentityMismatchError(RuntimeError):
    """The job would compute its numbers from something other than what its id promises."""


def digest(identity: dict[str, Any]) -> str:
    blob = json.dumps(identity, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def weight_files(*sections: dict[str, Any]) -> dict[str, str]:
    """Content digests of the files that configuration values name (pretrained weights and the like):
    a changed file behind the same path must change the id, a copy elsewhere must not."""
    out = {}
    for section in sections:
        for key, value in section.items():
            if isinstance(value, str) and value and os.path.isfile(value):
                st = os.stat(value)
                out[key] = _file_digest(os.path.realpath(value), st.st_size, st.st_mtime_ns)
    return out


def training_config(config: Config, align: bool) -> dict[str, Any]:
    content = config.to_dict()
    content.pop("methods")
    for section, keys in NOT_TRAINING.items():
        if keys is None:
            content.pop(section, None)
        else:
            for key in keys:
                content[section].pop(key, None)
    if not align:                       # without alignment no AU setting reaches the weights
        content.pop("au")
    return content


def resolved_method(name: str, config: Config) -> tuple[type, dict[str, Any]]:
    cls = get_method(name)
    return cls, dataclasses.asdict(cls.make_config(method_options(config, name)))


def execution(device_type: str, threads: int) -> dict[str, Any]:
    """Where it runs: CPU reductions depend on the thread count, CUDA kernels on the device."""
    return {"device": device_type, "threads": threads if device_type == "cpu" else None}


def as_stored(identity: dict[str, Any]) -> dict[str, Any]:
    """The identity as it reads back from a record (tuples become lists), so comparisons are exact."""
    return json.loads(json.dumps(identity, sort_keys=True, default=list))


def model_identity(config: Config, method: str, align: bool, data_fingerprint: str, device_type: str,
                   threads: int) -> dict[str, Any]:
    cls, resolved = resolved_method(method, config)
    trained_config = training_config(config, align)
    files = weight_files(trained_config["model"], resolved)
    for section in (trained_config["model"], resolved):     # a file counts by its content, not where it lies
        for key in files:
            if key in section:
                section[key] = f"file:{files[key]}"
    return as_stored({
        "method": method, "method_config": resolved, "plugin": plugin_origin(cls),
        "config": trained_config, "data": data_fingerprint, "files": files,
        "code": code_of(TRAINING_ROOTS, [cls]), "libraries": library_versions(TRAINING_LIBRARIES),
        "execution": execution(device_type, threads),
    })


def evaluation_config(config: Config) -> dict[str, Any]:
    return {"eval": dataclasses.asdict(config.eval), "eval_batch_size": config.train.eval_batch_size,
            "codebook": config.au.codebook, "edge": config.au.edge}


def evaluation_identity(model_id: str, config: Config, method: str, device_type: str, threads: int) -> dict[str, Any]:
    cls, resolved = resolved_method(method, config)
    return as_stored({
        "model": model_id, "method": method, "method_config": resolved, "plugin": plugin_origin(cls),
        "config": evaluation_config(config), "code": code_of(EVALUATION_ROOTS, [cls]),
        "libraries": library_versions(EVALUATION_LIBRARIES), "execution": execution(device_type, threads),
    })


def plugin_label(identity: dict[str, Any]) -> str:
    """``distribution==version`` of the evaluated method's plugin, for result rows."""
    plugin = identity["plugin"]
    return f"{plugin['distribution']}=={plugin['version']}"


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for key, value in d.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def why_changed(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """Why a stored result does not count for ``new``: 'new', or the first differing part named."""
    if not old:
        return "new"
    reasons = []
    if old.get("method_config") != new.get("method_config") or old.get("plugin") != new.get("plugin"):
        reasons.append("method configuration")
    for part, title in (("config", "configuration"),):
        a, b = _flat(old.get(part) or {}), _flat(new.get(part) or {})
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if keys:
            shown = ", ".join(f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:3])
            reasons.append(f"{title} ({shown}{', …' if len(keys) > 3 else ''})")
    if old.get("model", new.get("model")) != new.get("model"):
        reasons.append("model (retrained)")
    if old.get("data") != new.get("data"):
        reasons.append("data (content or landmarks changed)")
    if old.get("files") != new.get("files"):
        reasons.append("weight file content")
    changed = changed_modules(old.get("code") or {}, new.get("code") or {})
    if changed:
        shown = ", ".join(module_path(m) for m in changed[:3])
        reasons.append(f"code ({shown}{', …' if len(changed) > 3 else ''})")
    libs = [f"{k} {old['libraries'].get(k)} -> {v}" for k, v in (new.get("libraries") or {}).items()
            if (old.get("libraries") or {}).get(k) != v]
    if libs:
        reasons.append(f"library version ({', '.join(libs[:3])})")
    if old.get("execution") != new.get("execution"):
        reasons.append(f"device ({old.get('execution')} -> {new.get('execution')})")
    return "; ".join(reasons) or "unchanged identity"


def check_identity(expected: str, identity: dict[str, Any], what: str) -> None:
    """Stop a job whose inputs changed after the sweep computed its id."""
    if digest(identity) != expected:
        raise IdentityMismatchError(
            f"this {what}'s inputs changed after `bench run` planned it (data, landmarks, profile, code or plugin): "
            "its id no longer describes what it would compute; run the same `bench run` command again to plan "
            "it afresh")
