import json
import threading

import pytest

from bench.spec import TrialSpec, expand_grid, group_methods
from bench.store import RunStore


def _spec(**kw):
    base = dict(method="cam", evaluate=("cam",), dataset="synthetic", au=True, seed=0, profile="smoke",
                overrides=(("train.epochs", 1),), config_digest="abc")
    base.update(kw)
    return TrialSpec(**base)


def test_id_is_a_content_hash():
    assert _spec().id == _spec().id
    assert _spec().id != _spec(seed=1).id
    assert _spec().id != _spec(config_digest="def").id
    assert TrialSpec.from_dict(json.loads(json.dumps(_spec().to_dict()))) == _spec()


def test_grid_expansion():
    specs = expand_grid(["cam"], ["synthetic", "other"], [False, True], [0, 1], "smoke", (), "d")
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
    shared = expand_grid(method_names(), ["synthetic"], [False, True], [0], "demo", (), "d")
    separate = expand_grid(method_names(), ["synthetic"], [False, True], [0], "demo", (), "d", share=False)
    assert len(shared) == 2 * len(trained) and len(separate) == 2 * len(method_names())
    assert {s.method for s in separate} == set(method_names())
