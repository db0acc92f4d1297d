"""What an interpretable-fer-aus checkpoint folder says about itself: its tag and its config.

A folder holds ``model.pt`` and ``config_model.yaml`` (``yaml.dump(vars(args))`` of the run's
arguments) and is named by the run's tag, ``{dataset}-{encoder}-{method}-{pooling}-cp_{best|last}-boxv2_{bool}``
(``dlib/utils/tools.py``, ``get_tag``). The Hugging Face tarball puts it under
``FG_FER/<dataset>/<encoder>/STD_CL/<method>/align_atten_to_heatmap_<bool>/<tag>/``. The tag does not
name the AU mode: it comes from the config (``align_atten_to_heatmap``) and, when present, the parent
folder name; where the sources disagree the import stops.

Their config may contain Python-object tags (``munch.Munch`` for ``data_paths``); they are read as
plain data and never constructed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import UserError

#: their dataset name -> ours (``constants.RAFDB``, ``constants.AFFECTNET``).
DATASETS = {"RAF-DB": "rafdb", "AffectNet": "affectnet"}


@dataclass(frozen=True)
class FerMethod:
    """One of their methods (``dlib/configure/constants.py``) and what it is here."""

    theirs: str          # their ``--method``
    ours: str            # our plugin (the extractor the table row names)
    pooling: str         # their ``spatial_pooling`` (``METHOD_2_POOLINGHEAD``)
    layout: str          # resnet | tscam | apvit: which key map
    head: str = ""       # resnet head kind (keymap_resnet.HEADS)
    adl: bool = False    # ADL modules inside the encoder


METHODS = {m.theirs: m for m in (
    FerMethod("CAM", "cam", "WGAP", "resnet", "wgap"),
    FerMethod("GradCam", "gradcam", "WGAP", "resnet", "wgap"),
    FerMethod("GradCAMpp", "gradcampp", "WGAP", "resnet", "wgap"),
    FerMethod("LayerCAM", "layercam", "WGAP", "resnet", "wgap"),
    FerMethod("CutMIX", "cutmix", "WGAP", "resnet", "wgap"),
    FerMethod("ADL", "adl", "WGAP", "resnet", "wgap", adl=True),
    FerMethod("WILDCAT", "wildcat", "WildCatCLHead", "resnet", "wildcat"),
    FerMethod("ACoL", "acol", "ACOL", "resnet", "acol"),
    FerMethod("PRM", "prm", "PRM", "resnet", "prm"),
    FerMethod("TSCAM", "tscam", "GAP", "tscam"),
    FerMethod("APVIT", "apvit", "NONE", "apvit"),
)}

TAG = re.compile(r"^(?P<dataset>RAF-DB|AffectNet)-(?P<encoder>[^-]+)-(?P<method>[^-]+)-(?P<pooling>[^-]+)"
                 r"-cp_(?P<checkpoint>best|last)-boxv2_(?P<boxv2>True|False)$")
AU_FOLDER = re.compile(r"^align_atten_to_heatmap_(True|False)$")


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint folder, read and cross-checked."""

    folder: Path
    tag: str
    dataset: str         # ours: rafdb | affectnet
    encoder: str         # theirs: resnet50, deit_tscam_small_patch16_224, apvit
    method: FerMethod
    au: bool
    checkpoint: str      # best | last
    config: dict[str, Any]

    def setting(self, key: str, default: Any = None) -> Any:
        """A value of their config: top level, else under ``model`` (their ``args.model`` dict)."""
        if key in self.config:
            return self.config[key]
        return (self.config.get("model") or {}).get(key, default)


def _plain_loader():
    import yaml

    class PlainLoader(yaml.SafeLoader):
        """SafeLoader that reads ``!!python/...`` tags as the plain mapping/sequence/scalar under them."""

    def construct_plain(loader, suffix, node):
        if isinstance(node, yaml.MappingNode):
            value = loader.construct_mapping(node, deep=True)
            for key in ("dictitems", "state"):          # munch.Munch / objects dumped with their state
                if isinstance(value.get(key), dict):
                    return value[key]
            return value
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)

    PlainLoader.add_multi_constructor("tag:yaml.org,2002:python/", construct_plain)
    PlainLoader.add_multi_constructor("!", construct_plain)
    return PlainLoader


