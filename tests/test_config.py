import pytest

from bench.config.settings import parse_override, resolve
from bench.errors import UserError


def test_override_values_are_toml_literals():
    assert parse_override("train.lr=0.01") == ("train.lr", 0.01)
    assert parse_override("model.pretrained=false") == ("model.pretrained", False)
    assert parse_override("model.backbone=resnet50") == ("model.backbone", "resnet50")
    assert parse_override("au.layers=[\"layer4\",\"layer5\"]") == ("au.layers", ["layer4", "layer5"])


def test_resolve_applies_overrides_with_types():
    cfg = resolve("smoke", [("train.epochs", 3), ("au.layers", "layer4,layer5"), ("train.lr", 1)])
    assert cfg.train.epochs == 3 and cfg.au.layers == ("layer4", "layer5") and cfg.train.lr == 1.0


@pytest.mark.parametrize("item,match", [
    ("train.epochz=3", "unknown option train.epochz"),
    ("bogus.x=1", "unknown config section 'bogus'"),
    ("train.epochs=abc", "bad value 'abc' for train.epochs"),
    ("model.pretrained=3", "bad value 3 for model.pretrained"),
])
def test_bad_overrides_are_user_errors(item, match):
    with pytest.raises(UserError, match=match):
        resolve("smoke", [parse_override(item)])


def test_missing_equals_sign():
    with pytest.raises(UserError, match="expected key=value"):
        parse_override("train.epochs")


def test_unknown_profile():
    with pytest.raises(UserError, match="known: demo, paper, paper-dry, smoke"):
        resolve("nope")


def test_digest_changes_with_config():
    assert resolve("smoke").digest() != resolve("smoke", [("train.epochs", 9)]).digest()
    assert resolve("smoke").digest() == resolve("smoke").digest()


def test_per_dataset_tables_apply_to_their_dataset_only():
    assert resolve("paper", dataset="rafdb").au.weight == 4.0
    assert resolve("paper", dataset="affectnet").au.weight == 9.0
    assert resolve("paper", [("au.weight", 2.0)], "affectnet").au.weight == 2.0     # --set wins
    assert resolve("paper", dataset="rafdb").digest() != resolve("paper", dataset="affectnet").digest()


def test_typo_in_a_dataset_table_is_an_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepochs = 1\n[datasets.rafdb.train]\nepochz = 3\n")
    with pytest.raises(UserError, match=r"unknown option train.epochz \(in .*datasets.rafdb"):
        resolve(str(bad))


def test_per_method_tables_apply_to_trials_of_that_method():
    assert resolve("paper", method="cam").train.optimizer == "sgd"
    tscam = resolve("paper", dataset="affectnet", method="tscam")
    assert (tscam.train.optimizer, tscam.train.lr, tscam.au.weight) == ("adamw", 5e-5, 9.0)
    assert resolve("paper", [("train.lr", 0.1)], method="tscam").train.lr == 0.1          # --set wins


def test_per_au_overrides_apply_to_their_mode_only():
    overrides = [("train.lr", 0.01), ("per_au.on.train.lr", 0.003), ("per_au.on.au.weight", 7.0)]
    off = resolve("smoke", overrides, au=False)
    on = resolve("smoke", overrides, au=True)
    assert (off.train.lr, off.au.weight) == (0.01, 4.0)
    assert (on.train.lr, on.au.weight) == (0.003, 7.0)
    assert resolve("smoke", [*overrides, ("train.lr", 0.5)], au=True).train.lr == 0.5    # a later --set wins


def test_per_au_tables_in_a_profile(tmp_path):
    profile = tmp_path / "p.toml"
    profile.write_text("[train]\nlr = 0.1\n[per_au.off.train]\nlr = 0.2\n[per_au.on.au]\nweight = 3.0\n")
    assert resolve(str(profile), au=False).train.lr == 0.2 and resolve(str(profile), au=True).train.lr == 0.1
    assert resolve(str(profile), au=True).au.weight == 3.0
    profile.write_text("[per_au.maybe.train]\nlr = 0.2\n")
    with pytest.raises(UserError, match=r"per_au.maybe\] is not an AU mode"):
        resolve(str(profile))


def test_a_bad_per_au_override_fails_without_a_mode():
    with pytest.raises(UserError, match="bad value 'fast' for train.lr"):
        resolve("smoke", [("per_au.on.train.lr", "fast")])


@pytest.mark.parametrize("item,match", [
    ("methods.cutmix.prob=abc", "bad value 'abc' for methods.cutmix.prob: expected float"),
    ("methods.wildcat.maps=2.5", "bad value 2.5 for methods.wildcat.maps: expected int"),
    ("methods.acol.hidden=true", "bad value True for methods.acol.hidden: expected int"),
    ("methods.cutmix.probability=1", "unknown option methods.cutmix.probability"),
    ("methods.nosuch.x=1", "unknown method 'nosuch'"),
])
def test_method_options_are_typed_like_every_setting(item, match):
    with pytest.raises(UserError, match=match):
        resolve("smoke", [parse_override(item)])


def test_method_options_are_coerced_to_their_field_type():
    config = resolve("smoke", [parse_override("methods.cutmix.prob=1"), parse_override("methods.wildcat.kmax=2")])
    assert config.methods["cutmix"]["prob"] == 1.0 and isinstance(config.methods["cutmix"]["prob"], float)
    assert config.methods["wildcat"]["kmax"] == 2.0
