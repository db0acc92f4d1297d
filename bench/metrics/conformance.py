"""The plugin conformance suite: behaviour every method plugin must show, checked generically.

Each check takes a method (a registered name or the class itself), builds the plugin's small test
model (``conformance_options``: CPU, random init, tiny images) and raises ``ConformanceError`` when
the plugin misbehaves, saying what was expected and what came. The checks call the model the way
the harness does: ``model(x, labels=labels if method.needs_labels else None)``, so a forward that
quietly reads labels it will never get fails here rather than in a sweep; and the logits must not
move with the labels even when a method declares ``needs_labels`` (labels may steer its CAM only). ``tests/test_conformance.py``
runs every check on every registered method; ``bench check-plugin`` runs them on any plugin.
``DEPENDS`` declares what each check takes for granted: when that failed, the check is not run and
says so, instead of passing on a premise that does not hold.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Callable

import torch

from au import alignment_loss, get_codebook, render_au_maps
from bench.config.settings import Config, build_config
from bench.data.synthetic import SyntheticOptions, generate
from bench.data.transforms import to_input
from bench.train.model import feature_sizes, model_options
from bench.train.step import TrainStep
from methods import Batch, Method, Output, get_method

NUM_CLASSES = 7
MethodRef = str | type[Method]


class ConformanceError(AssertionError):
    """A plugin does not do what the harness relies on (the message: expected vs came)."""


def expect(condition: bool, expected: str, came: str, hint: str = "") -> None:
    if not condition:
        raise ConformanceError(f"expected {expected}, came {came}" + (f"; {hint}" if hint else ""))


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

    def harness_labels(self, labels: torch.Tensor | None = None) -> torch.Tensor | None:
        """What the harness passes as ``labels``: the labels only when the method needs them."""
        return (self.labels if labels is None else labels) if self.method.needs_labels else None

    def forward(self, x: torch.Tensor | None = None) -> Output:
        """The model called exactly as the trainer and the evaluator call it."""
        return self.model(self.x if x is None else x, labels=self.harness_labels())


def _method_class(method: MethodRef) -> type[Method]:
    return get_method(method) if isinstance(method, str) else method


def toy(method: MethodRef, seed: int = 0, batch: int = 8, overrides: dict | None = None) -> Toy:
    """The method's small model and a batch of synthetic faces (all classes, valid AU maps)."""
    cls = _method_class(method)
    opts = cls.conformance_options()
    size = opts["image_size"]
    raw = {"data": {"image_size": size}, "model": dict(opts["model"]),
           "train": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.0, "flip": 0.0, "rotation": 0.0,
                     "crop_scale": 1.0, "jitter": 0.0, "amp": False, "batch_size": batch},
           "au": {"weight": 10.0}}
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    config = build_config(raw, f"conformance options of {cls.name}")
    torch.manual_seed(seed)
    instance = cls(cls.make_config(dict(opts.get("method", {}))))
    model = instance.build(NUM_CLASSES, instance.make_backbone(model_options(config)))
    faces = generate("test", batch, seed, SyntheticOptions(image_size=size))
    layers = tuple(config.au.layers) or cls.alignment_layers
    return Toy(instance, model, config, torch.from_numpy(faces.images), torch.from_numpy(faces.labels),
               torch.from_numpy(faces.landmarks), layers)


def _shape(value) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else repr(value)


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


def expected_cam_size(method: Method | type[Method], x: torch.Tensor, output: Output) -> tuple[int, int]:
    """The (h, w) that ``explain``'s CAM must have: the grid of ``alignment_layers[0]`` unless the
    plugin declares ``cam_size`` ("input", another feature's name, or a fixed (h, w))."""
    size = method.cam_size
    if size is None or (isinstance(size, str) and size != "input"):
        layer = method.alignment_layers[0] if size is None else size
        expect(layer in output.features, f"feature {layer!r} (the CAM's grid) among the model's features",
               f"{sorted(output.features)}")
        return tuple(output.features[layer].shape[-2:])
    if size == "input":
        return tuple(x.shape[-2:])
    return tuple(size)


def check_output_shapes(method: MethodRef) -> None:
    t = toy(method)
    t.model.train()
    out = t.forward()
    B = len(t.labels)
    expect(out.logits.shape == (B, NUM_CLASSES), f"logits of shape {(B, NUM_CLASSES)}", _shape(out.logits))
    for layer in t.layers:
        expect(layer in out.features, f"alignment layer {layer!r} among the features", f"{sorted(out.features)}")
        expect(out.features[layer].dim() == 4, f"feature {layer!r} of shape (B, C, h, w)", _shape(out.features[layer]))


