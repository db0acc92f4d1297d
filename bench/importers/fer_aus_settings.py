"""The settings our model needs to be the authors' model, read from their ``config_model.yaml``.

``model_overrides`` shapes the model (backbone, strides, head options, input size, alignment layer):
with them, ``bench.train.model.build_model`` builds a network whose state dict the key map fills
exactly. ``eval_overrides`` are the evaluation settings under which their numbers were computed
(their codebook, their RAF-DB crops). ``notes`` say where our forward or CAM of the same weights
cannot be theirs. Settings we cannot reproduce (extra dense layers, a background class, feature
self-attention, APViT's other attention functions) stop the import with one line.
"""
from __future__ import annotations

from typing import Any

from bench.errors import UserError
from bench.importers.fer_aus_config import Checkpoint
from bench.importers.keymap_tscam import ENCODERS as TSCAM_ENCODERS

RESNETS = ("resnet18", "resnet34", "resnet50")
#: their ``align_atten_to_heatmap_layers`` index -> our feature name, per layout (their eval.py columns).
LAYERS = {
    "resnet": {str(i): f"layer{i}" for i in range(1, 6)},
    "tscam": {"1": "final", "2": "attention"},   # patch tokens after the final LayerNorm; A*
    "apvit": {"1": "stage3"},                    # IR-50 stage-3 map
}
#: the layer their eval.py reports for models trained without AU (ResNet 5, CutMix 4, transformers 1).
DEFAULT_LAYER = {"resnet": "5", "tscam": "1", "apvit": "1"}


def _unsupported(ck: Checkpoint, what: str) -> UserError:
    return UserError(f"{ck.folder}: {what}; our {ck.method.ours} model has no such part, so this checkpoint "
                     "cannot be imported")


def check_supported(ck: Checkpoint) -> None:
    if ck.setting("task", "STD_CL") != "STD_CL":
        raise _unsupported(ck, f"task {ck.setting('task')!r} (only STD_CL classifiers are published)")
    if int(ck.setting("num_classes", 7)) != 7:
        raise _unsupported(ck, f"{ck.setting('num_classes')} classes (the paper's models have 7)")
    if ck.setting("support_background", False):
        raise _unsupported(ck, "model.support_background is true (an extra background map)")
    if str(ck.setting("dense_dims", "") or "") not in ("", "None"):
        raise _unsupported(ck, f"dense_dims={ck.setting('dense_dims')!r} (dense layers in the head)")
    if float(ck.setting("scale_in", 1.0)) != 1.0:
        raise _unsupported(ck, f"model.scale_in={ck.setting('scale_in')} (the input is rescaled inside the model)")
    if ck.setting("do_segmentation", False):
        raise _unsupported(ck, "model.do_segmentation is true (a segmentation head)")
    if ck.setting("align_atten_to_heatmap", False) and ck.setting("align_atten_to_heatmap_use_self_atten", False):
        raise _unsupported(ck, "align_atten_to_heatmap_use_self_atten is true (features multiplied by their attention)")
    if ck.method.layout == "apvit":
        if ck.setting("apvit_attn_method", "SUM_ABS_1") != "SUM_ABS_1":
            raise _unsupported(ck, f"model.apvit_attn_method={ck.setting('apvit_attn_method')!r} (ours is SUM_ABS_1)")
        if ck.setting("apvit_normalize_att", False) or ck.setting("apvit_apply_self_att", False):
            raise _unsupported(ck, "model.apvit_normalize_att/apvit_apply_self_att is true")


def alignment_layers(ck: Checkpoint) -> tuple[str, ...]:
    """Their aligned layer(s) as our feature names (the layer their eval reports when trained w/o AU)."""
    names = LAYERS[ck.method.layout]
    raw = str(ck.setting("align_atten_to_heatmap_layers", "") or "") if ck.au else ""
    raw = raw or ("4" if ck.method.theirs == "CutMIX" else DEFAULT_LAYER[ck.method.layout])
    out = []
    for index in raw.split("-"):
        if index.strip() not in names:
            raise UserError(f"{ck.folder}: align_atten_to_heatmap_layers={raw!r} names layer {index!r}, which "
                            f"{ck.method.theirs} does not have here (known: {', '.join(names)})")
        out.append(names[index.strip()])
    return tuple(out)


def model_overrides(ck: Checkpoint) -> list[tuple[str, Any]]:
    """``--set`` pairs that make our model the authors' (applied after the profile, before the user's)."""
    check_supported(ck)
    size = int(ck.setting("crop_size", 224))
    out: list[tuple[str, Any]] = [("model.pretrained", False), ("model.pretrained_path", ""),
                                  ("data.image_size", size), ("au.layers", list(alignment_layers(ck)))]
    if ck.au and ck.setting("align_atten_to_heatmap_lambda") is not None:
        out.append(("au.weight", float(ck.setting("align_atten_to_heatmap_lambda"))))
    layout = ck.method.layout
    if layout == "resnet":
        out += _resnet(ck)
    elif layout == "tscam":
        out += _tscam(ck, size)
    else:
        out += _apvit(ck, size)
    return out


