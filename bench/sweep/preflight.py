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

import dataclasses
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from au import get_codebook
from au.coverage import Coverage, au_coverage
from bench.config.settings import Config, resolve
from bench.data import load_dataset
from bench.errors import UserError, is_user_error, one_line
from bench.plan.identity import digest, evaluation_identity, model_identity, why_changed
from bench.plan.spec import Job, ModelSpec, group_methods
from bench.store.records import RunStore

DRY_RUN_FACES = 4


@dataclass
class DataCheck:
    fingerprint: str
    stats: dict[str, Any]
    coverage: dict[tuple[str, float], Coverage]     # (codebook, edge) -> coverage of the training split
    splits: Any = None                              # held only while the plan is being made


@dataclass
class SweepPlan:
    models: list[ModelSpec]           # every model the grid asks for
    jobs: list[Job]                   # what will run (train + evaluate, or evaluate only)
    done: int                         # evaluations already finished
    notes: list[str]                  # one line per thing worth telling the user (coverage, counts)


def _data_key(dataset: str, config: Config, seed: int) -> tuple:
    return dataset, seed, repr(config.data)


def _landmarks_hint(dataset: str, config: Config, overrides: tuple, profile: str) -> str:
    """The ``bench landmarks`` command that detects landmarks for exactly the images this run reads:
    same profile (``bench landmarks`` applies its per-dataset tables as ``bench run`` does), the
    data root made absolute, the run's own ``data.*`` overrides and the detector it would read."""
    from pathlib import Path

    root = ""
    if config.data.root:
        root = f" --data-root {shlex.quote(str(Path(config.data.root).expanduser().resolve()))}"
    sets = "".join(f" --set {k}={shlex.quote(str(v))}" for k, v in overrides
                   if k.startswith("data.") and k not in ("data.root", "data.landmarks"))
    detector = config.data.landmarks if config.data.landmarks in ("dlib", "face-alignment") else "dlib"
    detector = "" if detector == "dlib" else f" --detector {detector}"
    return f"bench landmarks {dataset} --profile {shlex.quote(profile)}{root}{detector}{sets}"


def _landmark_fix(dataset: str, config: Config, overrides: tuple, profile: str) -> str:
    """How to get landmarks for these images: drop ``data.landmarks=none``, or detect them."""
    if config.data.landmarks == "none":
        return "Landmarks are switched off (data.landmarks=none): drop that setting to use the dataset's or detected ones"
    return f"Detect landmarks for these images with `{_landmarks_hint(dataset, config, overrides, profile)}`"


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
            f"train on almost nothing. {_landmark_fix(dataset, config, overrides, profile)}, "
            "or run without AU alignment (--au off)")
    return coverage


def check_backbone(trained: str, config: Config) -> None:
    """Build the method's backbone as a trial would: pretrained weights that cannot be loaded (offline,
    a missing file) stop the sweep here with one line, not in every trial."""
    from bench.train.model import make_method, model_options

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
    from bench.train.model import build_model, feature_sizes, make_method
    from bench.train.optim import make_optimizer
    from bench.train.step import TrainStep

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
            logits = model(to_input(images)).logits
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


def check_test_coverage(dataset: str, config: Config, check: DataCheck, coverage: Coverage, overrides: tuple,
                        profile: str) -> None:
    """Stop an evaluation whose test faces mostly have no AU map: CAM-COS and ATT-COS would be
    averaged over almost nothing (or print as empty, blaming the method), whatever the AU mode."""
    share, floor = coverage.share, config.data.min_au_coverage
    if share is None or share < floor:
        got = "no test face can have one" if share is None else (
            f"only {coverage.valid} of {coverage.expected} test faces that should have one do ({100 * share:.1f}%)")
        raise UserError(
            f"{dataset}: AU maps on the test split: {got}, below data.min_au_coverage={floor:g} (landmarks: "
            f"{check.stats.get('landmark_source', '?')}); CAM-COS and ATT-COS need them in every AU mode. "
            f"{_landmark_fix(dataset, config, overrides, profile)}, or --set data.min_au_coverage=0 to evaluate "
            "CL only")


def _coverage_of(split, config: Config) -> Coverage:
    return au_coverage(split.landmarks, split.labels, tuple(split.images.shape[1:3]),
                       get_codebook(config.au.codebook), config.au.edge)


def _previous(records: list[dict], cell: tuple) -> dict | None:
    """The newest kept model record of the same cell (to say why a new one is needed)."""
    same = [r for r in records if (r.get("cell") or {}).get("method") == cell[0] and r["cell"]["dataset"] == cell[1]
            and r["cell"]["au"] == cell[2] and r["cell"]["seed"] == cell[3] and r.get("identity")]
    return max(same, key=lambda r: r.get("created") or "", default=None)


