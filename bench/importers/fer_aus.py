"""Import the paper's published checkpoints (sbelharbi/interpretable-fer-aus) as models of ours.

``import_checkpoint(folder)`` reads one checkpoint folder (``model.pt`` + ``config_model.yaml``, named
by the run's tag), works out dataset, method and AU mode, builds our model for that method with the
settings that make it theirs (``fer_aus_settings``), and maps every tensor onto it through the
method's key map: a key the checkpoint lacks, a key nothing uses, a shape that differs or a
checkpoint of another method stops the import with one line; there is no partial load.
``model.pt`` is read with ``torch.load(weights_only=True)``: their files hold dicts of tensors only.

``import_checkpoints(path)`` does the same for a folder of them (the unpacked Hugging Face archive),
and ``import_command`` is the body of ``bench import fer-aus PATH...``: it hands each imported model
to a store function, so the model store itself stays the trainer's.
"""
from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from bench.config.settings import Config, resolve
from bench.errors import UserError
from bench.importers import keymap_apvit, keymap_resnet, keymap_tscam
from bench.importers.fer_aus_config import Checkpoint, read_checkpoint
from bench.importers.fer_aus_settings import eval_overrides, model_overrides, notes
from bench.importers.keymap import KeyMapError, Source, flatten, map_state
from bench.train.model import build_model, make_method

SOURCE = "sbelharbi/interpretable-fer-aus"
NUM_CLASSES = 7       # their class order is ours: Neutral, Happiness, Surprise, Fear, Anger, Disgust, Sadness


@dataclass
class ImportedModel:
    """One imported checkpoint: what it is, the settings that rebuild it here, and its weights."""

    method: str                          # our plugin named by their run (e.g. gradcam)
    trains_like: str                     # the plugin whose model holds the weights (gradcam -> cam)
    dataset: str                         # rafdb | affectnet
    au: bool                             # trained with AU alignment
    checkpoint: str                      # best | last
    overrides: list[tuple[str, Any]]     # model-shaping settings, applied after the profile
    eval_overrides: list[tuple[str, Any]]  # evaluation settings of their numbers (codebook, crops)
    state_dict: dict[str, torch.Tensor]  # our key names
    provenance: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def config(self, profile: str = "paper", overrides: Sequence[tuple[str, Any]] = ()) -> Config:
        """The resolved configuration of this model (profile, then its overrides, then ``overrides``)."""
        return resolve(profile, [*self.overrides, *overrides], self.dataset, self.trains_like, self.au)

    def build(self, profile: str = "paper", overrides: Sequence[tuple[str, Any]] = ()):
        """(our Method plugin named by their run, the model with these weights loaded, in eval mode)."""
        config = self.config(profile, overrides)
        method = make_method(self.method, config)
        model = build_model(make_method(self.trains_like, config), config, NUM_CLASSES)
        model.load_state_dict(self.state_dict, strict=True)
        return method, model.eval()