def _resnet(ck: Checkpoint) -> list[tuple[str, Any]]:
    if ck.encoder not in RESNETS:
        raise UserError(f"{ck.folder}: encoder {ck.encoder!r} is not one of ours ({', '.join(RESNETS)})")
    out: list[tuple[str, Any]] = [("model.backbone", ck.encoder), ("model.width", 1.0),
                                  ("model.large_maps", bool(ck.setting("large_maps", False)))]
    name = ck.method.ours
    if ck.method.head == "wildcat":
        # alpha 0: their min term is computed and discarded (not in place), so their score is the
        # top-kmax mean alone; with alpha 0 ours computes the same score from the same maps.
        out += [(f"methods.{name}.maps", int(ck.setting("wc_modalities", 5))),
                (f"methods.{name}.kmax", float(ck.setting("wc_kmax", 0.5))),
                (f"methods.{name}.kmin", float(ck.setting("wc_kmin", 0.1))),
                (f"methods.{name}.alpha", 0.0),
                (f"methods.{name}.dropout", float(ck.setting("wc_dropout", 0.0)))]
    elif ck.method.head == "acol":
        out += [(f"methods.{name}.threshold", float(ck.setting("acol_drop_threshold", 0.1))),
                (f"methods.{name}.hidden", 1024)]            # fixed in their AcolBase
    elif ck.method.head == "prm":
        out += [(f"methods.{name}.window", int(ck.setting("prm_ks", 3)))]
    if ck.method.adl:
        out += [(f"methods.{name}.drop_rate", float(ck.setting("adl_drop_rate", 0.4))),
                (f"methods.{name}.threshold", float(ck.setting("adl_drop_threshold", 0.1)))]
    if ck.method.theirs == "CutMIX":
        out += [(f"methods.{name}.beta", float(ck.setting("cutmix_beta", 1.0))),
                (f"methods.{name}.prob", float(ck.setting("cutmix_prob", 1.0)))]
    return out


def _tscam(ck: Checkpoint, size: int) -> list[tuple[str, Any]]:
    if ck.encoder not in TSCAM_ENCODERS:
        raise UserError(f"{ck.folder}: TS-CAM encoder {ck.encoder!r} is not one of {', '.join(TSCAM_ENCODERS)}")
    model, patch, dim, depth, heads = TSCAM_ENCODERS[ck.encoder]
    return [("methods.tscam.model", model), ("methods.tscam.image_size", size),
            ("methods.tscam.patch_size", patch), ("methods.tscam.embed_dim", dim),
            ("methods.tscam.depth", depth), ("methods.tscam.num_heads", heads),
            ("methods.tscam.pretrained_path", "")]


def _apvit(ck: Checkpoint, size: int) -> list[tuple[str, Any]]:
    # PoolingVitClassifier's fixed architecture (apvit.py: EXTRACTOR_CONFIG, VIT_SMALL, VIT_CONFIG,
    # build_vit): IR-50 stages 1-3, ViT 768 wide, 8 blocks, 8 heads, mlp 3, keep rates [1]*4 + [r]*4.
    return [("methods.apvit.input_size", size), ("methods.apvit.ir50_units", [3, 4, 14]),
            ("methods.apvit.ir50_width", 1.0), ("methods.apvit.embed_dim", 768), ("methods.apvit.depth", 8),
            ("methods.apvit.num_heads", 8), ("methods.apvit.mlp_ratio", 3.0),
            ("methods.apvit.keep_tokens", int(ck.setting("apvit_k", 160))),
            ("methods.apvit.keep_rate", float(ck.setting("apvit_r", 0.9))),
            ("methods.apvit.pool_blocks", 4), ("methods.apvit.vit_weights", "")]


def eval_overrides(ck: Checkpoint) -> list[tuple[str, Any]]:
    """Evaluation settings of their numbers: the released codebook (Disgust with AU5) and, on RAF-DB,
    faces cropped from ``Image/original`` with the box + 30 %."""
    out: list[tuple[str, Any]] = [("au.codebook", "reference")]
    if ck.dataset == "rafdb":
        out.append(("data.rafdb_images", "original"))
    return out


def notes(ck: Checkpoint) -> list[str]:
    """Where our forward or CAM of these exact weights differs from the authors' code."""
    out = []
    if ck.method.head == "prm":
        out.append("PRM: their head scores a class by average-pooling a 3x3 max-pooled map; ours uses PRM's "
                   "peak stimulation, so CL differs on the same weights (the class maps, our CAM, are theirs)")
    if ck.method.adl:
        out.append("ADL: their CAM hooks encoder.layer4.2.relu3, which with ADL inserted is bottleneck 1 of "
                   "layer4; ours uses the layer4 output, so CAM-COS differs (logits and ATT-COS do not)")
    if ck.method.head == "wildcat":
        out.append("WILDCAT: imported with alpha=0, which reproduces their score (their min term is discarded)")
    if ck.method.theirs == "GradCAMpp":
        out.append("GradCAM++: their vendored torch-cam never divides alpha (alpha = g^2); ours is the published "
                   "formula, so CAM-COS differs on the same weights")
    if ck.method.layout == "tscam":
        out.append("TS-CAM: ATT-COS of their aligned layer is our 'final' (tokens after the last LayerNorm)")
    if ck.checkpoint == "best":
        out.append("selection: best CL on the test split (their validation fold is the test set)")
    return out
