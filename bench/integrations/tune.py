"""``bench tune``: search each AU mode's settings on its own objective with Ray Tune.

The paper ablates λ (Fig. 5) and the aligned layers (layers 1-5 and their combinations, Table 3).
A fair comparison also tunes the baseline: trials **without** AU search the learning rate on
validation CL; trials **with** AU search the learning rate, λ and the alignment layer(s) on
validation CL, or CL/100 + w · ATT-COS (mean over the aligned layers) by flag. Each mode is its own
Ray Tune experiment (random search + ASHA), so trials of one objective are never ranked against
the other's. Scoring uses the **validation** split only (the test split is never touched).

The layer sets offered come from the method's own model (the 4-D maps its forward returns), so
TS-CAM offers its token maps and APViT its IR-50 stage, not a ResNet list.

The result is ``best.toml`` with ``[per_au.off.<section>]`` and ``[per_au.on.<section>]`` tables:
``bench run --config best.toml`` applies each to the trials of its AU mode only, so the baseline
never trains with a learning rate tuned for the aligned objective.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bench.errors import UserError

#: What each AU mode searches (dotted config keys).
SEARCHED = {False: ("train.lr",), True: ("train.lr", "au.weight", "au.layers")}
#: ``au`` flag -> the name of its ``per_au`` table and of its rows in trials.csv.
MODE_NAMES = {False: "off", True: "on"}
#: Deepest layers combined into nested sets (paper Table 3 aligns layers 5, 5+4 and 5+4+3).
MAX_COMBINED = 3


@dataclass(frozen=True)
class TuneRequest:
    method: str
    dataset: str
    profile: str
    overrides: tuple[tuple[str, Any], ...]
    seed: int = 0
    num_samples: int = 8                  # configurations per AU mode
    objective: str = "cl"                 # with AU: cl | cl+att (without AU it is always cl)
    att_weight: float = 1.0
    weight_range: tuple[float, float] = (0.1, 20.0)
    layers: tuple[str, ...] = ()          # layer sets to try ("layer5,layer4"); empty: from the model
    modes: tuple[bool, ...] = (False, True)


def objective_value(val_cl: float, val_att: float | None, objective: str, att_weight: float) -> float:
    if objective == "cl":
        return val_cl
    if objective == "cl+att":
        if val_att is None or not math.isfinite(val_att):
            raise ValueError("the cl+att objective needs a finite validation ATT-COS")
        return val_cl / 100 + att_weight * val_att
    raise UserError(f"bad --objective {objective!r}: expected cl or cl+att")


def mode_objective(request: TuneRequest, au: bool) -> str:
    """Without AU nothing is aligned, so the baseline's objective is validation CL."""
    return request.objective if au else "cl"


def layer_sets(names: list[str], default: tuple[str, ...]) -> tuple[str, ...]:
    """Layer sets to search, from the model's map names (shallow to deep): the method's default set,
    every single map, and nested sets of the deepest maps (5+4, 5+4+3 on a ResNet), as in Table 3."""
    deepest_first = names[::-1]
    sets = [",".join(default)] if default else []
    sets += names
    sets += [",".join(deepest_first[:k]) for k in range(2, min(MAX_COMBINED, len(names)) + 1)]
    return tuple(dict.fromkeys(sets))


def model_layer_sets(method: str, profile: str, overrides: list[tuple[str, Any]] | tuple,
                     dataset: str) -> tuple[str, ...]:
    """Build the method's model once with the profile's sizes (no pretrained weights: names and
    shapes do not depend on them) and offer the 4-D feature maps its forward returns."""
    import torch

    from au.codebook import CLASS_NAMES
    from bench.config.settings import resolve
    from bench.train.model import build_model, feature_sizes, make_method

    config = resolve(profile, [*overrides, ("model.pretrained", False)], dataset, method, True)
    trained = make_method(method, config)
    model = build_model(trained, config, len(CLASS_NAMES))     # the class count does not name maps
    names = list(feature_sizes(model, config.data.image_size, torch.device("cpu"), trained.needs_labels))
    if not names:
        raise UserError(f"bench tune --method {method}: the model returns no (B, C, h, w) feature map to align")
    return layer_sets(names, tuple(config.au.layers) or tuple(trained.alignment_layers))


