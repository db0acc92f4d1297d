"""Resolved configuration: profile TOML + ``--set key=value`` overrides -> typed, frozen sections.

A profile (``bench/config/profiles/<name>.toml`` or a path) lists every field; ``--set`` may only change
fields that exist (a typo is an error, never a silent no-op). Method hyperparameters live under
``methods.<name>`` and are checked against that plugin's ``Config``. Tables under
``datasets.<name>.<section>`` apply to that dataset only (the paper's λ is 4 on RAF-DB and 9 on
AffectNet), and ``per_method.<name>.<section>`` to trials that train that method (a ViT's
optimiser and learning rate); ``--set`` wins over both.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import UserError

PROFILE_DIR = Path(__file__).parent / "profiles"


@dataclass(frozen=True)
class DataConfig:
    image_size: int = 64          # images are decoded once, resized to this square size
    train_size: int = 700         # synthetic: faces per split
    val_size: int = 140
    test_size: int = 280
    shortcut: float = 0.0         # synthetic: P(train image carries the class-coloured patch)
    root: str = ""                # real datasets: data root (or $BENCH_DATA)
    val_fraction: float = 0.1     # real datasets: share of train held out for model selection
    test_fraction: float = 0.2    # folder datasets without a test/ folder: share held out for test
    max_skipped: float = 0.01     # real datasets: most unreadable images per split before stopping
    landmarks: str = "auto"       # auto | dataset | dlib | face-alignment | none (source of 68 points)
    contempt: bool = False        # affectnet/folder: keep Contempt as an 8th class
    rafdb_images: str = "aligned"  # rafdb: aligned (100 px) | original (cropped from the boxes + 30%)
    device_budget: float = 0.5    # CUDA: a split is copied whole to the GPU when it fits this share of the
                                  # trial's GPU memory (its fraction of the card); larger splits stream
    min_au_coverage: float = 0.5  # w/ AU: least share of training faces that should have an AU map and do


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "resnet50"
    pretrained: bool = False
    pretrained_path: str = ""
    large_maps: bool = True       # layer3/layer4 stride 1: 28x28 layer5 at 224 (the paper's setup)
    width: float = 1.0            # channel multiplier (narrow nets for CPU profiles)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 32
    eval_batch_size: int = 64
    optimizer: str = "sgd"        # sgd | adamw
    lr: float = 0.002
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    lr_step: int = 4              # StepLR period in epochs (reference "mystep": x0.9 every 4)
    lr_gamma: float = 0.9
    flip: float = 0.5             # augmentation: P(horizontal flip)
    rotation: float = 6.0         # augmentation: max |degrees|
    crop_scale: float = 0.8       # augmentation: smallest random-resized-crop area fraction
    jitter: float = 0.3           # augmentation: brightness/contrast amplitude
    amp: bool = True              # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True    # on CUDA
    deterministic: bool = False   # CUDA: deterministic kernels only (slower). CPU runs repeat exactly at a fixed thread count
    checkpoint: bool = True       # save a resumable checkpoint every epoch
    keep_models: bool = True      # keep the selected weights in <run>/models/ for later evaluations
    select_on: str = "val"        # val | test (test reproduces the reference; the row says so)


@dataclass(frozen=True)
class AUConfig:
    weight: float = 4.0           # λ (reference: 4 for RAF-DB CAM, 9 for AffectNet CAM)
    layers: tuple[str, ...] = ()  # empty: the method's own alignment_layers
    codebook: str = "paper"       # paper | reference
    edge: float = 0.35             # soft-edge width, fraction of the inter-ocular distance


@dataclass(frozen=True)
class EvalConfig:
    layers: tuple[str, ...] = ()  # ATT-COS layers; empty: every feature map the model returns
    extended: bool = False        # also faithfulness, sanity and AU-localisation metrics (--eval extended)
    sample_size: int = 256        # test faces (seeded choice) the extended metrics use; 0: all
    interventions: bool = False   # does the decision use the AUs? counterfactual faces (synthetic) or AU-region
                                  # deletion (real faces), on the same sample (--eval interventions)
    faithfulness_target: str = "true"  # true | predicted: the class deletion/insertion/ROAD explain and score
                                       # (true: the CAM the other metrics judge; predicted: RISE's top-1)
    pointing_tolerance: float = 0.0    # pointing game: pixels at the input size a peak may miss an AU region by
                                       # (Zhang et al.: 15 at 224, i.e. 15 * side / 224); 0: strict

    def __post_init__(self):
        if self.faithfulness_target not in ("true", "predicted"):
            raise UserError(f"eval.faithfulness_target = {self.faithfulness_target!r} is not allowed; "
                            f"use true or predicted (--set eval.faithfulness_target=predicted)")
        if not self.pointing_tolerance >= 0:
            raise UserError(f"eval.pointing_tolerance = {self.pointing_tolerance} must be >= 0 pixels; "
                            f"e.g. --set eval.pointing_tolerance=15 at 224 px")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    au: AUConfig = field(default_factory=AUConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self, methods: bool = True) -> str:
        """Hash of the resolved configuration; ``methods=False`` leaves out the plugin option tables
        (a trial's identity records the resolved Config of its own methods instead)."""
        content = self.to_dict()
        if not methods:
            content.pop("methods")
        blob = json.dumps(content, sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "methods"}
_SECTION_TYPES = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "au": AUConfig,
                  "eval": EvalConfig}


