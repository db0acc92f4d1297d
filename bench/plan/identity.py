"""What a trial's numbers depend on, gathered in one place and hashed into its id.

A rerun skips a trial whose id has a finished record, so the id must change whenever anything
that can move a number changes: the resolved configuration (profile, dataset/method/AU tables,
overrides), each method's resolved ``Config`` with its defaults, the plugin's distribution and
version, and the data the trial reads (its fingerprint covers the resolved root, the files, the
preprocessing, the landmarks actually used and the validation carve). The driver computes the
identity before any trial starts; each trial recomputes it from what it actually loaded and
refuses to run when they differ (e.g. landmarks re-detected or a profile edited mid-sweep).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Iterable

from bench.config.settings import Config, method_options
from methods import get_method
from methods.registry import plugin_origin


class IdentityMismatchError(RuntimeError):
    """The trial would compute its numbers from something other than what its id promises."""


def method_identity(name: str, config: Config) -> dict[str, Any]:
    """A method's resolved Config (defaults included) and where its code comes from."""
    cls = get_method(name)
    resolved = cls.make_config(method_options(config, name))
    return {"config": dataclasses.asdict(resolved), "plugin": plugin_origin(cls)}


def trial_identity(config: Config, methods: Iterable[str], data_fingerprint: str) -> dict[str, Any]:
    """The JSON-serialisable identity of one trial (recorded in its result file)."""
    return {"config": config.digest(methods=False), "data": data_fingerprint,
            "methods": {name: method_identity(name, config) for name in dict.fromkeys(methods)}}


def digest(identity: dict[str, Any]) -> str:
    blob = json.dumps(identity, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def plugin_label(identity: dict[str, Any], method: str) -> str:
    """``distribution==version`` of one method's plugin, for result rows."""
    plugin = identity["methods"][method]["plugin"]
    return f"{plugin['distribution']}=={plugin['version']}"


def check_identity(expected: str, identity: dict[str, Any]) -> None:
    """Stop a trial whose inputs changed after the sweep computed its id."""
    if digest(identity) != expected:
        raise IdentityMismatchError(
            "this trial's inputs changed after `bench run` planned it (data, landmarks, profile or plugin code): "
            "its id no longer describes what it would compute; run the same `bench run` command again to plan "
            "the trial afresh")
