"""The plugin conformance suite: behaviour every method plugin must show, checked generically.

Each check takes a method name, builds the plugin's small test model (``conformance_options``:
CPU, random init, tiny images) and raises ``AssertionError`` with a reason when the plugin
misbehaves. ``tests/test_conformance.py`` runs every check on every registered method, and
``bench check-plugin NAME`` runs them on any installed plugin, a third-party one included.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from au import alignment_loss, get_codebook, render_au_maps
from bench.config import Config, build_config
from bench.data.synthetic import SyntheticOptions, generate
from bench.data.transforms import to_input
from bench.train import TrainStep, feature_sizes, make_method, model_options
from methods import Batch, Method, get_method

NUM_CLASSES = 7


@dataclass
class Toy:
    method: Method
    model: torch.nn.Module
    config: Config
    images: torch.Tensor      # uint8 (B, H, W, 3)
    labels: torch.Tensor
    landmarks: torch.Tensor
    layers: tuple[str, ...]

    @property
    def x(self) -> torch.Tensor:
        return to_input(self.images)


def toy(name: str, seed: int = 0, batch: int = 8, overrides: dict | None = None) -> Toy:
    """The method's small model and a batch of synthetic faces (all classes, valid AU maps)."""
    cls = get_method(name)
    opts = cls.conformance_options()
    size = opts["image_size"]
    raw = {"data": {"image_size": size}, "model": dict(opts["model"]),
           "train": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.0, "flip": 0.0, "rotation": 0.0,
                     "crop_scale": 1.0, "jitter": 0.0, "amp": False, "batch_size": batch},
           "au": {"weight": 10.0}, "methods": {name: dict(opts.get("method", {}))}}
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    config = build_config(raw, f"conformance options of {name}")
    torch.manual_seed(seed)
    method = make_method(name, config)
    model = method.build(NUM_CLASSES, method.make_backbone(model_options(config)))
    faces = generate("test", batch, seed, SyntheticOptions(image_size=size))
    layers = tuple(config.au.layers) or method.alignment_layers
    return Toy(method, model, config, torch.from_numpy(faces.images), torch.from_numpy(faces.labels),
               torch.from_numpy(faces.landmarks), layers)


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


def check_output_shapes(name: str) -> None:
    t = toy(name)
    t.model.train()
    out = t.model(t.x, labels=t.labels)
    assert out.logits.shape == (len(t.labels), NUM_CLASSES), f"logits {tuple(out.logits.shape)}"
    for layer in t.layers:
        assert layer in out.features, f"alignment layer {layer!r} missing from features {list(out.features)}"
        assert out.features[layer].dim() == 4, f"feature {layer!r} is not (B, C, h, w)"


def check_finite_cam(name: str) -> None:
    t = toy(name)
    t.model.eval()
    output, cam = t.method.explain(t.model, t.x, t.labels)
    assert cam is not None and cam.dim() == 3 and cam.shape[0] == len(t.labels), f"CAM shape {getattr(cam, 'shape', None)}"
    assert torch.isfinite(cam).all(), "CAM has NaN/inf"
    assert output.logits.shape == (len(t.labels), NUM_CLASSES)


def check_batch_independent_cam(name: str) -> None:
    t = toy(name)
    t.model.eval()
    x = t.x
    _, batched = t.method.explain(t.model, x, t.labels)
    for i in (0, 3):
        _, alone = t.method.explain(t.model, x[i:i + 1], t.labels[i:i + 1])
        scale = batched[i].abs().max().clamp_min(1e-6)
        err = ((alone[0] - batched[i]).abs().max() / scale).item()
        assert err < 1e-3, f"sample {i}: CAM alone differs from its CAM in a batch (relative error {err:.2e})"


def _train_steps(t: Toy, steps: int, align: bool, seed: int = 0) -> list[torch.Tensor]:
    device = torch.device("cpu")
    optimizer = torch.optim.AdamW(t.model.parameters(), lr=t.config.train.lr, weight_decay=0.0)
    sizes = feature_sizes(t.model, t.config.data.image_size, device)
    step = TrainStep(t.method, t.model, optimizer, t.config, device, align, t.layers, sizes,
                     torch.Generator().manual_seed(seed))
    t.model.train()
    return [step(t.images, t.labels, t.landmarks) for _ in range(steps)]


