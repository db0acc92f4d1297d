"""paper-dry: the paper profile's models at paper size, runnable offline on a CPU.

The profiles are plain TOML files (no inheritance), so the first test keeps them in step: resolved
for every method, dataset and AU mode, paper-dry equals paper except in the keys its file marks
``dry``. The second trains every registered method a few steps at paper size and evaluates it.
"""
import math
import re

import pytest
from rich.console import Console

from bench.config.settings import PROFILE_DIR, resolve
from methods import get_method, method_names

DATASETS = ("synthetic", "rafdb", "affectnet")


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _dry_keys() -> set[str]:
    """Keys whose line in paper-dry.toml carries a ``# dry`` comment, as section.key."""
    keys, section = set(), ""
    for line in (PROFILE_DIR / "paper-dry.toml").read_text().splitlines():
        if match := re.match(r"\[(.+)\]", line):
            section = match.group(1)
        elif match := re.match(r"(\w+)\s*=.*#\s*dry\b", line):
            scope = re.sub(r"^(per_method|datasets)\.[^.]+\.", "", section)   # a scoped table sets its section
            keys.add(f"{scope}.{match.group(1)}")
    return keys


def test_paper_dry_is_the_paper_profile_but_for_its_dry_keys():
    dry = _dry_keys()
    assert {"model.pretrained", "train.epochs", "train.batch_size", "data.train_size"} <= dry
    seen = set()
    for dataset in DATASETS:
        for method in method_names():
            for au in (False, True):
                paper = _flat(resolve("paper", [], dataset, method, au).to_dict())
                dry_run = _flat(resolve("paper-dry", [], dataset, method, au).to_dict())
                differ = {k for k in paper.keys() | dry_run.keys() if paper.get(k) != dry_run.get(k)}
                assert differ <= dry, f"{dataset} {method} au={au}: paper-dry drifted from paper in {differ - dry}"
                seen |= differ
    assert seen == dry, f"keys marked dry that do not differ: {dry - seen}"
    config = resolve("paper-dry", [], "synthetic", "cam", True)
    assert not config.model.pretrained and config.train.epochs == 1


@pytest.mark.slow
def test_every_method_trains_and_evaluates_at_paper_size(tmp_path):
    """`bench run --methods all --profile paper-dry` at batch 2, in-process (the CLI adds only the
    preflight's dry run of the same step): two steps per trained model, three test faces each."""
    from bench.plan.spec import Job, ModelSpec, group_methods
    from bench.store.records import RunStore
    from bench.sweep.executors import LocalExecutor

    overrides = (("data.train_size", 4), ("data.val_size", 1), ("data.test_size", 3),
                 ("train.batch_size", 2), ("train.eval_batch_size", 4))
    jobs = [Job(ModelSpec(trained, "synthetic", True, 0, "paper-dry", overrides), evaluated,     # hand-built: the
                tuple(f"{trained}-{name}" for name in evaluated), True)                          # ids it loads
            for trained, evaluated in group_methods(method_names())]
    outcomes = LocalExecutor(Console(quiet=True), threads=2).run(jobs, tmp_path)
    assert [o.error for o in outcomes if o.status != "ok"] == []
    records = RunStore(tmp_path).records()
    rows = {row["method"]: (record, row) for record in records for row in record["rows"]}
    assert set(rows) == set(method_names())
    for name, (record, row) in rows.items():
        spec = record["spec"]
        config = resolve(spec["profile"], [tuple(kv) for kv in spec["overrides"]], "synthetic", spec["method"], True)
        assert config.data.image_size == 224 and config.model.backbone == "resnet50.tv_in1k"
        assert row["status"] == "ok" and row["n_test"] == 3 and sum(map(sum, row["confusion"])) == 3
        layer = get_method(name).alignment_layers[0]
        assert math.isfinite(row["cl"]) and -1 <= row[f"att_cos_{layer}"] <= 1, name
        assert len(record["history"]) == 1 and record["timings"]["train_images_per_second"] > 0
        assert record["timings"]["peak_host_rss_bytes"] > 0
    assert rows["tscam"][1]["method_config"]["model"] == "deit_small_patch16_224.fb_in1k"
    apvit = rows["apvit"][1]["method_config"]
    assert (apvit["input_size"], apvit["embed_dim"], apvit["depth"], apvit["keep_tokens"]) == (112, 768, 8, 160)
