"""Importing the paper's published checkpoints (interpretable-fer-aus) into our models.

For each of the 11 methods: our model on the smoke profile (random init, random BN statistics) is
written in the authors' checkpoint layout (their key names and wrapper dicts, spot-checked below
against names read in their code), with a config_model.yaml and a tag folder; importing that folder
must give our model back exactly: identical logits and CAMs. A renamed or missing key, and a
checkpoint of another method, fail with one line that names the problem.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import yaml

from bench.config.settings import resolve
from bench.errors import UserError
from bench.importers import find_checkpoints, import_checkpoint, import_command, model_record
from bench.importers.fer_aus import load_weights
from bench.importers.keymap import export_state, nest
from bench.importers.keymap_resnet import their_block_indices
from bench.train.model import build_model, make_method

# our method -> (their --method, their pooling head, their encoder name)
THEIRS = {
    "cam": ("CAM", "WGAP", "resnet18"), "gradcam": ("GradCam", "WGAP", "resnet18"),
    "gradcampp": ("GradCAMpp", "WGAP", "resnet18"), "layercam": ("LayerCAM", "WGAP", "resnet18"),
    "cutmix": ("CutMIX", "WGAP", "resnet18"), "adl": ("ADL", "WGAP", "resnet18"),
    "wildcat": ("WILDCAT", "WildCatCLHead", "resnet18"), "acol": ("ACoL", "ACOL", "resnet18"),
    "prm": ("PRM", "PRM", "resnet18"), "tscam": ("TSCAM", "GAP", "deit_tscam_tiny_patch16_224"),
    "apvit": ("APVIT", "NONE", "apvit"),
}
METHODS = list(THEIRS)
CNN = {"model.backbone": "resnet18", "model.width": 0.125, "model.large_maps": True, "model.pretrained": False}
# The reference model "as the authors trained it", spelled out here (not derived by the importer).
REFERENCE = {
    **{m: CNN for m in ("cam", "gradcam", "gradcampp", "layercam", "cutmix", "adl", "prm")},
    "wildcat": {**CNN, "methods.wildcat.maps": 5, "methods.wildcat.kmax": 0.5, "methods.wildcat.kmin": 0.1,
                "methods.wildcat.alpha": 0.0},          # their min term is discarded: alpha 0 is their score
    "acol": {**CNN, "methods.acol.hidden": 16, "methods.acol.threshold": 0.1},
    "tscam": {"model.pretrained": False, "methods.tscam.model": "deit_tiny_patch16_224", "methods.tscam.image_size": 32,
              "methods.tscam.patch_size": 8, "methods.tscam.embed_dim": 48, "methods.tscam.depth": 2,
              "methods.tscam.num_heads": 3},
    "apvit": {"model.pretrained": False, "methods.apvit.input_size": 32, "methods.apvit.ir50_units": [1, 1, 1],
              "methods.apvit.ir50_width": 0.125, "methods.apvit.embed_dim": 32, "methods.apvit.depth": 2,
              "methods.apvit.num_heads": 2, "methods.apvit.mlp_ratio": 2.0, "methods.apvit.keep_tokens": 12,
              "methods.apvit.keep_rate": 0.9, "methods.apvit.pool_blocks": 1},
}
# What the user adds at import to get CPU-sized shapes (the published models are full size).
SHRINK = {
    **{m: [("model.width", 0.125)] for m in ("cam", "gradcam", "gradcampp", "layercam", "cutmix", "adl", "prm", "wildcat")},
    "acol": [("model.width", 0.125), ("methods.acol.hidden", 16)],
    "tscam": [("methods.tscam.patch_size", 8), ("methods.tscam.embed_dim", 48), ("methods.tscam.depth", 2)],
    "apvit": [("methods.apvit.ir50_units", [1, 1, 1]), ("methods.apvit.ir50_width", 0.125),
              ("methods.apvit.embed_dim", 32), ("methods.apvit.depth", 2), ("methods.apvit.num_heads", 2),
              ("methods.apvit.mlp_ratio", 2.0), ("methods.apvit.pool_blocks", 1)],
}
# Key names read in their code (dlib/encoders/resnet.py, poolings/, div_classifiers/, diverse_models/).
THEIR_NAMES = {
    "cam": ["encoder.conv1.weight", "encoder.bn1.running_var", "encoder.layer1.0.conv1.weight",
            "encoder.layer2.0.downsample.0.weight", "encoder.layer4.1.bn2.weight", "classification_head.fc.weight"],
    "adl": ["encoder.layer3.0.conv1.weight", "encoder.layer3.2.conv1.weight", "encoder.layer4.2.conv2.weight",
            "classification_head.fc.bias"],
    "wildcat": ["classification_head.to_modalities.weight", "classification_head.to_modalities.bias"],
    "acol": ["classification_head.acol_pooler.classifier_A.0.weight", "classification_head.acol_pooler.classifier_A.2.bias",
             "classification_head.acol_pooler.classifier_B.4.weight"],
    "prm": ["classification_head.conv.weight", "classification_head.conv.bias"],
    "tscam": ["patch_embed.proj.weight", "cls_token", "pos_embed", "blocks.1.attn.qkv.bias", "blocks.0.mlp.fc2.weight",
              "norm.weight", "head.weight", "head.bias"],
    "apvit": ["extractor.input_layer.0.weight", "extractor.input_layer.2.weight", "extractor.body.0.0.res_layer.2.weight",
              "extractor.body.2.0.shortcut_layer.0.weight", "vit.projs.0.weight", "vit.cls_token", "vit.cls_pos_embed",
              "vit.patch_pos_embed", "vit.blocks.1.attn.qkv.weight", "vit.norm.bias", "classification_head.fc.weight"],
}
ABSENT_NAMES = {"adl": ["encoder.layer3.1.conv1.weight", "encoder.layer4.1.conv1.weight"],
                "apvit": ["vit.blocks.0.attn.qkv.bias", "vit.pos_embed"]}


def _config_yaml(method: str, au: bool) -> str:
    theirs, pooling, encoder = THEIRS[method]
    config = {
        "dataset": "RAF-DB", "method": theirs, "spatial_pooling": pooling, "task": "STD_CL", "num_classes": 7,
        "crop_size": 32, "resize_size": 36, "MYSEED": 0, "max_epochs": 20, "best_epoch": 3,
        "align_atten_to_heatmap": au, "align_atten_to_heatmap_layers": "4" if method == "cutmix" else (
            "1" if method in ("tscam", "apvit") else "5"),
        "align_atten_to_heatmap_lambda": 4.0, "dense_dims": "", "wc_modalities": 5, "wc_kmax": 0.5,
        "wc_kmin": 0.1, "wc_alpha": 0.6, "wc_dropout": 0.0, "acol_drop_threshold": 0.1, "prm_ks": 3, "prm_st": 1,
        "adl_drop_rate": 0.4, "adl_drop_threshold": 0.1, "cutmix_beta": 1.0, "cutmix_prob": 1.0,
        "model": {"encoder_name": encoder, "large_maps": True, "scale_in": 1.0, "support_background": False,
                  "do_segmentation": False, "apvit_k": 12, "apvit_r": 0.9, "apvit_attn_method": "SUM_ABS_1"},
    }
    # their yaml.dump(vars(args)) writes Python tags (munch.Munch for data_paths): read as plain data
    return yaml.safe_dump(config) + "data_paths: !!python/object/new:munch.Munch\n  dictitems:\n    train: /data\n"


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Random weights and BN statistics, so a swapped or skipped buffer changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if not value.is_floating_point():
                continue
            noise = torch.randn(value.shape, generator=g)
            value.copy_(noise.abs() + 0.5 if name.endswith("running_var") else value + 0.1 * noise)


def _reference(method: str):
    trains_like = make_method(method, resolve("smoke", [], "rafdb", method, True)).train_group()
    config = resolve("smoke", list(REFERENCE[method].items()), "rafdb", trains_like, True)
    torch.manual_seed(0)
    model = build_model(make_method(trains_like, config), config, 7)
    _randomise(model, METHODS.index(method))
    return config, make_method(method, config), model.eval()


def _write(root: Path, method: str, flat: dict, au: bool = True, checkpoint: str = "best",
           weights_of: str | None = None) -> Path:
    """A checkpoint folder tagged ``method`` holding ``flat`` in the layout of ``weights_of`` (default: method)."""
    from bench.importers.fer_aus_config import METHODS as FER
    from bench.importers import keymap_apvit, keymap_resnet, keymap_tscam

    theirs, pooling, encoder = THEIRS[method]
    layout = FER[THEIRS[weights_of or method][0]].layout
    wrappers = {"resnet": keymap_resnet, "tscam": keymap_tscam, "apvit": keymap_apvit}[layout].WRAPPERS
    folder = (root / "FG_FER" / "RAF-DB" / encoder / "STD_CL" / theirs / f"align_atten_to_heatmap_{au}"
              / f"RAF-DB-{encoder}-{theirs}-{pooling}-cp_{checkpoint}-boxv2_False")
    folder.mkdir(parents=True)
    torch.save(nest(flat, wrappers), folder / "model.pt")
    (folder / "config_model.yaml").write_text(_config_yaml(method, au))
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """method -> (reference config, method plugin, model, their flat state dict, checkpoint folder)."""
    from bench.importers.fer_aus import keymap_for
    from bench.importers.fer_aus_config import Checkpoint, METHODS as FER

    root = tmp_path_factory.mktemp("fer-aus")
    out = {}
    for method in METHODS:
        config, plugin, model = _reference(method)
        fake = Checkpoint(folder=root, tag="", dataset="rafdb", encoder=THEIRS[method][2],
                          method=FER[THEIRS[method][0]], au=True, checkpoint="best", config={})
        flat = export_state(keymap_for(fake, model), model.state_dict())
        out[method] = (config, plugin, model, flat, _write(root / method, method, flat))
    return out


def _explain(plugin, model, x, target):
    output, cam = plugin.explain(model, x, target)
    return output.logits.detach(), cam.detach()


def test_adl_block_indices_follow_their_insertion():
    # ResNet-50 with _ADL_POSITION: layer3 = [b0, ADL, b1..b5], layer4 = [b0, ADL, b1, b2, ADL]
    assert their_block_indices(6, [0]) == [0, 2, 3, 4, 5, 6]
    assert their_block_indices(3, [0, 2]) == [0, 2, 3]
    assert their_block_indices(2, [0, 2]) == [0, 2]
    assert their_block_indices(4, []) == [0, 1, 2, 3]


@pytest.mark.parametrize("method", METHODS)
def test_their_layout_uses_their_names(exported, method):
    flat = exported[method][3]
    family = method if method in THEIR_NAMES else "cam"
    for key in THEIR_NAMES[family]:
        assert key in flat, key
    for key in ABSENT_NAMES.get(method, []):
        assert key not in flat, key
    raw = torch.load(exported[method][4] / "model.pt", weights_only=True)
    if method in ("tscam", "apvit"):
        assert not any(isinstance(v, dict) for v in raw.values())       # the full state_dict, flat
    else:
        assert set(raw) == {"encoder", "classification_head"}
    if method == "apvit":
        assert flat["vit.cls_pos_embed"].shape[1] == 1 and flat["vit.patch_pos_embed"].shape[1] == 16
    if method == "tscam":
        assert flat["head.weight"].shape[-2:] == (3, 3)                  # their Conv2d(D, K, 3) head


@pytest.mark.parametrize("method", METHODS)
def test_import_gives_identical_logits_and_cams(exported, method):
    config, plugin, model, _, folder = exported[method]
    imported = import_checkpoint(folder, profile="smoke", overrides=SHRINK[method])
    assert (imported.method, imported.dataset, imported.au, imported.checkpoint) == (method, "rafdb", True, "best")
    assert imported.trains_like == plugin.train_group()
    mine = imported.config("smoke", SHRINK[method])
    assert mine.model == config.model and mine.data.image_size == 32
    assert make_method(method, mine).config == plugin.config       # the resolved plugin settings
    assert make_method(imported.trains_like, mine).config == make_method(imported.trains_like, config).config
    assert imported.provenance["sha256"] == hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()
    assert imported.provenance["imported"] and imported.provenance["tag"] == folder.name
    assert ("au.codebook", "reference") in imported.eval_overrides
    their_plugin, theirs = imported.build("smoke", SHRINK[method])
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([1, 4, 6])
    logits_a, cam_a = _explain(plugin, model, x, target)
    logits_b, cam_b = _explain(their_plugin, theirs, x, target)
    assert torch.equal(logits_a, logits_b)
    assert torch.equal(cam_a, cam_b)
    assert cam_a.abs().sum() > 0


def test_alignment_layer_follows_their_config(exported):
    layers = {m: dict(import_checkpoint(exported[m][4], "smoke", SHRINK[m]).overrides)["au.layers"]
              for m in ("cam", "cutmix", "tscam", "apvit")}
    assert layers == {"cam": ["layer5"], "cutmix": ["layer4"], "tscam": ["final"], "apvit": ["stage3"]}


def _copy_with(root: Path, method: str, flat: dict, change) -> Path:
    flat = dict(flat)
    change(flat)
    return _write(root, method, flat)


@pytest.mark.parametrize("method", METHODS)
def test_missing_or_renamed_key_fails_with_one_line(exported, method, tmp_path):
    flat = exported[method][3]
    victim = sorted(flat)[len(flat) // 2]

    def drop(d):
        del d[victim]

    def rename(d):
        d[victim + "_renamed"] = d.pop(victim)

    with pytest.raises(UserError) as missing:
        import_checkpoint(_copy_with(tmp_path / "missing", method, flat, drop), "smoke", SHRINK[method])
    assert f"missing key {victim} " in str(missing.value) and "\n" not in str(missing.value)
    with pytest.raises(UserError) as renamed:
        import_checkpoint(_copy_with(tmp_path / "renamed", method, flat, rename), "smoke", SHRINK[method])
    text = str(renamed.value)
    assert victim in text and f"unused key {victim}_renamed" in text and "\n" not in text


# a checkpoint of another method family under each method's tag
DONOR = {"cam": "wildcat", "gradcam": "acol", "gradcampp": "prm", "layercam": "tscam", "cutmix": "apvit",
         "adl": "cam", "wildcat": "cam", "acol": "prm", "prm": "acol", "tscam": "apvit", "apvit": "tscam"}


@pytest.mark.parametrize("method", METHODS)
def test_wrong_method_checkpoint_fails_with_one_line(exported, method, tmp_path):
    donor = DONOR[method]
    folder = _write(tmp_path, method, exported[donor][3], weights_of=donor)
    with pytest.raises(UserError) as info:
        import_checkpoint(folder, "smoke", SHRINK[method])
    text = str(info.value)
    assert "\n" not in text and "does not fit" in text and THEIRS[method][0] in text
    assert "keys are those of a" in text


def test_au_mode_disagreement_and_bad_pickle_fail(exported, tmp_path):
    folder = _write(tmp_path / "a", "cam", exported["cam"][3], au=False)
    (folder / "config_model.yaml").write_text(_config_yaml("cam", True))     # config says w/ AU, folder w/o
    with pytest.raises(UserError, match="align_atten_to_heatmap"):
        import_checkpoint(folder, "smoke", SHRINK["cam"])
    bad = _write(tmp_path / "b", "cam", exported["cam"][3])
    torch.save({"encoder": {"x": Path("/tmp")}, "classification_head": {}}, bad / "model.pt")
    with pytest.raises(UserError, match="weights_only") as info:
        load_weights(bad / "model.pt")
    assert "\n" not in str(info.value)


def test_import_command_saves_each_best_checkpoint(exported, tmp_path):
    _write(tmp_path, "cam", exported["cam"][3])
    _write(tmp_path, "prm", exported["prm"][3])
    _write(tmp_path / "last", "cam", exported["cam"][3], checkpoint="last")
    assert len(find_checkpoints(tmp_path)) == 2 and len(find_checkpoints(tmp_path, "all")) == 3
    saved, lines = [], []

    def save_model(run_dir, imported):
        record = model_record(imported)
        assert record["imported"] is True and record["provenance"]["sha256"]
        saved.append((run_dir, record["method"], record["extractor"], record["selected_on"]))
        return run_dir / "models" / record["extractor"]

    import_command([tmp_path], tmp_path / "run", lines.append, save_model, profile="smoke",
                   overrides=[("model.width", 0.125)])
    assert sorted(s[1:] for s in saved) == [("cam", "cam", "test"), ("prm", "prm", "test")]
    assert len(lines) == 2 and all(line.startswith("imported RAF-DB-resnet18-") for line in lines)


# (their method, pooling head, encoder) of the 22 folders per dataset that their eval_all.sh lists
PUBLISHED = [("CAM", "WGAP", "resnet50"), ("TSCAM", "GAP", "deit_tscam_small_patch16_224"), ("APVIT", "NONE", "apvit"),
             ("GradCam", "WGAP", "resnet50"), ("GradCAMpp", "WGAP", "resnet50"), ("LayerCAM", "WGAP", "resnet50"),
             ("WILDCAT", "WildCatCLHead", "resnet50"), ("ACoL", "ACOL", "resnet50"), ("PRM", "PRM", "resnet50"),
             ("ADL", "WGAP", "resnet50"), ("CutMIX", "WGAP", "resnet50")]


def test_every_published_folder_is_recognised(tmp_path):
    from bench.importers.fer_aus_config import read_checkpoint

    seen = set()
    for dataset in ("AffectNet", "RAF-DB"):
        for theirs, pooling, encoder in PUBLISHED:
            for au in (True, False):
                folder = (tmp_path / "FG_FER" / dataset / encoder / "STD_CL" / theirs / f"align_atten_to_heatmap_{au}"
                          / f"{dataset}-{encoder}-{theirs}-{pooling}-cp_best-boxv2_False")
                folder.mkdir(parents=True)
                (folder / "config_model.yaml").write_text("MYSEED: 0\n")
                ck = read_checkpoint(folder)
                assert (ck.au, ck.checkpoint, ck.method.theirs, ck.encoder) == (au, "best", theirs, encoder)
                seen.add((ck.dataset, ck.method.ours, ck.au))
    assert len(seen) == 44 and {d for d, _, _ in seen} == {"rafdb", "affectnet"}


@pytest.mark.slow
def test_imported_models_are_evaluated_and_shown_as_imported(exported, tmp_path, monkeypatch):
    """`bench import fer-aus` -> kept models -> `bench eval` (nothing trained) -> `bench table` marks them."""
    import csv
    import io
    import os
    import subprocess
    import sys

    from test_data_rafdb import make_rafdb, write_landmarks

    env = {**os.environ, "BENCH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    env.pop("BENCH_DATA", None)
    monkeypatch.setenv("BENCH_CACHE", env["BENCH_CACHE"])
    root, basic, names, truth = make_rafdb(tmp_path / "data")
    write_landmarks(basic, names, truth, "original")          # their evaluation crops the original images
    checkpoints = tmp_path / "checkpoints"
    for method in ("cam", "gradcam"):
        _write(checkpoints, method, exported[method][3])
    results = tmp_path / "results"

    def bench(*args):
        out = subprocess.run([sys.executable, "-c", "from bench.cli.main import main; main()", *args], env=env,
                             capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        return out

    bench("import", "fer-aus", str(checkpoints), "--run-name", "imported", "--profile", "smoke",
          "--results-dir", str(results), "--set", "model.width=0.125")
    models = sorted(p.name for p in (results / "imported" / "models").iterdir())
    assert len(models) == 2 and all(m.startswith("imported-") for m in models)
    out = bench("eval", "--run", "imported", "--results-dir", str(results), "--executor", "local",
                "--data-root", str(root))
    assert "done: 0 trained, 2 evaluated" in out.stderr
    table = bench("table", "--run", "imported", "--results-dir", str(results), "--format", "csv", "--metric", "cl")
    titles = {row["method"]: row["title"] for row in csv.DictReader(io.StringIO(table.stdout))}
    assert titles == {"cam": "CAM (imported)", "gradcam": "GradCAM (imported)"}
