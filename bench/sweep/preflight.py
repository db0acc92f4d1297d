"""Plan a sweep and check, before any trial starts, what would make every trial fail or lie.

``plan_sweep`` runs in the driver of ``bench run``:
1. resolves each cell's configuration (typed, validated: a bad option is one line);
2. loads each dataset once per seed (decoding into the shared cache if needed): unreadable
   images past ``data.max_skipped``, a bad layout or missing landmarks stop here, with one line;
3. for trials with AU alignment, measures the share of training faces that should have an AU map
   and do (``au.coverage``); below ``data.min_au_coverage`` the run stops with the fix;
4. builds every backbone first (pretrained weights must load), then dry-runs every trained model on a few real faces: builds it (pretrained weights must load),
   takes one training step with the alignment loss, and evaluates every extractor on it with
   the evaluator's own checks (shapes, finite values, logits equal to a clean forward), so a bad
   ``target_layer`` or a broken plugin is reported now, not after hours of training;
5. gives each cell its identity digest (``bench.plan.identity``), the basis of its trial id.
Nothing is written until every check has passed.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, Callable

import torch

from au import get_codebook
from au.coverage import Coverage, au_coverage
from bench.config.settings import Config, resolve
from bench.data import load_dataset
from bench.errors import UserError, is_user_error, one_line
from bench.plan.identity import digest, trial_identity
from bench.plan.spec import TrialSpec, expand_grid, group_methods

DRY_RUN_FACES = 4


@dataclass
class DataCheck:
    fingerprint: str
    stats: dict[str, Any]
    coverage: dict[tuple[str, float], Coverage]     # (codebook, edge) -> coverage of the training split
    splits: Any = None                              # held only while the plan is being made


@dataclass
class SweepPlan:
    specs: list[TrialSpec]
    notes: list[str]                  # one line per thing worth telling the user (coverage, counts)


def _data_key(dataset: str, config: Config, seed: int) -> tuple:
    return dataset, seed, repr(config.data)


def _landmarks_hint(dataset: str, config: Config, overrides: tuple, profile: str) -> str:
    """The ``bench landmarks`` command that detects landmarks for exactly the images this run reads."""
    root = f" --data-root {shlex.quote(config.data.root)}" if config.data.root else ""
    sets = "".join(f" --set {k}={shlex.quote(str(v))}" for k, v in overrides
                   if k.startswith("data.") and k not in ("data.root", "data.landmarks"))
    return f"bench landmarks {dataset} --profile {shlex.quote(profile)}{root}{sets}"


def check_coverage(dataset: str, config: Config, check: DataCheck, overrides: tuple, profile: str) -> Coverage:
    """Stop a w/ AU sweep whose training faces mostly have no AU map (wrong landmarks, none at all)."""
    key = (config.au.codebook, config.au.edge)
    coverage = check.coverage[key]
    share = coverage.share
    floor = config.data.min_au_coverage
    if share is None or share < floor:
        source = check.stats.get("landmark_source", "?")
        got = "no training face can have one" if share is None else (
            f"only {coverage.valid} of {coverage.expected} training faces that should have one do ({100 * share:.1f}%)")
        raise UserError(
            f"{dataset} w/ AU: {got}, below data.min_au_coverage={floor:g} (landmarks: {source}); the AU loss would "
            f"train on almost nothing. Detect landmarks for these images with "
            f"`{_landmarks_hint(dataset, config, overrides, profile)}`, "
            "or run without AU alignment (--au off)")
    return coverage


def check_backbone(trained: str, config: Config) -> None:
    """Build the method's backbone as a trial would: pretrained weights that cannot be loaded (offline,
    a missing file) stop the sweep here with one line, not in every trial."""
    from bench.train.trial import make_method, model_options

    method = make_method(trained, config)
    try:
        method.make_backbone(model_options(config))
    except Exception as exc:
        if is_user_error(exc):
            raise
        raise UserError(f"{trained}: its backbone cannot be built with this configuration ({one_line(exc)})") from None


def dry_run(trained: str, evaluated: tuple[str, ...], config: Config, splits, align: bool) -> None:
    """One training step and one evaluation on a few real faces, on the CPU, with a throwaway model."""
    from bench.data.transforms import to_input
    from bench.metrics.base import evaluate
    from bench.train.trial import TrainStep, build_model, feature_sizes, make_method, make_optimizer

    device = torch.device("cpu")
    torch.manual_seed(0)
    method = make_method(trained, config)
    try:
        model = build_model(method, config, splits.num_classes)
    except Exception as exc:
        if is_user_error(exc):
            raise
        raise UserError(f"{trained}: its model cannot be built with this configuration ({one_line(exc)})") from None
    n = min(DRY_RUN_FACES, len(splits.test.labels))
    images = torch.from_numpy(splits.test.images[:n].copy())
    labels = torch.from_numpy(splits.test.labels[:n].copy())
    landmarks = torch.from_numpy(splits.test.landmarks[:n].copy())
    stage = "a training step"
    try:
        sizes = feature_sizes(model, config.data.image_size, device, method.needs_labels)
        layers = tuple(config.au.layers) or method.alignment_layers
        missing = [name for name in layers if name not in sizes]
        if align and missing:
            raise UserError(f"{trained}: alignment layer(s) {', '.join(missing)} are not among its feature maps "
                            f"({', '.join(sizes)}); set au.layers")
        optimizer, _ = make_optimizer(model, config)
        step = TrainStep(method, model, optimizer, config, device, align, layers, sizes, torch.Generator().manual_seed(0))
        model.train()
        terms = step(images, labels, landmarks)
        if not torch.isfinite(terms).all():
            raise ValueError(f"the first training step's losses are not finite ({terms.tolist()})")
        stage = "evaluation"
        with torch.no_grad():
            model.eval()
            logits = model(to_input(images), labels=labels if method.needs_labels else None).logits
        if not torch.isfinite(logits).all():
            raise UserError(f"{trained}: one training step on {n} faces already makes the model's logits non-finite "
                            f"(train.optimizer={config.train.optimizer}, train.lr={config.train.lr:g}); lower train.lr "
                            "or check the inputs")
        failures: dict[str, str] = {}
        evaluate(model, [make_method(name, config) for name in evaluated], images, labels, landmarks,
                 codebook=get_codebook(config.au.codebook), edge=config.au.edge, class_names=splits.class_names,
                 batch_size=n, device=device, layers=config.eval.layers, trained=method, failures=failures)
    except Exception as exc:
        if is_user_error(exc):
            raise
        raise UserError(f"{trained}: {stage} on {n} faces failed before training started ({one_line(exc)}); "
                        f"fix the plugin or its options (bench check-plugin {trained})") from None
    if failures:
        name, error = next(iter(failures.items()))
        raise UserError(f"{name}: its CAM extraction failed on {n} faces before training started ({one_line(error)}); "
                        f"fix the plugin or its options (bench check-plugin {name})")


def plan_sweep(methods: list[str], datasets: list[str], au_modes: list[bool], seeds: list[int], profile: str,
               overrides: tuple, share: bool, say: Callable[[str], None] = lambda line: None) -> SweepPlan:
    """Every cell's spec, after every check above has passed (raises ``UserError`` otherwise)."""
    groups = group_methods(methods, share)
    configs: dict[tuple, Config] = {}
    for dataset in datasets:
        for train, evaluated in groups:
            for au in au_modes:
                configs[dataset, train, au] = resolve(profile, list(overrides), dataset, train, au)
    checked: set[str] = set()
    for (dataset, train, au), config in configs.items():   # weights first: no decoding before that fails
        key = repr((train, config.model, config.methods.get(train)))
        if key not in checked:
            checked.add(key)
            say(f"loading the {train} backbone")
            check_backbone(train, config)
    data: dict[tuple, DataCheck] = {}
    notes: list[str] = []
    for dataset in datasets:
        for seed in seeds:
            for au in au_modes:
                for train, _ in groups:
                    config = configs[dataset, train, au]
                    key = _data_key(dataset, config, seed)
                    if key not in data:
                        say(f"checking {dataset} (seed {seed})")
                        splits = load_dataset(dataset, config.data, seed)
                        data[key] = DataCheck(splits.fingerprint, dict(getattr(splits, "stats", {}) or {}), {}, splits)
                    check = data[key]
                    cov_key = (config.au.codebook, config.au.edge)
                    if au and cov_key not in check.coverage:
                        train_split = check.splits.train
                        check.coverage[cov_key] = au_coverage(train_split.landmarks, train_split.labels,
                                                              tuple(train_split.images.shape[1:3]),
                                                              get_codebook(config.au.codebook), config.au.edge)
                    if au:
                        coverage = check_coverage(dataset, config, check, overrides, profile)
                        line = (f"{dataset}: AU maps for {coverage.valid}/{coverage.expected} training faces that "
                                f"should have one ({100 * coverage.share:.1f}%)")
                        if line not in notes:
                            notes.append(line)
    dry: set[tuple] = set()
    for dataset in datasets:
        for train, evaluated in groups:
            align = True in au_modes
            config = configs[dataset, train, align]
            key = (train, evaluated, config.digest())
            if key in dry:
                continue
            dry.add(key)
            say(f"dry run: {'+'.join(evaluated)} on {dataset}")
            check = data[_data_key(dataset, config, seeds[0])]
            dry_run(train, evaluated, config, check.splits, align)

    def identity(dataset: str, train: str, evaluated: tuple[str, ...], au: bool, seed: int) -> str:
        config = configs[dataset, train, au]
        fingerprint = data[_data_key(dataset, config, seed)].fingerprint
        return digest(trial_identity(config, (train, *evaluated), fingerprint))

    specs = expand_grid(methods, datasets, au_modes, seeds, profile, overrides, identity, share)
    for check in data.values():       # the driver keeps no dataset once the plan is made
        check.splits = None
    return SweepPlan(specs, notes)