def preflight(request: TuneRequest, say: Callable[[str], None] = lambda line: None) -> list[str]:
    """``bench run``'s checks, before any trial: the data loads, AU maps cover the training faces of a
    w/ AU search and the test faces always, the backbone builds, and one dry step trains and evaluates.
    A search against a zero alignment loss (no landmarks) stops here with one line. Returns the notes
    (coverage) to show. Every search trial is a model to train, so nothing is looked up in a store."""
    from bench.sweep.preflight import plan_sweep

    overrides = (*request.overrides, ("train.select_on", "val"))      # as the trials resolve it
    nowhere = Path("/nonexistent/bench-tune-preflight")               # no records: every cell is checked
    plan = plan_sweep([request.method], [request.dataset], list(request.modes), [request.seed], request.profile,
                      overrides, False, nowhere, say=say)
    return plan.notes


def search_space(request: TuneRequest, au: bool, base_lr: float, layers: tuple[str, ...]) -> dict[str, Any]:
    """The learning rate within 10x of the mode's own; with AU, also λ and the layer set."""
    from ray import tune

    space: dict[str, Any] = {"train.lr": tune.loguniform(base_lr / 10, base_lr * 10)}
    if au:
        space["au.weight"] = tune.loguniform(*request.weight_range)
        space["au.layers"] = tune.choice(list(layers))
    return space


def _trainable(config: dict) -> None:
    """One tuning trial: train in its AU mode, report the mode's objective on validation every epoch."""
    import torch
    from ray import tune

    from au import get_codebook
    from bench.config.settings import resolve
    from bench.data.placement import place
    from bench.metrics.base import evaluate
    from bench.train.fit import fit
    from bench.train.session import build_session

    torch.set_num_threads(config["threads"])
    au = config["au"]
    sampled = [(key, config[key]) for key in SEARCHED[au]]
    overrides = [*map(tuple, config["overrides"]), *sampled, ("train.select_on", "val"), ("train.checkpoint", False)]
    cfg = resolve(config["profile"], overrides, config["dataset"], config["method"], au)
    session = build_session(config["method"], config["dataset"], config["seed"], cfg, align=au)
    needs_att = config["objective"] != "cl"
    val = place(session.data.val, session.device)

    def val_attention(s, epoch) -> dict[str, float]:
        if not needs_att:
            return {}
        metrics = evaluate(s.model, [s.trained], *val, codebook=get_codebook(cfg.au.codebook), edge=cfg.au.edge,
                           class_names=s.data.class_names, batch_size=cfg.train.eval_batch_size, device=s.device,
                           layers=s.align_layers, trained=s.trained)[s.trained.name]
        return {"val_att_cos": sum(metrics[f"att_cos_{n}"] for n in s.align_layers) / len(s.align_layers)}

    def report(metrics: dict) -> None:
        metrics = {**metrics, "objective": objective_value(metrics["val_cl"], metrics.get("val_att_cos"),
                                                           config["objective"], config["att_weight"])}
        tune.report(metrics)

    fit(session, report, None, val_attention)


