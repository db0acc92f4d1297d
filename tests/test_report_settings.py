"""Run folders that hold several settings: listing them, choosing one, and saying which was chosen."""
import json
import os

import pytest

from bench.errors import UserError
from bench.store.settings import describe, select_settings, setting_digest, settings_in_run


def write_record(run_dir, trial_id, *, setting="a" * 12, profile="demo", overrides=(), status="ok", mtime=1000.0,
                 dataset="synthetic", au=False, seed=0, rows=None, data=None, evaluate=("cam",), error=None,
                 timings=None, provenance=None):
    """One trial record in the schema ``bench run`` wrote before models and evaluations were kept apart
    (``<run>/trials/<id>.json``: spec, setting, rows, data, ...), which the store still reads."""
    record = {"id": trial_id, "status": status, "error": error,
              "spec": {"method": evaluate[0], "evaluate": list(evaluate), "dataset": dataset, "au": au, "seed": seed,
                       "profile": profile, "overrides": [list(kv) for kv in overrides], "identity": trial_id},
              "rows": rows if rows is not None else [], "timings": timings or {}, "provenance": provenance or {},
              "history": []}
    if setting is not None:
        record["setting"] = setting
    if data is not None:
        record["data"] = data
    path = run_dir / "trials" / f"{trial_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def two_settings(tmp_path):
    """Folder 'paper': setting 'aligned' (two trials, older) and 'original' (one trial, newer)."""
    run = tmp_path / "paper"
    write_record(run, "t1", setting="a1a1a1a1a1a1", mtime=1000.0)
    write_record(run, "t2", setting="a1a1a1a1a1a1", mtime=1100.0, seed=1,
                 rows=[{"method": "cam", "config_hash": "feedc0de"}])
    write_record(run, "t3", setting="b2b2b2b2b2b2", overrides=[("data.rafdb_images", "original")], mtime=2000.0)
    return run


def test_settings_in_run_lists_each_setting_newest_first(two_settings, tmp_path):
    settings = settings_in_run(two_settings)
    assert [(s.setting, s.trials, s.newest_mtime) for s in settings] == [("b2b2b2b2b2b2", 1, 2000.0),
                                                                        ("a1a1a1a1a1a1", 2, 1100.0)]
    assert [s.description for s in settings] == ["demo, data.rafdb_images=original", "demo"]
    (tmp_path / "empty" / "trials").mkdir(parents=True)
    assert settings_in_run(tmp_path / "empty") == []


def test_newest_setting_is_chosen_and_said_once(two_settings):
    chosen = select_settings([two_settings])
    assert chosen.trial_ids == {"paper": frozenset({"t3"})}
    note = chosen.note
    assert note.count("run paper") == 1 and note.count("b2b2b2b2b2b2") == 1 and note.count("a1a1a1a1a1a1") == 1
    assert "--config" in note and "\n" not in note
    # One setting: everything, nothing to say.
    only = select_settings([two_settings], "a1a1")
    assert only.trial_ids == {"paper": frozenset({"t1", "t2"})} and only.note is None


def test_config_accepts_a_config_hash_prefix_and_rejects_bad_ones(two_settings):
    assert select_settings([two_settings], "feedc").trial_ids == {"paper": frozenset({"t2"})}
    with pytest.raises(UserError, match=r"--config 'zz' matches no trial in run paper \(settings: b2b2b2b2b2b2 "
                                        r"\(demo, data.rafdb_images=original; 1 trial\), a1a1a1a1a1a1 \(demo; 2 trials\)\)"):
        select_settings([two_settings], "zz")
    write_record(two_settings, "t4", setting="a1ffffffffff", mtime=3000.0)
    with pytest.raises(UserError, match="--config 'a1' matches 2 settings in run paper"):
        select_settings([two_settings], "a1")


def test_records_without_a_setting_group_by_profile_and_overrides(tmp_path):
    run = tmp_path / "old"
    write_record(run, "t1", setting=None, overrides=[("train.epochs", 5)])
    write_record(run, "t2", setting=None, overrides=[("train.epochs", 5)], seed=1)
    write_record(run, "t3", setting=None)
    settings = settings_in_run(run)
    assert sorted(s.trials for s in settings) == [1, 2]
    assert {s.setting for s in settings} == {setting_digest("demo", [("train.epochs", 5)]), setting_digest("demo", [])}
    assert all(s.description.endswith("recorded without a setting") for s in settings)
    assert describe("/abs/path/my.toml", [("au.weight", 9)]) == "my.toml, au.weight=9"


def test_fallback_digest_is_the_specs_setting():
    from bench.plan.spec import ModelSpec

    spec = ModelSpec("cam", "synthetic", True, 0, "demo", (("train.epochs", 5),))
    assert setting_digest(spec.profile, spec.to_dict()["overrides"]) == spec.setting


def test_an_older_result_of_the_same_cell_is_superseded(tmp_path):
    """A rerun after the landmarks changed files a second record for the same cell (a new id);
    the table shows the newest and says the older one is not shown."""
    run = tmp_path / "run"
    write_record(run, "old", profile="smoke", au=True, rows=[{"method": "cam", "status": "ok", "cl": 10.0}],
                 mtime=1_000_000)
    write_record(run, "new", profile="smoke", au=True, rows=[{"method": "cam", "status": "ok", "cl": 60.0}],
                 mtime=2_000_000)
    selection = select_settings([run])
    assert selection.keeps("run", "new") and not selection.keeps("run", "old")
    assert "1 older record(s) of the same cells are kept on disk" in selection.note
