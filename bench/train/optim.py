"""Optimiser and learning-rate schedule of a trial, from ``config.train``.

Weight decay follows timm's convention for the models that declare it: a model any of whose
modules has timm's ``no_weight_decay()`` (every timm ViT/DeiT; a plugin's own transformer may add
one) trains with timm's parameter groups, so norms, biases (every 1-D parameter) and the declared
names (position embeddings, cls tokens) get no weight decay, as in timm's ``create_optimizer_v2``
and the transformer methods' own code. Models that declare nothing (the CNNs) decay every parameter,
as the reference's ``torch.optim.SGD(model.parameters(), weight_decay=...)`` does.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench.config.settings import Config

OPTIMIZERS = ("sgd", "adamw")


def declared_no_weight_decay(model: nn.Module) -> set[str] | None:
    """Full parameter names that the model's modules exempt through ``no_weight_decay()``
    (timm's hook, names relative to the declaring module), or None when no module declares one."""
    declared: set[str] | None = None
    for prefix, module in model.named_modules():
        hook = getattr(module, "no_weight_decay", None)
        if not callable(hook):
            continue
        declared = declared if declared is not None else set()
        declared |= {f"{prefix}.{name}" if prefix else name for name in hook()}
    return declared


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """timm's groups (no decay on 1-D parameters and declared names) for a model that declares
    ``no_weight_decay``; otherwise all trainable parameters with ``weight_decay``."""
    from timm.optim import param_groups_weight_decay

    declared = declared_no_weight_decay(model)
    if declared is None:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    return param_groups_weight_decay(model, weight_decay, no_weight_decay_list=sorted(declared))


def make_optimizer(model: nn.Module, config: Config):
    """(optimiser, StepLR scheduler): ``train.optimizer`` sgd | adamw, lr ×``lr_gamma`` every ``lr_step`` epochs."""
    t = config.train
    groups = parameter_groups(model, t.weight_decay)
    if t.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov, weight_decay=t.weight_decay)
    elif t.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {t.optimizer!r} (train.optimizer: {' | '.join(OPTIMIZERS)})")
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, t.lr_step), gamma=t.lr_gamma)
    return opt, sched