def find_checkpoints(path: Path | str, checkpoint: str = "best") -> list[Path]:
    """Checkpoint folders at or under ``path``; under a tree, only the ``cp_<checkpoint>`` ones
    (``checkpoint="all"`` keeps both); a folder or ``model.pt`` given directly is always taken."""
    path = Path(path).expanduser()
    if path.is_file() and path.name == "model.pt":
        return [path.parent]
    if (path / "model.pt").is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"{path} does not exist; give a checkpoint folder (model.pt + config_model.yaml) "
                        "or a folder of them (the unpacked shared-trained-models.tar.gz)")
    found = sorted(p.parent for p in path.rglob("model.pt"))
    if checkpoint != "all":
        found = [f for f in found if f"-cp_{checkpoint}-" in f.name or "-cp_" not in f.name]
    if not found:
        raise UserError(f"no cp_{checkpoint} model.pt under {path}; give a checkpoint folder or the unpacked "
                        "archive (its folders are named <dataset>-<encoder>-<method>-<pooling>-cp_best-boxv2_False)")
    return found


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """``model.pt`` as flat dotted keys, read with ``weights_only=True`` (tensors and dicts only)."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} holds Python objects besides tensors and dicts ({first}); it is not loaded "
                        "(weights_only=True); is it one of the published model.pt files?") from None
    except (OSError, RuntimeError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read {path} ({first}); download and unpack the archive again") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} holds a {type(raw).__name__}, not a state dict; is it a published model.pt?")
    flat = flatten(raw)
    for key, value in flat.items():
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{path}: key {key} holds a {type(value).__name__}, not a tensor; not a state dict")
    return flat


def keymap_for(ck: Checkpoint, model: torch.nn.Module) -> dict[str, Source]:
    if ck.method.layout == "resnet":
        return keymap_resnet.keymap(model, ck.method.head, ck.method.adl)
    if ck.method.layout == "tscam":
        return keymap_tscam.keymap(model)
    return keymap_apvit.keymap(model)


def layout_of(keys: Iterable[str]) -> str | None:
    """Which of their model families a set of checkpoint keys looks like (for a wrong-method error)."""
    keys = set(keys)
    if "vit.patch_pos_embed" in keys:
        return "APVIT"
    if "head.weight" in keys and any(k.startswith("blocks.") for k in keys):
        return "TSCAM"
    heads = {"classification_head.to_modalities.weight": "WILDCAT",
             "classification_head.acol_pooler.classifier_A.0.weight": "ACoL",
             "classification_head.conv.weight": "PRM"}
    for key, name in heads.items():
        if key in keys:
            return name
    if "classification_head.fc.weight" in keys:
        blocks = {k.split(".")[2] for k in keys if k.startswith("encoder.layer4.")}
        return "ADL" if "1" not in blocks and "2" in blocks else "CAM/GradCam/GradCAMpp/LayerCAM/CutMIX"
    return None


def import_checkpoint(folder: Path | str, profile: str = "paper",
                      overrides: Sequence[tuple[str, Any]] = ()) -> ImportedModel:
    """One checkpoint folder (or its ``model.pt``) -> an ``ImportedModel`` with our key names.

    ``overrides`` (``--set`` pairs) come after the ones derived from their config; they must not change
    the architecture (the shapes are checked), so they are for tests and unusual profiles.
    """
    folder = Path(folder).expanduser()
    folder = folder.parent if folder.name == "model.pt" else folder
    weights_file = folder / "model.pt"
    if not weights_file.is_file():
        raise UserError(f"{folder} has no model.pt; give a checkpoint folder (model.pt + config_model.yaml)")
    ck = read_checkpoint(folder)
    derived = model_overrides(ck)
    trains_like = _trains_like(ck.method.ours)
    config = resolve(profile, [*derived, *overrides], ck.dataset, trains_like, ck.au)
    model = build_model(make_method(trains_like, config), config, NUM_CLASSES)
    theirs = load_weights(weights_file)
    mapping = keymap_for(ck, model)
    ours = model.state_dict()
    try:
        state = map_state(mapping, theirs, {k: v.shape for k, v in ours.items()})
    except KeyMapError as exc:
        seen = layout_of(theirs)
        hint = (f"; its keys are those of a {seen} model, the tag says {ck.method.theirs}"
                if seen and ck.method.theirs not in seen.split("/") else "")
        if not hint and exc.shapes and not exc.missing and not exc.unused:
            hint = "; the weights were trained with other sizes than config_model.yaml and --set give"
        raise UserError(f"{weights_file}: does not fit {ck.method.theirs} ({ck.tag}): {exc.summary()}{hint}") from None
    provenance = {
        "imported": True,
        "importer": "fer-aus",
        "source": SOURCE,
        "source_path": str(weights_file.resolve()),
        "sha256": sha256(weights_file),
        "config_sha256": sha256(folder / "config_model.yaml"),
        "tag": ck.tag,
        "their_method": ck.method.theirs,
        "their_encoder": ck.encoder,
        "checkpoint": ck.checkpoint,
        "selection": ("best CL on the test split (their validation fold is the test set)"
                      if ck.checkpoint == "best" else "last epoch"),
        "their_settings": {k: ck.setting(k) for k in (
            "dataset", "method", "spatial_pooling", "crop_size", "resize_size", "align_atten_to_heatmap",
            "align_atten_to_heatmap_layers", "align_atten_to_heatmap_lambda", "max_epochs", "best_epoch",
            "MYSEED", "large_maps", "encoder_weights")},
    }
    return ImportedModel(method=ck.method.ours, trains_like=trains_like, dataset=ck.dataset, au=ck.au,
                         checkpoint=ck.checkpoint, overrides=derived, eval_overrides=eval_overrides(ck),
                         state_dict=state, provenance=provenance, notes=notes(ck))


def _trains_like(name: str) -> str:
    from methods import get_method

    return get_method(name).train_group()


def import_checkpoints(path: Path | str, profile: str = "paper", overrides: Sequence[tuple[str, Any]] = (),
                       checkpoint: str = "best") -> Iterable[ImportedModel]:
    """Every checkpoint at or under ``path``, one at a time (a 44-model archive never sits in memory)."""
    for folder in find_checkpoints(path, checkpoint):
        yield import_checkpoint(folder, profile, overrides)


def model_record(imported: ImportedModel, profile: str = "paper") -> dict[str, Any]:
    """The fields a kept model's ``model.json`` needs for an imported model (the store adds its own).

    ``spec`` is what ``bench eval`` rebuilds the model and its evaluation from: the profile, then the
    model-shaping overrides, then the evaluation settings of the authors' numbers.
    """
    seed = imported.provenance["their_settings"].get("MYSEED")
    return {
        "imported": True,
        "spec": {"profile": profile, "method": imported.trains_like, "dataset": imported.dataset, "au": imported.au,
                 "seed": 0 if seed is None else int(seed),
                 "overrides": [[k, v] for k, v in [*imported.overrides, *imported.eval_overrides]]},
        "method": imported.trains_like,
        "extractor": imported.method,
        "dataset": imported.dataset,
        "au": imported.au,
        "seed": seed,
        "overrides": [[k, v] for k, v in imported.overrides],
        "eval_overrides": [[k, v] for k, v in imported.eval_overrides],
        "selected_on": "test" if imported.checkpoint == "best" else "last",
        "provenance": imported.provenance,
        "notes": imported.notes,
    }


def import_command(paths: Sequence[Path | str], run_dir: Path | str, say: Callable[[str], None],
                   save_model: Callable[[Path, ImportedModel], Any], profile: str = "paper",
                   overrides: Sequence[tuple[str, Any]] = (), checkpoint: str = "best") -> list[Any]:
    """``bench import fer-aus PATH...``: import every checkpoint and hand each to ``save_model``.

    A checkpoint that fails is reported and skipped; the others are stored. If any failed, a
    ``UserError`` says how many at the end, after everything importable was saved.
    """
    run_dir = Path(run_dir)
    folders = [f for p in paths for f in find_checkpoints(p, checkpoint)]
    saved, failed = [], []
    for folder in folders:
        try:
            imported = import_checkpoint(folder, profile, overrides)
        except UserError as exc:
            failed.append(str(exc))
            say(f"skipped: {exc}")
            continue
        where = save_model(run_dir, imported)
        saved.append(where)
        mode = "w/ AU" if imported.au else "w/o AU"
        say(f"imported {imported.provenance['tag']} as {imported.method} ({imported.dataset}, {mode})"
            + (f" -> {where}" if where is not None else ""))
        del imported
    if failed:
        raise UserError(f"{len(failed)} of {len(folders)} checkpoints were not imported; first: {failed[0]}")
    return saved
