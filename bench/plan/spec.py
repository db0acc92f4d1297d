"""What a sweep runs: models to have (one per grid cell's trained method) and jobs that produce them.

A ``ModelSpec`` names a model: the method that is *trained*, dataset, AU mode, seed, and the
command-line configuration (profile + overrides); ``model_id`` is the digest of everything its
weights depend on (``bench.plan.identity``). Post-hoc extractors (``trains_like``) are evaluated on
the model of the method they name unless ``share`` is off.

A ``Job`` is one unit of work for an executor: train the model (when it is not kept yet) and
evaluate the extractors whose evaluations are missing, or only evaluate a kept model.
``setting`` names the training-relevant command-line configuration a run folder was filled with
(overrides that never reach the weights, ``eval.*``, ``data.root`` and the like, are left out: an
extended evaluation of the same models, or the same data under another root, is the same setting).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable

from bench.plan.identity import NOT_TRAINING
from methods import get_method


def _counts_for_training(key: str) -> bool:
    section, _, field = key.partition(".")
    if section not in NOT_TRAINING:
        return True
    keys = NOT_TRAINING[section]
    return keys is not None and field not in keys


def _training_overrides(overrides: Iterable[tuple[str, Any]]) -> list[list[Any]]:
    return [list(kv) for kv in overrides if _counts_for_training(str(kv[0]))]


def setting_digest(profile: str, overrides: Iterable[tuple[str, Any]]) -> str:
    blob = json.dumps([profile, _training_overrides(overrides)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ModelSpec:
    method: str                        # the method whose model is trained
    dataset: str
    au: bool                           # AU alignment on/off
    seed: int
    profile: str
    overrides: tuple[tuple[str, Any], ...] = ()
    model_id: str = ""

    @property
    def setting(self) -> str:
        return setting_digest(self.profile, self.overrides)

    @property
    def cell(self) -> tuple:
        return self.method, self.dataset, self.au, self.seed

    @property
    def label(self) -> str:
        return f"{self.method} {self.dataset} {'w/ AU' if self.au else 'w/o AU'} seed {self.seed}"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["overrides"] = [list(kv) for kv in self.overrides]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["overrides"] = tuple(tuple(kv) for kv in d.get("overrides", ()))
        return cls(**d)


@dataclass(frozen=True)
class Job:
    model: ModelSpec
    evaluate: tuple[str, ...]          # extractors evaluated by this job (one record each)
    eval_ids: tuple[str, ...]          # their evaluation ids, in the same order
    train: bool                        # train the model first (False: load the kept model)
    reason: str = ""                   # why it runs, for the plan shown before the sweep
    threads: int = 1                   # torch threads (the CPU count the model id assumes)
    source_model: str = ""             # a kept model other than ``model.model_id`` (bench eval, --reuse-older-code)
    older_code: bool = False           # that model was trained by older code (its rows are marked)

    @property
    def id(self) -> str:
        blob = json.dumps([self.model.model_id, list(self.eval_ids), self.train], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        what = "train + evaluate" if self.train else "evaluate"
        return f"{'+'.join(self.evaluate) or self.model.method} {self.model.dataset} " \
               f"{'w/ AU' if self.model.au else 'w/o AU'} seed {self.model.seed} ({what})"

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "evaluate": list(self.evaluate), "eval_ids": list(self.eval_ids),
                "train": self.train, "reason": self.reason, "threads": self.threads, "source_model": self.source_model,
                "older_code": self.older_code}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Job":
        return cls(ModelSpec.from_dict(d["model"]), tuple(d["evaluate"]), tuple(d["eval_ids"]), bool(d["train"]),
                   d.get("reason", ""), int(d.get("threads", 1)), d.get("source_model", ""),
                   bool(d.get("older_code", False)))


def group_methods(methods: Iterable[str], share: bool = True) -> list[tuple[str, tuple[str, ...]]]:
    """[(trained method, evaluated methods)]: extractors join the run of the method they train like."""
    groups: dict[str, list[str]] = {}
    for name in methods:
        cls = get_method(name)
        train = cls.train_group() if share else name
        groups.setdefault(train, []).append(name)
    return [(train, tuple(evals)) for train, evals in groups.items()]
