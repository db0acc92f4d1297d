"""Resolved configuration: profile TOML + ``--set key=value`` overrides -> typed, frozen sections.

A profile (``bench/profiles/<name>.toml`` or a path) lists every field; ``--set`` may only change
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
    checkpoint: bool = True       # save a resumable checkpoint every epoch
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

    def digest(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, default=list)
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


def _coerce(section: type, name: str, value: Any, where: str) -> Any:
    ftype = {f.name: f.type for f in dataclasses.fields(section)}[name]
    expected = default = getattr(section(), name)
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if isinstance(default, tuple):
            items = value if isinstance(value, list) else [v for v in str(value).split(",") if v]
            return tuple(str(v) for v in items)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if isinstance(default, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if isinstance(default, str):
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise UserError(f"bad value {value!r} for {where}: expected {type(expected).__name__} ({ftype})")


def _merge(base: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def _scoped_tables(raw: dict, path: Path) -> dict[str, dict[str, dict]]:
    """Pop the ``datasets``/``per_method`` tables (name -> partial profile) and check each one
    against the full profile, so a typo in any of them is an error for every run."""
    scoped = {}
    for key in SCOPED:
        tables = raw.pop(key, {})
        if not isinstance(tables, dict) or not all(isinstance(v, dict) for v in tables.values()):
            raise UserError(f"{path}: [{key}.<name>.<section>] tables expected")
        scoped[key] = tables
    for key, tables in scoped.items():
        for name, table in tables.items():
            merged = copy.deepcopy(raw)
            _merge(merged, table)
            build_config(merged, f"{path} [{key}.{name}]")
    return scoped


SCOPED = ("datasets", "per_method")


def resolve(profile: str, overrides: list[tuple[str, Any]] | tuple = (), dataset: str | None = None,
            method: str | None = None) -> Config:
    """Load a profile, apply its ``datasets.<dataset>`` and ``per_method.<method>`` tables, then the
    overrides; everything is validated."""
    path = profile_path(profile)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"profile {path} is not valid TOML: {exc}") from None
    scoped = _scoped_tables(raw, path)
    if dataset in scoped["datasets"]:
        _merge(raw, scoped["datasets"][dataset])
    if method in scoped["per_method"]:
        _merge(raw, scoped["per_method"][method])
    for key, value in overrides:
        parts = key.split(".")
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"bad --set {key}: {part} is not a section")
        node[parts[-1]] = value
    return build_config(raw, str(path))


def build_config(raw: dict[str, Any], where: str = "config") -> Config:
    sections: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "methods":
            if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
                raise UserError(f"{where}: [methods.<name>] tables expected")
            continue
        if name not in _SECTION_TYPES:
            raise UserError(f"unknown config section {name!r} (in {where} or --set); known: {', '.join([*_SECTION_TYPES, 'methods'])}")
        cls = _SECTION_TYPES[name]
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(value, dict):
            raise UserError(f"{where}: {name} must be a table")
        for key in value:
            if key not in known:
                raise UserError(f"unknown option {name}.{key} (in {where} or --set); {name} options: {', '.join(sorted(known))}")
        sections[name] = cls(**{k: _coerce(cls, k, v, f"{name}.{k}") for k, v in value.items()})
    methods = {k: dict(v) for k, v in raw.get("methods", {}).items()}
    return Config(**sections, methods=methods)


def method_options(config: Config, method: str) -> dict[str, Any]:
    return dict(config.methods.get(method, {}))