def read_config(path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ImportError:
        raise UserError("reading config_model.yaml needs PyYAML; install it with `pip install pyyaml`") from None
    try:
        data = yaml.load(path.read_text(), Loader=_plain_loader())
    except OSError as exc:
        raise UserError(f"cannot read {path} ({exc.strerror}); every checkpoint folder needs its config_model.yaml") from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not valid YAML ({first}); re-extract the checkpoint archive") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold the run's arguments (a mapping); is it an interpretable-fer-aus config_model.yaml?")
    return data


def _au_from_folders(folder: Path) -> bool | None:
    for parent in (folder.parent, folder.parent.parent):
        match = AU_FOLDER.match(parent.name)
        if match:
            return match.group(1) == "True"
    return None


def read_checkpoint(folder: Path) -> Checkpoint:
    """Tag, dataset, method and AU mode of one folder, from its name, its config and its parents."""
    config = read_config(folder / "config_model.yaml")
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    from_config = {"dataset": config.get("dataset"), "encoder": model.get("encoder_name"),
                   "method": config.get("method"), "pooling": config.get("spatial_pooling")}
    match = TAG.match(folder.name)
    if match:
        fields = match.groupdict()
        for key, value in from_config.items():
            if value is not None and str(value) != fields[key]:
                raise UserError(f"{folder}: the folder's tag says {key} {fields[key]!r} but config_model.yaml says "
                                f"{value!r}; the folder was renamed or its files mixed up")
        tag, checkpoint = folder.name, fields["checkpoint"]
    else:
        missing = [k for k, v in from_config.items() if v is None]
        if missing:
            raise UserError(f"{folder}: the folder name is not an interpretable-fer-aus tag "
                            "({dataset}-{encoder}-{method}-{pooling}-cp_{best|last}-boxv2_False) and "
                            f"config_model.yaml lacks {missing[0]}; keep the folder name from the archive")
        fields = {k: str(v) for k, v in from_config.items()}
        checkpoint = str(config.get("eval_checkpoint_type", "best"))
        tag = (f"{fields['dataset']}-{fields['encoder']}-{fields['method']}-{fields['pooling']}"
               f"-cp_{checkpoint}-boxv2_{config.get('box_v2_metric', False)}")
    dataset = DATASETS.get(fields["dataset"])
    if dataset is None:
        raise UserError(f"{folder}: dataset {fields['dataset']!r} is not one this importer knows "
                        f"({', '.join(DATASETS)})")
    method = METHODS.get(fields["method"])
    if method is None:
        raise UserError(f"{folder}: method {fields['method']!r} is not one of the paper's "
                        f"({', '.join(METHODS)})")
    if fields["pooling"] != method.pooling:
        raise UserError(f"{folder}: {method.theirs} checkpoints use the {method.pooling} head, this one names "
                        f"{fields['pooling']!r}; the importer cannot map that head")
    au_config = config.get("align_atten_to_heatmap")
    au_folder = _au_from_folders(folder)
    if au_config is not None and au_folder is not None and bool(au_config) != au_folder:
        raise UserError(f"{folder}: config_model.yaml says align_atten_to_heatmap={au_config} but the folder sits "
                        f"under align_atten_to_heatmap_{au_folder}; the archive was rearranged")
    au = au_config if au_config is not None else au_folder
    if au is None:
        raise UserError(f"{folder}: cannot tell whether the model was trained with AU alignment: config_model.yaml "
                        "has no align_atten_to_heatmap and no parent folder is align_atten_to_heatmap_<True|False>")
    return Checkpoint(folder=folder, tag=tag, dataset=dataset, encoder=fields["encoder"], method=method,
                      au=bool(au), checkpoint=checkpoint, config=config)