def _tune_mode(request: TuneRequest, au: bool, out_dir: Path, layers: tuple[str, ...], *, cpus_per_trial: float,
               gpus_per_trial: float, max_concurrent: int) -> dict[str, Any]:
    """One AU mode's search: its own Ray Tune experiment, ranked on its own objective."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    from bench.config.settings import resolve

    base = resolve(request.profile, list(request.overrides), request.dataset, request.method, au)
    objective = mode_objective(request, au)
    param_space = {
        **search_space(request, au, base.train.lr, layers),
        "au": au, "method": request.method, "dataset": request.dataset, "profile": request.profile,
        "overrides": [list(kv) for kv in request.overrides], "seed": request.seed,
        "objective": objective, "att_weight": request.att_weight, "threads": max(1, int(cpus_per_trial)),
    }
    epochs = base.train.epochs
    tuner = tune.Tuner(
        tune.with_resources(_trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial}),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric="objective", mode="max", num_samples=request.num_samples,
            search_alg=BasicVariantGenerator(random_state=request.seed),
            scheduler=ASHAScheduler(time_attr="training_iteration", max_t=epochs,
                                    grace_period=max(1, min(2, epochs)), reduction_factor=2),
            max_concurrent_trials=max_concurrent or None, reuse_actors=True,
        ),
        run_config=tune.RunConfig(storage_path=str((out_dir / "ray").resolve()), name=f"tune-{MODE_NAMES[au]}",
                                  verbose=0),
    )
    grid = tuner.fit()
    best = grid.get_best_result(metric="objective", mode="max", scope="all")
    if best is None or best.config is None or not best.metrics or "objective" not in best.metrics:
        errors = "; ".join(str(e).splitlines()[-1] for e in grid.errors[:3]) or "no trial reported"
        raise RuntimeError(f"bench tune ({'w/' if au else 'w/o'} AU) found no finished trial ({errors})")
    rows = []
    for result in grid:
        if result.config is None:
            continue
        metrics = result.metrics or {}
        rows.append({"au": MODE_NAMES[au], "train.lr": result.config["train.lr"],
                     "au.weight": result.config.get("au.weight"), "au.layers": result.config.get("au.layers"),
                     "epochs": metrics.get("epoch"), "val_cl": metrics.get("val_cl"),
                     "val_att_cos": metrics.get("val_att_cos"), "objective": metrics.get("objective"),
                     "error": str(result.error) if result.error else None})
    return {"best": {key: best.config[key] for key in SEARCHED[au]}, "objective": best.metrics["objective"],
            "objective_name": objective, "rows": rows}


def best_toml(request: TuneRequest, results: dict[bool, dict[str, Any]]) -> str:
    """``[per_au.<off|on>.<section>]`` tables: ``bench run --config`` applies each to its AU mode."""
    lines = [f"# bench tune --method {request.method} --dataset {request.dataset} --profile {request.profile}",
             "# each AU mode tuned on its own objective (validation split); bench run --config applies",
             "# [per_au.off.*] to trials without AU alignment and [per_au.on.*] to trials with it"]
    for au, result in sorted(results.items()):
        mode = MODE_NAMES[au]
        lines.append(f"# {mode}: objective {result['objective_name']}, best {result['objective']:.4f}")
        sections: dict[str, list[str]] = {}
        for key, value in result["best"].items():
            section, field = key.split(".", 1)
            if key == "au.layers":
                text = "[" + ", ".join(f'"{name}"' for name in str(value).split(",")) + "]"
            else:
                text = f"{value:.6g}"
            sections.setdefault(section, []).append(f"{field} = {text}")
        for section, fields in sections.items():
            lines += ["", f"[per_au.{mode}.{section}]", *fields]
        lines.append("")
    return "\n".join(lines)


def run_tune(request: TuneRequest, out_dir: Path, *, cpus_per_trial: float, gpus_per_trial: float,
             max_concurrent: int, address: str | None) -> dict[str, Any]:
    """Search each requested AU mode; write ``best.toml`` (per-AU-mode overrides) and ``trials.csv``."""
    import polars as pl

    from bench.sweep.executors import check_gpus, init_ray
    from bench.files import atomic_write_text

    layers = request.layers
    if True in request.modes and not layers:
        layers = model_layer_sets(request.method, request.profile, request.overrides, request.dataset)
    init_ray(address)
    check_gpus(gpus_per_trial)
    results = {au: _tune_mode(request, au, out_dir, layers, cpus_per_trial=cpus_per_trial,
                              gpus_per_trial=gpus_per_trial, max_concurrent=max_concurrent)
               for au in request.modes}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "best.toml", best_toml(request, results))
    rows = [row for result in results.values() for row in result.pop("rows")]
    pl.DataFrame(rows, infer_schema_length=None).write_csv(out_dir / "trials.csv")
    return {"modes": {MODE_NAMES[au]: result for au, result in results.items()}, "layers": layers,
            "trials": len(rows)}


def config_overrides(path: Path) -> list[tuple[str, Any]]:
    """A TOML file of overrides (``bench tune``'s best.toml) as dotted ``(key, value)`` pairs:
    ``[per_au.on.train] lr = 0.003`` becomes ``("per_au.on.train.lr", 0.003)``."""
    import tomllib

    if not path.is_file():
        raise UserError(f"--config {path}: no such file (bench tune writes results/tune-<method>-<dataset>/best.toml)")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"--config {path} is not valid TOML: {exc}") from None

    def flatten(node: dict, prefix: str) -> list[tuple[str, Any]]:
        out = []
        for key, value in node.items():
            if isinstance(value, dict):
                out += flatten(value, f"{prefix}{key}.")
            else:
                out.append((f"{prefix}{key}", value))
        return out

    return flatten(raw, "")