def check_finite_cam(method: MethodRef) -> None:
    t = toy(method)
    t.model.eval()
    output, cam = t.method.explain(t.model, t.x, t.labels)
    B = len(t.labels)
    expect(isinstance(cam, torch.Tensor) and cam.dim() == 3 and cam.shape[0] == B,
           f"a CAM of shape ({B}, h, w)", _shape(cam))
    bad = int((~torch.isfinite(cam)).sum())
    expect(bad == 0, "a finite CAM", f"{bad} NaN/inf values")
    expect(output.logits.shape == (B, NUM_CLASSES), f"explain's logits of shape {(B, NUM_CLASSES)}",
           _shape(output.logits))


def clean_then_explained(method: MethodRef):
    """A toy in eval mode, its clean no-grad forward, then what ``explain`` returns on the same batch."""
    t = toy(method)
    t.model.eval()
    with torch.no_grad():
        clean = t.forward()
    output, cam = t.method.explain(t.model, t.x, t.labels)
    return t, clean, output, cam


def check_cam_grid(method: MethodRef) -> None:
    t, clean, _, cam = clean_then_explained(method)
    size = expected_cam_size(t.method, t.x, clean)
    declared = t.method.cam_size
    what = ("the input's (H, W)" if declared == "input" else "the declared cam_size" if isinstance(declared, tuple)
            else f"the grid of {declared or t.method.alignment_layers[0]!r}")
    expect(tuple(cam.shape[-2:]) == size, f"a CAM of spatial size {size} ({what})", f"{tuple(cam.shape[-2:])}",
           "the evaluator would silently resize it; return (B, h, w) in the map's own orientation "
           "or declare cam_size on the plugin")


def check_labels_unused(method: MethodRef) -> None:
    """The logits never depend on the labels. With ``needs_labels`` False the harness never passes
    them, so forward must also work without them, in train and eval mode. With ``needs_labels`` True
    the labels may steer the CAM (the WSOL protocol: ACoL's erasing), but the evaluator's predictions
    come from a forward without labels: in eval mode the logits must be the same with the true labels,
    other labels and none, or CL would quietly read the answer."""
    t = toy(method)
    declared = t.method.needs_labels
    why = "needs_labels is True: labels may steer only the CAM" if declared else "needs_labels is False"
    hint = ("the evaluator predicts with forward(x, labels=None): use labels for the CAM only, never for the logits"
            if declared else "set needs_labels = True if forward uses the labels (the harness passes labels=None "
                             "otherwise), and keep them out of the logits")
    other = (t.labels + 1) % NUM_CLASSES
    for mode in (("eval",) if declared else ("eval", "train")):
        t.model.train(mode == "train")
        logits = {}
        for key, labels in (("without labels", None), ("with the true labels", t.labels), ("with other labels", other)):
            torch.manual_seed(0)   # the same dropout/drop masks for all three calls
            with torch.no_grad():
                try:
                    logits[key] = t.model(t.x, labels=labels).logits
                except Exception as exc:  # noqa: BLE001 - the plugin's error is the finding
                    raise ConformanceError(
                        f"expected forward(x, labels={'None' if labels is None else 'y'}) to work in {mode} mode, "
                        f"came {type(exc).__name__}: {exc}; the evaluator predicts with labels=None "
                        f"({why})") from None
        for key in ("with the true labels", "with other labels"):
            diff = (logits[key] - logits["without labels"]).abs().max().item()
            expect(diff <= 1e-5, f"the same logits with and without labels in {mode} mode ({why})",
                   f"max |diff| {diff:.3g} {key}", hint)


def check_explain_output_is_clean(method: MethodRef) -> None:
    t, clean, output, _ = clean_then_explained(method)
    hint = ("the metrics read explain's Output: it must be the forward of the unmodified batch, not an extractor's "
            "last forward (subclass methods.PostHocCAM, which keeps the clean one)")
    expect(output.logits.shape == clean.logits.shape,
           f"explain's logits of shape {_shape(clean.logits)} like a clean forward", _shape(output.logits), hint)
    diff = (output.logits.float() - clean.logits.float()).abs().max().item()
    agree = int((output.logits.argmax(1) == clean.logits.argmax(1)).sum())
    expect(diff <= 1e-4 * max(1.0, clean.logits.abs().max().item()), "explain's logits equal to a clean forward's",
           f"max |diff| {diff:.3g}, argmax agreeing on {agree}/{len(t.labels)} samples", hint)
    for layer in t.layers:
        expect(layer in output.features, f"explain's features to hold {layer!r} (ATT-COS reads it)",
               f"{sorted(output.features)}", hint)
        a, b = output.features[layer], clean.features[layer]
        expect(a.shape == b.shape, f"explain's feature {layer!r} of shape {_shape(b)}", _shape(a), hint)
        diff = (a.float() - b.float()).abs().max().item()
        expect(diff <= 1e-4 * max(1.0, b.abs().max().item()), f"explain's feature {layer!r} equal to a clean forward's",
               f"max |diff| {diff:.3g}", hint)