def check_gradients_reach_backbone(name: str) -> None:
    t = toy(name)
    t.model.train()
    H, W = t.images.shape[1:3]
    batch = Batch(t.x, t.labels, t.landmarks.float())
    sizes = feature_sizes(t.model, H, torch.device("cpu"))
    codebook = get_codebook("paper")
    rendered = {sizes[layer]: render_au_maps(t.landmarks, t.labels, (H, W), sizes[layer], codebook) for layer in t.layers}
    valid = next(iter(rendered.values()))[1]
    batch = batch.replace(au_maps={s: m for s, (m, _) in rendered.items()}, au_valid=valid)
    batch = t.method.mix(batch, torch.Generator().manual_seed(0))
    out = t.model(batch.images, labels=batch.labels if t.method.needs_labels else None)
    loss = t.method.loss(out, batch) + alignment_loss(out.features, batch.au_maps, batch.au_valid, t.layers, 1.0)
    loss.backward()
    backbone = getattr(t.model, "backbone", t.model)
    first = next(p for p in backbone.parameters() if p.requires_grad)
    assert first.grad is not None and first.grad.abs().sum() > 0, "no gradient reaches the first backbone layer"


def _alignment_value(t: Toy) -> float:
    H, W = t.images.shape[1:3]
    t.model.eval()
    with torch.no_grad():
        out = t.model(t.x, labels=t.labels)
        maps, valid = {}, None
        for layer in t.layers:
            size = tuple(out.features[layer].shape[-2:])
            maps[size], v = render_au_maps(t.landmarks, t.labels, (H, W), size, get_codebook("paper"))
            valid = v if valid is None else valid & v
        return alignment_loss(out.features, maps, valid, t.layers, 1.0).item()


def check_alignment_loss_falls(name: str) -> None:
    t = toy(name)
    before = _alignment_value(t)
    _train_steps(t, 8, align=True)
    after = _alignment_value(t)
    assert after < before, f"alignment loss did not fall: {before:.4f} -> {after:.4f}"


def check_deterministic(name: str) -> None:
    runs = []
    for _ in range(2):
        t = toy(name, seed=3)
        losses = _train_steps(t, 2, align=True, seed=3)
        t.model.eval()
        with torch.no_grad():
            runs.append((torch.stack(losses), t.model(t.x, labels=t.labels).logits))
    assert torch.equal(runs[0][0], runs[1][0]), "same seed, different losses"
    assert torch.equal(runs[0][1], runs[1][1]), "same seed, different logits"


def check_hooks_released(name: str) -> None:
    t = toy(name)
    before = _hook_count(t.model)
    for _ in range(3):
        t.model.eval()
        t.method.explain(t.model, t.x, t.labels)
    _train_steps(t, 1, align=True)
    assert _hook_count(t.model) == before, f"hooks leaked: {before} before, {_hook_count(t.model)} after"
    t.model.zero_grad(set_to_none=True)
    t.model.eval()
    t.method.explain(t.model, t.x, t.labels)
    leftover = [n for n, p in t.model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert not leftover, f"explain left parameter gradients behind (e.g. {leftover[0]})"


CHECKS: dict[str, Callable[[str], None]] = {
    "output shapes": check_output_shapes,
    "finite CAM (B, h, w)": check_finite_cam,
    "CAM alone = CAM in batch (eval)": check_batch_independent_cam,
    "gradients reach the backbone": check_gradients_reach_backbone,
    "alignment loss falls": check_alignment_loss_falls,
    "same seed, same result": check_deterministic,
    "hooks released": check_hooks_released,
}


def run_checks(name: str) -> list[tuple[str, str | None]]:
    """[(check, None if passed else the reason)] for one method."""
    results = []
    for label, check in CHECKS.items():
        try:
            check(name)
            results.append((label, None))
        except AssertionError as exc:
            results.append((label, str(exc) or "assertion failed"))
        except Exception as exc:  # noqa: BLE001 - a crashing plugin fails the check, with its error
            results.append((label, f"{type(exc).__name__}: {exc}"))
    return results
