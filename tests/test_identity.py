"""Model and evaluation ids cover exactly what their numbers depend on (docs/reproducibility.md)."""
import dataclasses
import sys
import textwrap

import pytest

from bench.config.settings import resolve
from bench.plan.code import code_digests
from bench.plan.identity import (IdentityMismatchError, digest, evaluation_identity, model_identity, why_changed)
from bench.sweep.preflight import plan_jobs
from methods import get_method


def _plan(tmp_path, methods, overrides=(), **kw):
    return plan_jobs(methods, ["synthetic"], [False, True], [0], "smoke", tuple(overrides), True, tmp_path, **kw)[0]


def _ids(tmp_path, methods, overrides=(), **kw):
    """{(trained method, au): model id} and {(extractor, au): evaluation id}."""
    plan = _plan(tmp_path, methods, overrides, **kw)
    models = {(m.method, m.au): m.model_id for m in plan.models}
    evals = {(name, job.model.au): eval_id for job in plan.jobs for name, eval_id in zip(job.evaluate, job.eval_ids)}
    return models, evals


def _edit_default(monkeypatch, method, **defaults):
    cls = get_method(method)
    fields = {f.name: f.default for f in dataclasses.fields(cls.Config)}
    edited = dataclasses.make_dataclass("Config", [(k, type(v), dataclasses.field(default=v))
                                                   for k, v in {**fields, **defaults}.items()], frozen=True)
    monkeypatch.setattr(cls, "Config", edited)


def test_ids_are_stable_and_an_extractor_default_changes_its_evaluations_only(monkeypatch, tmp_path):
    methods = ["cam", "gradcam", "wildcat"]
    models, evals = _ids(tmp_path, methods)
    assert _ids(tmp_path, methods) == (models, evals)
    _edit_default(monkeypatch, "gradcam", target_layer="layer4")      # evaluated on CAM's model
    models_after, evals_after = _ids(tmp_path, methods)
    assert models_after == models                                        # nothing to train again
    assert {k for k in evals if evals[k] != evals_after[k]} == {("gradcam", False), ("gradcam", True)}
    monkeypatch.undo()
    other, _ = _ids(tmp_path, methods, [("methods.wildcat.kmax", 0.25)])
    assert other[("cam", True)] == models[("cam", True)] and other[("wildcat", True)] != models[("wildcat", True)]


def test_settings_that_never_reach_the_weights_keep_the_model_id(tmp_path):
    models, evals = _ids(tmp_path, ["cam"])
    same, evals_extended = _ids(tmp_path, ["cam"], [("eval.extended", True), ("train.eval_batch_size", 7),
                                                   ("data.device_budget", 0.1), ("train.checkpoint", False)])
    assert same == models and evals_extended != evals
    trained, _ = _ids(tmp_path, ["cam"], [("train.lr", 0.5)])
    assert trained[("cam", True)] != models[("cam", True)]
    lam, _ = _ids(tmp_path, ["cam"], [("au.weight", 9.0)])
    assert lam[("cam", True)] != models[("cam", True)] and lam[("cam", False)] == models[("cam", False)]


def test_where_it_runs_is_part_of_the_model_id(tmp_path):
    one, _ = _ids(tmp_path, ["cam"], threads=1)
    two, _ = _ids(tmp_path, ["cam"], threads=2)
    gpu, _ = _ids(tmp_path, ["cam"], device_type="cuda", threads=1)
    gpu_two, _ = _ids(tmp_path, ["cam"], device_type="cuda", threads=2)
    assert one != two and one != gpu and gpu == gpu_two                 # threads count on CPU only


def test_a_changed_plugin_default_changes_the_model_identity_and_says_so(monkeypatch):
    config = resolve("smoke")
    before = model_identity(config, "wildcat", True, "data", "cpu", 1)
    _edit_default(monkeypatch, "wildcat", kmax=0.3)
    after = model_identity(config, "wildcat", True, "data", "cpu", 1)
    assert after["method_config"]["kmax"] == 0.3 and digest(after) != digest(before)
    assert why_changed(before, after).startswith("method configuration")