def check_batch_independent_cam(method: MethodRef) -> None:
    t = toy(method)
    t.model.eval()
    x = t.x
    _, batched = t.method.explain(t.model, x, t.labels)
    for i in (0, 3):
        _, alone = t.method.explain(t.model, x[i:i + 1], t.labels[i:i + 1])
        expect(alone.shape[1:] == batched.shape[1:], f"sample {i}'s CAM alone of shape {_shape(batched[i:i + 1])}",
               _shape(alone))
        scale = batched[i].abs().max().clamp_min(1e-6)
        err = ((alone[0] - batched[i]).abs().max() / scale).item()
        expect(err < 1e-3, f"sample {i}'s CAM alone equal to its CAM in a batch (eval mode)",
               f"relative error {err:.2e}", "a sample's CAM must not depend on the rest of the batch")


def _train_steps(t: Toy, steps: int, align: bool, seed: int = 0) -> list[torch.Tensor]:
    device = torch.device("cpu")
    optimizer = torch.optim.AdamW(t.model.parameters(), lr=t.config.train.lr, weight_decay=0.0)
    sizes = feature_sizes(t.model, t.config.data.image_size, device, t.method.needs_labels)
    step = TrainStep(t.method, t.model, optimizer, t.config, device, align, t.layers, sizes,
                     torch.Generator().manual_seed(seed))
    t.model.train()
    return [step(t.images, t.labels, t.landmarks) for _ in range(steps)]


def check_gradients_reach_backbone(method: MethodRef) -> None:
    t = toy(method)
    t.model.train()
    H, W = t.images.shape[1:3]
    batch = Batch(t.x, t.labels, t.landmarks.float())
    sizes = feature_sizes(t.model, H, torch.device("cpu"), t.method.needs_labels)
    codebook = get_codebook("paper")
    rendered = {sizes[layer]: render_au_maps(t.landmarks, t.labels, (H, W), sizes[layer], codebook)
                for layer in t.layers}
    valid = next(iter(rendered.values()))[1]
    batch = batch.replace(au_maps={s: m for s, (m, _) in rendered.items()}, au_valid=valid)
    batch = t.method.mix(batch, torch.Generator().manual_seed(0))
    out = t.model(batch.images, labels=batch.labels if t.method.needs_labels else None)
    loss = t.method.loss(out, batch) + alignment_loss(out.features, batch.au_maps, batch.au_valid, t.layers, 1.0)
    loss.backward()
    backbone = getattr(t.model, "backbone", t.model)
    name, first = next(((n, p) for n, p in backbone.named_parameters() if p.requires_grad), (None, None))
    expect(first is not None, "trainable backbone parameters", "none")
    total = 0.0 if first.grad is None else first.grad.abs().sum().item()
    expect(total > 0, f"a gradient on the first backbone parameter ({name}) from loss + alignment loss",
           "none" if first.grad is None else "an all-zero gradient")


def _alignment_value(t: Toy) -> float:
    H, W = t.images.shape[1:3]
    t.model.eval()
    with torch.no_grad():
        out = t.forward()
        maps, valid = {}, None
        for layer in t.layers:
            size = tuple(out.features[layer].shape[-2:])
            maps[size], v = render_au_maps(t.landmarks, t.labels, (H, W), size, get_codebook("paper"))
            valid = v if valid is None else valid & v
        return alignment_loss(out.features, maps, valid, t.layers, 1.0).item()


def check_alignment_loss_falls(method: MethodRef) -> None:
    t = toy(method)
    before = _alignment_value(t)
    _train_steps(t, 8, align=True)
    after = _alignment_value(t)
    expect(after < before, f"the alignment loss to fall below {before:.4f} after 8 aligned steps", f"{after:.4f}")


def check_deterministic(method: MethodRef) -> None:
    runs = []
    for _ in range(2):
        t = toy(method, seed=3)
        losses = _train_steps(t, 2, align=True, seed=3)
        t.model.eval()
        with torch.no_grad():
            runs.append((torch.stack(losses), t.forward().logits))
    expect(torch.equal(runs[0][0], runs[1][0]), "the same losses from the same seed",
           f"{runs[0][0].tolist()} then {runs[1][0].tolist()}")
    diff = (runs[0][1] - runs[1][1]).abs().max().item()
    expect(diff == 0, "the same logits from the same seed", f"max |diff| {diff:.3g}")