def _kept_model(store: RunStore, model: ModelSpec, identity: dict, records: list[dict], train: bool,
                reuse_older_code: bool) -> tuple[str, bool]:
    """(id of the kept model to evaluate, whether older code trained it); ("", False) when none counts.

    ``bench run`` uses the model of exactly this id. ``bench eval`` (``train=False``) also takes a
    kept model of this cell that differs only in where it ran (device, threads). With
    ``reuse_older_code``, a model that differs in its code alone counts too, and is marked.
    """
    if store.models.is_ready(model.model_id):
        return model.model_id, False
    same_cell = sorted((r for r in records if (r.get("cell") or {}).get("method") == model.method
                        and r["cell"]["dataset"] == model.dataset and r["cell"]["au"] == model.au
                        and r["cell"]["seed"] == model.seed and r.get("identity")),
                       key=lambda r: r.get("created") or "", reverse=True)

    def without(d: dict, *keys: str) -> dict:
        return {k: v for k, v in d.items() if k not in keys}

    ignore = () if train else ("execution",)
    for record in same_cell:
        if without(record["identity"], *ignore) == without(identity, *ignore):
            return record["id"], False
    if reuse_older_code:
        for record in same_cell:
            if without(record["identity"], "code", *ignore) == without(identity, "code", *ignore):
                return record["id"], True
    return "", False


def _imported_jobs(jobs: list[Job], model: ModelSpec, evaluated: tuple[str, ...], records: list[dict],
                   config: Config, finished: set[str], device_type: str, threads: int) -> bool:
    """Evaluation jobs for models imported into this cell (``bench import``): each with the extractor
    its authors ran on it. Their training identity is not ours to recompute, so the job checks the
    evaluation identity only. True when the cell has imported models."""
    imported = [r for r in records if r.get("imported") and (r.get("cell") or {}).get("method") == model.method
                and r["cell"]["dataset"] == model.dataset and r["cell"]["au"] == model.au
                and r["cell"]["seed"] == model.seed]
    for record in imported:
        name = record.get("extractor") or model.method
        if name not in evaluated:
            continue
        eval_id = digest(evaluation_identity(record["id"], config, name, device_type, threads))
        if eval_id not in finished:
            jobs.append(Job(dataclasses.replace(model, model_id=""), (name,), (eval_id,), False,
                            f"evaluation of an imported model ({record['id']})", threads, record["id"]))
    return bool(imported)


def plan_sweep(methods: list[str], datasets: list[str], au_modes: list[bool], seeds: list[int], profile: str,
               overrides: tuple, share: bool, run_dir: Path, *, device_type: str = "cpu", threads: int = 1,
               train: bool = True, reuse_older_code: bool = False,
               say: Callable[[str], None] = lambda line: None) -> SweepPlan:
    """Every job still to run, after every check above has passed (raises ``UserError`` otherwise)."""
    plan, configs, data = plan_jobs(methods, datasets, au_modes, seeds, profile, overrides, share, run_dir,
                                    device_type=device_type, threads=threads, train=train,
                                    reuse_older_code=reuse_older_code, say=say)
    _check_jobs(plan.jobs, configs, data, overrides, profile, plan.notes, say)
    for check in data.values():       # the driver keeps no dataset once the plan is made
        check.splits = None
    return plan