def profile_path(profile: str) -> Path:
    path = Path(profile)
    if path.suffix == ".toml":
        if not path.is_file():
            raise UserError(f"profile file {path} does not exist; give a TOML path or one of: {', '.join(profile_names())}")
        return path
    path = PROFILE_DIR / f"{profile}.toml"
    if not path.is_file():
        raise UserError(f"unknown profile {profile!r}; known: {', '.join(profile_names())} (or a path to a .toml file)")
    return path


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def parse_override(item: str) -> tuple[str, Any]:
    """'train.lr=0.01' -> ('train.lr', 0.01). Values are TOML literals; bare words are strings."""
    if "=" not in item:
        raise UserError(f"bad --set {item!r}: expected key=value, e.g. --set train.epochs=5")
    key, raw = (s.strip() for s in item.split("=", 1))
    if not key:
        raise UserError(f"bad --set {item!r}: empty key")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def _merge(base: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def _scoped_tables(raw: dict, path: Path) -> dict[str, dict[str, dict]]:
    """Pop the ``datasets``/``per_method``/``per_au`` tables (name -> partial profile) and check each
    one against the full profile, so a typo in any of them is an error for every run."""
    scoped = {}
    for key in SCOPED:
        tables = raw.pop(key, {})
        if not isinstance(tables, dict) or not all(isinstance(v, dict) for v in tables.values()):
            raise UserError(f"{path}: [{key}.<name>.<section>] tables expected")
        scoped[key] = tables
    bad_modes = sorted(set(scoped["per_au"]) - set(AU_MODES.values()))
    if bad_modes:
        raise UserError(f"{path}: [per_au.{bad_modes[0]}] is not an AU mode; use [per_au.on.<section>] or "
                        "[per_au.off.<section>]")
    for key, tables in scoped.items():
        for name, table in tables.items():
            merged = copy.deepcopy(raw)
            _merge(merged, table)
            build_config(merged, f"{path} [{key}.{name}]")
    return scoped


#: Tables that apply to part of a sweep: one dataset, the trials of one method, one AU mode.
SCOPED = ("datasets", "per_method", "per_au")
#: ``au`` flag of a trial -> its ``per_au`` table name.
AU_MODES = {False: "off", True: "on"}


def _set(raw: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"bad --set {key}: {part} is not a section")
    node[parts[-1]] = value


def resolve(profile: str, overrides: list[tuple[str, Any]] | tuple = (), dataset: str | None = None,
            method: str | None = None, au: bool | None = None) -> Config:
    """Load a profile, apply its ``datasets.<dataset>``, ``per_method.<method>`` and ``per_au.<on|off>``
    tables, then the overrides in order; everything is validated.

    An override ``per_au.on.<key>`` (``bench tune`` writes them) sets ``<key>`` for trials with AU
    alignment only (``per_au.off.<key>``: without); with ``au=None`` both kinds are checked, not applied.
    """
    path = profile_path(profile)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"profile {path} is not valid TOML: {exc}") from None
    scoped = _scoped_tables(raw, path)
    mode = AU_MODES.get(au) if au is not None else None
    for key, name in (("datasets", dataset), ("per_method", method), ("per_au", mode)):
        if name in scoped[key]:
            _merge(raw, scoped[key][name])
    checks = []
    for key, value in overrides:
        head, _, rest = key.partition(".")
        if head == "per_au":
            which, _, inner = rest.partition(".")
            if which not in AU_MODES.values() or not inner:
                raise UserError(f"bad override {key}: expected per_au.on.<section>.<field> or per_au.off.<section>.<field>")
            if which == mode:
                _set(raw, inner, value)
            elif mode is None:
                checks.append((inner, value))
            continue
        _set(raw, key, value)
    for inner, value in checks:          # an AU-mode override must be valid on its own
        probe = copy.deepcopy(raw)
        _set(probe, inner, value)
        build_config(probe, str(path))
    return build_config(raw, str(path))


def build_config(raw: dict[str, Any], where: str = "config") -> Config:
    """Typed, validated sections from a merged profile dict; method tables are checked against each
    plugin's ``Config`` (same coercion as the sections, see ``methods.options``)."""
    from methods.options import OptionError, build_dataclass

    sections: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "methods":
            continue
        if name not in _SECTION_TYPES:
            raise UserError(f"unknown config section {name!r} (in {where} or --set); known: {', '.join([*_SECTION_TYPES, 'methods'])}")
        if not isinstance(value, dict):
            raise UserError(f"{where}: {name} must be a table")
        known = [f.name for f in dataclasses.fields(_SECTION_TYPES[name])]
        for key in value:
            if key not in known:
                raise UserError(f"unknown option {name}.{key} (in {where} or --set); {name} options: {', '.join(known)}")
        try:
            sections[name] = build_dataclass(_SECTION_TYPES[name], value, name)
        except OptionError as exc:
            raise UserError(f"{exc} (in {where} or --set)") from None
    return Config(**sections, methods=_method_tables(raw.get("methods", {}), where))


def _method_tables(tables: Any, where: str) -> dict[str, dict[str, Any]]:
    """``methods.<name>`` tables, each value coerced to the plugin's Config field type."""
    from methods import get_method
    from methods.options import OptionError
    from methods.registry import UnknownMethodError

    if not isinstance(tables, dict) or not all(isinstance(v, dict) for v in tables.values()):
        raise UserError(f"{where}: [methods.<name>] tables expected")
    out = {}
    for name, values in tables.items():
        try:
            config = get_method(name).make_config(values)
        except UnknownMethodError as exc:
            raise UserError(f"{exc} (methods.{name} in {where} or --set)") from None
        except OptionError as exc:
            raise UserError(f"{exc} (in {where} or --set)") from None
        out[name] = {key: getattr(config, key) for key in values}
    return out


def method_options(config: Config, method: str) -> dict[str, Any]:
    return dict(config.methods.get(method, {}))
