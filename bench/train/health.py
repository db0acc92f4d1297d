"""Training health: a non-finite loss stops the trial with the epoch, the step and the term.

A NaN in the loss poisons the weights, and a poisoned model still predicts *something*: left
alone, the trial ends "ok" with a chance-level CL that looks like a result. ``LossMonitor`` keeps
per-term sums and the first non-finite step of each term on the device (no host sync in the
step) and is read every ``check_every`` steps and at the end of each epoch.
"""
from __future__ import annotations

import torch

#: The terms a training step reports, in the order of the tensor ``TrainStep`` returns.
LOSS_TERMS = ("classification", "alignment")


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite: the trial stops (its record says where)."""


class LossMonitor:
    """Per-epoch loss sums and the first non-finite step of each term, as device tensors."""

    def __init__(self, device: torch.device, check_every: int = 64):
        self.device = device
        self.check_every = max(1, check_every)
        self.epoch = 0
        self.steps = 0
        self.sums = torch.zeros(len(LOSS_TERMS), device=device, dtype=torch.float64)
        self.first_bad = torch.full((len(LOSS_TERMS),), -1, device=device, dtype=torch.long)
        self.bad_value = torch.zeros(len(LOSS_TERMS), device=device)

    def start_epoch(self, epoch: int) -> None:
        self.epoch, self.steps = epoch, 0
        self.sums.zero_()
        self.first_bad.fill_(-1)

    def add(self, terms: torch.Tensor) -> None:
        """``terms``: (len(LOSS_TERMS),) detached losses of one step. Reads the host every
        ``check_every`` steps only."""
        finite = torch.isfinite(terms)
        new = ~finite & (self.first_bad < 0)
        self.first_bad = torch.where(new, torch.full_like(self.first_bad, self.steps), self.first_bad)
        self.bad_value = torch.where(new, terms.float(), self.bad_value)
        self.sums += torch.where(finite, terms, torch.zeros_like(terms)).double()
        self.steps += 1
        if self.steps % self.check_every == 0:
            self.check()

    def check(self) -> None:
        """Raise ``NonFiniteLossError`` if any term went non-finite (one host read)."""
        first = self.first_bad.tolist()
        for term, step, value in zip(LOSS_TERMS, first, self.bad_value.tolist()):
            if step >= 0:
                raise NonFiniteLossError(
                    f"non-finite {term} loss ({value}) at epoch {self.epoch + 1}, step {step + 1}: the trial stops "
                    "instead of reporting numbers from a diverged model (check the landmarks, lower train.lr, "
                    "or turn off train.amp)")

    def end_epoch(self) -> float:
        """Check, then return the epoch's mean total loss (the epoch's one host read)."""
        self.check()
        return float(self.sums.sum()) / max(self.steps, 1)
