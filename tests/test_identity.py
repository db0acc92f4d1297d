"""A trial's id covers everything its numbers depend on, so skipping a finished trial is safe."""
import dataclasses

import pytest

from bench.config.settings import resolve
from bench.plan.identity import IdentityMismatchError, digest, trial_identity
from bench.sweep.preflight import plan_sweep
from methods import get_method


def _ids(methods, overrides=()):
    plan = plan_sweep(methods, ["synthetic"], [False, True], [0], "smoke", tuple(overrides), True)
    return {(s.method, s.au): s.id for s in plan.specs}


def _edit_default(monkeypatch, method, **defaults):
    cls = get_method(method)
    fields = {f.name: f.default for f in dataclasses.fields(cls.Config)}
    edited = dataclasses.make_dataclass("Config", [(k, type(v), dataclasses.field(default=v))
                                                   for k, v in {**fields, **defaults}.items()], frozen=True)
    monkeypatch.setattr(cls, "Config", edited)


def test_ids_are_stable_and_a_changed_default_reruns_its_trials_only(monkeypatch):
    methods = ["cam", "gradcam", "wildcat"]
    before = _ids(methods)
    assert _ids(methods) == before
    _edit_default(monkeypatch, "gradcam", target_layer="layer4")      # shares CAM's trained model
    after = _ids(methods)
    assert {k for k in before if before[k] != after[k]} == {("cam", False), ("cam", True)}
    monkeypatch.undo()
    assert _ids(methods, [("methods.wildcat.kmax", 0.25)])[("cam", True)] == before[("cam", True)]


def test_a_changed_plugin_default_changes_the_identity(monkeypatch):
    config = resolve("smoke")
    before = digest(trial_identity(config, ("wildcat",), "data"))
    _edit_default(monkeypatch, "wildcat", kmax=0.3)
    after = trial_identity(config, ("wildcat",), "data")
    assert after["methods"]["wildcat"]["config"]["kmax"] == 0.3 and digest(after) != before


def test_the_data_fingerprint_and_plugin_version_are_part_of_it():
    config = resolve("smoke")
    base = trial_identity(config, ("cam",), "data-a")
    assert digest(base) != digest(trial_identity(config, ("cam",), "data-b"))
    assert base["methods"]["cam"]["plugin"]["distribution"] == "au-cam-bench"
    bumped = {**base, "methods": {"cam": {**base["methods"]["cam"],
                                          "plugin": {**base["methods"]["cam"]["plugin"], "version": "9.9"}}}}
    assert digest(bumped) != digest(base)


def test_a_trial_whose_inputs_changed_refuses_to_run(tmp_path):
    from bench.store.records import RunStore
    from bench.train.trial import run_trial

    spec = plan_sweep(["cam"], ["synthetic"], [False], [0], "smoke", (), True).specs[0]
    stale = dataclasses.replace(spec, identity="0" * 16)
    with pytest.raises(IdentityMismatchError, match="changed after `bench run` planned it"):
        run_trial(stale, RunStore(tmp_path))
    assert not list(tmp_path.rglob("*.json"))