def test_the_data_content_and_library_versions_are_part_of_it():
    config = resolve("smoke")
    base = model_identity(config, "cam", True, "data-a", "cpu", 1)
    other = model_identity(config, "cam", True, "data-b", "cpu", 1)
    assert digest(base) != digest(other) and why_changed(base, other) == "data (content or landmarks changed)"
    assert base["plugin"]["distribution"] == "au-cam-bench"
    newer = {**base, "libraries": {**base["libraries"], "torch": "99.0"}}
    assert digest(newer) != digest(base) and "library version (torch" in why_changed(base, newer)


def test_weight_files_count_by_content_not_path(tmp_path):
    a, b = tmp_path / "a.pth", tmp_path / "copy" / "b.pth"
    b.parent.mkdir()
    a.write_bytes(b"weights-1")
    b.write_bytes(b"weights-1")
    ids = [digest(model_identity(resolve("smoke", [("model.pretrained_path", str(p))]), "cam", True, "d", "cpu", 1))
           for p in (a, b)]
    base = model_identity(resolve("smoke", [("model.pretrained_path", str(a))]), "cam", True, "d", "cpu", 1)
    assert list(base["files"]) == ["pretrained_path"]
    a.write_bytes(b"weights-2")
    changed = digest(model_identity(resolve("smoke", [("model.pretrained_path", str(a))]), "cam", True, "d", "cpu", 1))
    assert ids[0] == ids[1]                     # the same bytes elsewhere: the same model
    assert changed != ids[0]                    # other bytes behind the same path: another model


def test_code_counts_by_normalised_source(tmp_path, monkeypatch):
    package = tmp_path / "myplug"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text("def scale(x):\n    return 2 * x\n")
    source = textwrap.dedent('''
        """A plugin module."""
        from myplug.helper import scale

        def forward(x):
            """Docstring."""
            return scale(x)  # a comment
    ''')
    (package / "mod.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("myplug")]:
        monkeypatch.delitem(sys.modules, name)
    before = code_digests(["myplug.mod"], ["myplug"])
    assert set(before) == {"myplug.mod", "myplug.helper"}
    cosmetic = source.replace('"""Docstring."""', '"""Another docstring,\n    on two lines."""') \
        .replace("# a comment", "# another comment").replace("return scale(x)", "return scale( x )")
    (package / "mod.py").write_text(cosmetic + "\n\n# trailing comment\n")
    assert code_digests(["myplug.mod"], ["myplug"]) == before
    (package / "helper.py").write_text("def scale(x):\n    return 3 * x\n")
    after = code_digests(["myplug.mod"], ["myplug"])
    assert after["myplug.mod"] == before["myplug.mod"] and after["myplug.helper"] != before["myplug.helper"]


def test_the_evaluation_id_covers_the_model_and_the_extractor():
    config = resolve("smoke")
    a = evaluation_identity("model-a", config, "gradcam", "cpu", 1)
    assert digest(a) != digest(evaluation_identity("model-b", config, "gradcam", "cpu", 1))
    assert digest(a) != digest(evaluation_identity("model-a", config, "gradcampp", "cpu", 1))
    assert any(m.startswith("bench.metrics.") for m in a["code"]) and "methods.gradcam" in a["code"]
    trained = model_identity(config, "cam", True, "d", "cpu", 1)
    assert not any(m.startswith("bench.metrics.") for m in trained["code"])      # metrics never retrain
    assert "methods.cam" in trained["code"] and "methods.gradcam" not in trained["code"]


def test_a_job_whose_inputs_changed_refuses_to_run(tmp_path):
    from bench.store.records import RunStore
    from bench.sweep.jobs import run_job

    job = _plan(tmp_path, ["cam"]).jobs[0]
    stale = dataclasses.replace(job, model=dataclasses.replace(job.model, model_id="0" * 16))
    with pytest.raises(IdentityMismatchError, match="changed after `bench run` planned it"):
        run_job(stale, RunStore(tmp_path))
    assert not list(tmp_path.rglob("*.json"))
