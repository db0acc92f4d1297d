import json
import threading

import pytest

from bench.plan.spec import TrialSpec, expand_grid, group_methods
from bench.store.records import RunStore


def _spec(**kw):
    base = dict(method="cam", evaluate=("cam",), dataset="synthetic", au=True, seed=0, profile="smoke",
                overrides=(("train.epochs", 1),), identity="abc")
    base.update(kw)
    return TrialSpec(**base)


def test_id_is_a_content_hash():
    assert _spec().id == _spec().id
    assert _spec().id != _spec(seed=1).id
    assert _spec().id != _spec(identity="def").id
    assert _spec().id == _spec(profile="demo", overrides=()).id     # content, not the command line
    assert TrialSpec.from_dict(json.loads(json.dumps(_spec().to_dict()))) == _spec()


def test_grid_expansion():
    specs = expand_grid(["cam"], ["synthetic", "other"], [False, True], [0, 1], "smoke", (), lambda *cell: "d")
    assert len(specs) == 8 and len({s.id for s in specs}) == 8
    assert group_methods(["cam"]) == [("cam", ("cam",))]


def test_store_roundtrip_and_failed_trials(tmp_path):
    store = RunStore(tmp_path / "run")
    ok, bad = _spec(), _spec(au=False)
    store.write(ok, "ok", [{"method": "cam", "title": "CAM", "family": "cnn", "cl": 50.0, "confusion": [[1]]}])
    store.write(bad, "failed", [], error="RuntimeError: boom")
    assert store.finished_ids() == {ok.id}
    frame = store.frame()
    assert frame.height == 2
    assert set(frame["status"]) == {"ok", "failed"}
    assert "confusion" not in frame.columns
    assert not list((tmp_path / "run" / "trials").glob(".*tmp"))


def test_corrupt_result_file_is_ignored_with_a_warning(tmp_path):
    store = RunStore(tmp_path)
    store.write(_spec(), "ok", [{"method": "cam", "cl": 1.0}])
    (store.trials_dir / "deadbeef.json").write_text('{"id": "dead", "sta')
    with pytest.warns(UserWarning, match="unreadable result file"):
        assert store.finished_ids() == {_spec().id}


def test_concurrent_writers_lose_nothing(tmp_path):
    store = RunStore(tmp_path)
    specs = [_spec(seed=i) for i in range(16)]
    threads = [threading.Thread(target=store.write, args=(s, "ok", [{"method": "cam", "cl": float(s.seed)}]))
               for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.finished_ids() == {s.id for s in specs}


def test_post_hoc_methods_share_the_cam_training_run():
    from methods import method_names

    groups = dict(group_methods(method_names()))
    assert groups["cam"] == ("cam", "gradcam", "gradcampp", "layercam")
    trained = set(method_names()) - {"gradcam", "gradcampp", "layercam"}
    assert set(groups) == trained
    shared = expand_grid(method_names(), ["synthetic"], [False, True], [0], "demo", (), lambda *cell: "d")
    separate = expand_grid(method_names(), ["synthetic"], [False, True], [0], "demo", (), lambda *cell: "d",
                           share=False)
    assert len(shared) == 2 * len(trained) and len(separate) == 2 * len(method_names())
    assert {s.method for s in separate} == set(method_names())


def test_setting_names_the_command_line_not_the_cell():
    assert _spec().setting == _spec(seed=3, au=False, dataset="rafdb", identity="x").setting
    assert _spec().setting != _spec(overrides=(("train.epochs", 2),)).setting
    assert _spec().setting != _spec(profile="demo").setting


def test_a_failed_row_makes_the_trial_unfinished(tmp_path):
    store = RunStore(tmp_path)
    store.write(_spec(), "ok", [{"method": "cam", "status": "ok", "cl": 1.0},
                                {"method": "gradcam", "status": "failed", "error": "boom"}])
    assert store.finished_ids() == set()
    frame = store.frame()
    assert dict(zip(frame["method"], frame["status"])) == {"cam": "ok", "gradcam": "failed"}


def test_records_are_readable_by_others_under_the_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = RunStore(tmp_path).write(_spec(), "ok", [{"method": "cam", "cl": 1.0}])
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