def check_hooks_released(method: MethodRef) -> None:
    t = toy(method)
    before = _hook_count(t.model)
    for _ in range(3):
        t.model.eval()
        t.method.explain(t.model, t.x, t.labels)
    _train_steps(t, 1, align=True)
    expect(_hook_count(t.model) == before, f"{before} hooks after explain and a training step (as before)",
           f"{_hook_count(t.model)}", "hooks leaked: remove every hook explain or forward registers")
    t.model.zero_grad(set_to_none=True)
    t.model.eval()
    t.method.explain(t.model, t.x, t.labels)
    leftover = [n for n, p in t.model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    expect(not leftover, "no parameter gradients left behind by explain",
           f"{len(leftover)} parameters with gradients (e.g. {leftover[0] if leftover else ''})")


CHECKS: dict[str, Callable[[MethodRef], None]] = {
    "output shapes": check_output_shapes,
    "finite CAM (B, h, w)": check_finite_cam,
    "CAM on the map grid": check_cam_grid,
    "logits ignore labels": check_labels_unused,
    "explain's Output = a clean forward": check_explain_output_is_clean,
    "CAM alone = CAM in batch (eval)": check_batch_independent_cam,
    "gradients reach the backbone": check_gradients_reach_backbone,
    "alignment loss falls": check_alignment_loss_falls,
    "same seed, same result": check_deterministic,
    "hooks released": check_hooks_released,
}

#: What each check takes for granted: a check whose premise failed is reported as not run, never as
#: a pass it did not earn (a (B, 1, h, w) CAM has no "map grid" to be right about). Everything needs
#: a forward that returns the alignment maps; everything that reads explain's CAM needs a (B, h, w) one.
DEPENDS: dict[str, tuple[str, ...]] = {
    "output shapes": (),
    "finite CAM (B, h, w)": ("output shapes",),
    "CAM on the map grid": ("finite CAM (B, h, w)",),
    "logits ignore labels": ("output shapes",),
    "explain's Output = a clean forward": ("finite CAM (B, h, w)",),
    "CAM alone = CAM in batch (eval)": ("finite CAM (B, h, w)",),
    "gradients reach the backbone": ("output shapes",),
    "alignment loss falls": ("output shapes",),
    "same seed, same result": ("output shapes",),
    "hooks released": ("finite CAM (B, h, w)",),
}


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome. ``reason`` is None for a pass; ``blocked_by`` names the failed check that
    kept this one from running; ``details`` is the full traceback of a failure (``--verbose``)."""

    label: str
    reason: str | None = None
    details: str = ""
    blocked_by: str | None = None

    @property
    def status(self) -> str:
        return "pass" if self.reason is None else "not run" if self.blocked_by else "FAIL"


def _library_paths() -> tuple[str, ...]:
    """Folders of installed packages and the standard library: frames there are not the plugin's."""
    import sysconfig

    paths = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    return tuple(str(p) for p in paths if p)


def describe_failure(exc: BaseException) -> str:
    """One line for a failed check: the suite's own message, or where a plugin's error fired; when
    that is inside a library, also the last frame outside the libraries (the code that called it)."""
    if isinstance(exc, ConformanceError):
        return str(exc)
    text = " ".join(str(exc).split())
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    where = frames[-1] if frames else None
    at = f" at {where.filename}:{where.lineno} ({(where.line or '').strip()})" if where else ""
    libraries = _library_paths()
    if where is not None and where.filename.startswith(libraries):
        caller = next((f for f in reversed(frames) if not f.filename.startswith(libraries)), None)
        if caller is not None and caller.filename != __file__:
            at += f", called from {caller.filename}:{caller.lineno} ({(caller.line or '').strip()})"
    return f"{type(exc).__name__}{at}" + (f": {text}" if text else "")


def _blocker(label: str, results: dict[str, CheckResult]) -> str | None:
    """The failed check behind a premise of ``label`` (followed through checks that did not run)."""
    for needed in DEPENDS.get(label, ()):
        done = results.get(needed)
        if done is not None and done.reason is not None:
            return done.blocked_by or needed
    return None


def run_suite(method: MethodRef) -> list[CheckResult]:
    """Every check in order; a check whose premise failed is not run and says which one failed."""
    results: dict[str, CheckResult] = {}
    for label, check in CHECKS.items():
        blocker = _blocker(label, results)
        if blocker is not None:
            results[label] = CheckResult(label, f"not run: depends on {blocker!r}, which failed", blocked_by=blocker)
            continue
        try:
            check(method)
            results[label] = CheckResult(label)
        except Exception as exc:  # noqa: BLE001 - a crashing plugin fails the check, with its error
            details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            results[label] = CheckResult(label, describe_failure(exc), details)
    return list(results.values())


def run_checks(method: MethodRef) -> list[tuple[str, str | None]]:
    """[(check, None if passed else the reason)] for one method (a check not run gives its reason too)."""
    return [(r.label, r.reason) for r in run_suite(method)]