def plan_jobs(methods: list[str], datasets: list[str], au_modes: list[bool], seeds: list[int], profile: str,
              overrides: tuple, share: bool, run_dir: Path, *, device_type: str = "cpu", threads: int = 1,
              train: bool = True, reuse_older_code: bool = False,
              say: Callable[[str], None] = lambda line: None) -> tuple[SweepPlan, dict, dict]:
    """The jobs and the ids behind them, unchecked: (plan, resolved configs, loaded data).

    ``train=False`` (``bench eval``): only kept models are evaluated; a cell without one is a note.
    ``reuse_older_code``: a kept model whose identity differs from today's in its code only is
    evaluated instead of trained again; its rows are marked as trained by older code.
    """
    groups = group_methods(methods, share)
    store = RunStore(run_dir)
    model_records = [r for r in store.models.records() if r.get("status") == "ok"]
    finished = store.finished_evaluations()
    earlier: dict[tuple, dict] = {}          # (model id, method) -> the newest evaluation identity
    for record in sorted(store.evaluations.records(), key=lambda r: r.get("created") or ""):
        if record.get("status") == "ok" and record.get("identity"):
            earlier[(record["identity"].get("model"), record["identity"].get("method"))] = record["identity"]
    configs: dict[tuple, Config] = {}
    for dataset in datasets:
        for trained, _ in groups:
            for au in au_modes:
                configs[dataset, trained, au] = resolve(profile, list(overrides), dataset, trained, au)
    data: dict[tuple, DataCheck] = {}
    models: list[ModelSpec] = []
    jobs: list[Job] = []
    notes: list[str] = []
    done = 0
    for dataset in datasets:
        for seed in seeds:
            for au in au_modes:
                for trained, evaluated in groups:
                    config = configs[dataset, trained, au]
                    key = _data_key(dataset, config, seed)
                    if key not in data:
                        say(f"checking {dataset} (seed {seed})")
                        splits = load_dataset(dataset, config.data, seed)
                        data[key] = DataCheck(splits.fingerprint, dict(getattr(splits, "stats", {}) or {}), {}, splits)
                    check = data[key]
                    identity = model_identity(config, trained, au, check.fingerprint, device_type, threads)
                    model = ModelSpec(trained, dataset, au, seed, profile, overrides, digest(identity))
                    models.append(model)
                    previous = _previous(model_records, model.cell)
                    source, older_code = _kept_model(store, model, identity, model_records, train, reuse_older_code)
                    todo, ids, why = [], [], []
                    for name in evaluated:
                        evaluation = evaluation_identity(source or model.model_id, config, name, device_type, threads)
                        eval_id = digest(evaluation)
                        if source and eval_id in finished:
                            done += 1
                            continue
                        todo.append(name)
                        ids.append(eval_id)
                        why.append(f"{name} {why_changed(earlier.get((source, name)), evaluation)}")
                    if not todo:
                        continue
                    if source:
                        reason = ("a model trained by older code, kept on purpose (--reuse-older-code); "
                                  if older_code else "") + "evaluation: " + "; ".join(why)
                        jobs.append(Job(model, tuple(todo), tuple(ids), False, reason, threads,
                                        "" if source == model.model_id else source, older_code))
                    elif train:
                        jobs.append(Job(model, tuple(todo), tuple(ids), True,
                                        why_changed(previous["identity"] if previous else None, identity), threads))
                    elif _imported_jobs(jobs, model, evaluated, model_records, config, finished, device_type, threads):
                        continue
                    else:
                        line = f"{model.label}: no kept model in {run_dir} for the current code and data " \
                               f"(train it with `bench run`, or evaluate an older one with --reuse-older-code)"
                        if line not in notes:
                            notes.append(line)
    return SweepPlan(models, jobs, done, notes), configs, data


def _check_jobs(jobs: list[Job], configs: dict, data: dict, overrides: tuple, profile: str, notes: list[str],
                say: Callable[[str], None]) -> None:
    """Coverage, backbones and dry runs, for the jobs that will run only."""
    checked: set[str] = set()
    for job in jobs:                  # weights first: no decoding before that fails
        m = job.model
        config = configs[m.dataset, m.method, m.au]
        key = repr((m.method, config.model, config.methods.get(m.method)))
        if job.train and key not in checked:
            checked.add(key)
            say(f"loading the {m.method} backbone")
            check_backbone(m.method, config)
    for job in sorted(jobs, key=lambda j: not (j.train and j.model.au)):    # training coverage first: it
        m = job.model                                                      # names the w/ AU cell at fault
        config = configs[m.dataset, m.method, m.au]
        check = data[_data_key(m.dataset, config, m.seed)]
        cov_key = (config.au.codebook, config.au.edge)
        if job.train and m.au:
            if cov_key not in check.coverage:
                check.coverage[cov_key] = _coverage_of(check.splits.train, config)
            coverage = check_coverage(m.dataset, config, check, overrides, profile)
            line = (f"{m.dataset}: AU maps for {coverage.valid}/{coverage.expected} training faces that "
                    f"should have one ({100 * coverage.share:.1f}%)")
            if line not in notes:
                notes.append(line)
        if ("test",) + cov_key not in check.coverage:
            check.coverage[("test",) + cov_key] = _coverage_of(check.splits.test, config)
        check_test_coverage(m.dataset, config, check, check.coverage[("test",) + cov_key], overrides, profile)
    dry: set[tuple] = set()
    for job in jobs:
        if not job.train:
            continue
        m = job.model
        config = configs[m.dataset, m.method, m.au]
        key = (m.method, job.evaluate, m.au, config.digest())
        if key in dry:
            continue
        dry.add(key)
        say(f"dry run: {'+'.join(job.evaluate)} on {m.dataset}")
        dry_run(m.method, job.evaluate, config, data[_data_key(m.dataset, config, m.seed)].splits, m.au)
