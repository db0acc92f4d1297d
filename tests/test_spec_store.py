"""Specs, jobs and the run folder store: ids, layout, failures, concurrent writers, current results."""
import json
import threading

import pytest

from bench.plan.spec import Job, ModelSpec, group_methods, setting_digest
from bench.store.records import RunStore

from records import write_evaluation


def _model(**kw):
    base = dict(method="cam", dataset="synthetic", au=True, seed=0, profile="smoke",
                overrides=(("train.epochs", 1),), model_id="abc")
    base.update(kw)
    return ModelSpec(**base)


def test_job_roundtrip_and_id():
    job = Job(_model(), ("cam", "gradcam"), ("e1", "e2"), True, "new", 2)
    assert Job.from_dict(json.loads(json.dumps(job.to_dict()))) == job
    assert job.id != Job(_model(), ("cam",), ("e1",), True).id
    assert job.id != Job(_model(model_id="def"), ("cam", "gradcam"), ("e1", "e2"), True).id


def test_store_roundtrip_and_failed_evaluations(tmp_path):
    run = tmp_path / "run"
    write_evaluation(run, rows=[{"method": "cam", "title": "CAM", "family": "cnn", "cl": 50.0, "confusion": [[1]]}])
    write_evaluation(run, au=False, status="failed", error="RuntimeError: boom")
    store = RunStore(run)
    assert len(store.finished_evaluations()) == 1
    frame = store.frame()
    assert frame.height == 2
    assert set(frame["status"]) == {"ok", "failed"}
    assert "confusion" not in frame.columns
    assert not list((run / "evaluations").glob(".*tmp*"))


def test_corrupt_result_file_is_ignored_with_a_warning(tmp_path):
    write_evaluation(tmp_path, rows=[{"method": "cam", "cl": 1.0}])
    store = RunStore(tmp_path)
    (store.evaluations.dir / "deadbeef.json").write_text('{"id": "dead", "sta')
    with pytest.warns(UserWarning, match="unreadable result file"):
        assert len(store.finished_evaluations()) == 1


def test_concurrent_writers_lose_nothing(tmp_path):
    threads = [threading.Thread(target=write_evaluation, args=(tmp_path,), kwargs={"seed": i, "rows": [
        {"method": "cam", "cl": float(i)}]}) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(RunStore(tmp_path).frame()["seed"].to_list()) == list(range(16))


def test_post_hoc_methods_share_the_cam_training_run():
    from methods import method_names

    groups = dict(group_methods(method_names()))
    assert groups["cam"] == ("cam", "gradcam", "gradcampp", "layercam")
    trained = set(method_names()) - {"gradcam", "gradcampp", "layercam"}
    assert set(groups) == trained
    separate = dict(group_methods(method_names(), share=False))
    assert set(separate) == set(method_names())


def test_setting_names_the_training_command_line_not_the_cell_nor_evaluation_or_paths():
    assert _model().setting == _model(seed=3, au=False, dataset="rafdb", model_id="x").setting
    assert _model().setting != _model(overrides=(("train.epochs", 2),)).setting
    assert _model().setting != _model(profile="demo").setting
    same = (("train.epochs", 1), ("eval.extended", True), ("data.root", "/elsewhere"), ("train.eval_batch_size", 8))
    assert _model().setting == setting_digest("smoke", same)


def test_a_failed_evaluation_is_unfinished_and_shows_as_failed(tmp_path):
    write_evaluation(tmp_path, rows=[{"method": "cam", "status": "ok", "cl": 1.0}])
    write_evaluation(tmp_path, method="gradcam", status="failed", error="boom", rows=[{"method": "gradcam"}])
    store = RunStore(tmp_path)
    assert len(store.finished_evaluations()) == 1
    frame = store.frame()
    assert dict(zip(frame["method"], frame["status"])) == {"cam": "ok", "gradcam": "failed"}


def test_one_result_per_cell_newest_model_then_values_from_its_newest_evaluations(tmp_path):
    """The documented rule: newest model wins; a base evaluation after an extended one keeps the extended values."""
    write_evaluation(tmp_path, model_id="old", eval_id="e-old", created="2026-01-01T00:00:00",
                     rows=[{"method": "cam", "cl": 10.0}])
    write_evaluation(tmp_path, model_id="new", eval_id="e-ext", created="2026-01-02T00:00:00",
                     rows=[{"method": "cam", "cl": 60.0, "road": 0.3}])
    write_evaluation(tmp_path, model_id="new", eval_id="e-base", created="2026-01-03T00:00:00",
                     rows=[{"method": "cam", "cl": 60.0, "road": None}])
    # the model record's creation decides between models: give both evaluations of "new" the later model time
    store = RunStore(tmp_path)
    for eval_id in ("e-ext", "e-base"):
        path = store.evaluations.path(eval_id)
        record = json.loads(path.read_text())
        record["model"]["created"] = "2026-01-02T00:00:00"
        path.write_text(json.dumps(record))
    records, notes = store.current_records()
    assert len(records) == 1
    (row,) = records[0]["rows"]
    assert row["cl"] == 60.0 and row["road"] == 0.3
    assert any("older models" in n for n in notes)
    assert store.frame().height == 1


def test_records_are_readable_by_others_under_the_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = write_evaluation(tmp_path, rows=[{"method": "cam", "cl": 1.0}])
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
