"""A non-finite loss stops the trial and says where: epoch, step and term."""
import math

import pytest
import torch

from bench.train.health import LossMonitor, NonFiniteLossError


def test_finite_losses_give_the_epoch_mean():
    monitor = LossMonitor(torch.device("cpu"))
    monitor.start_epoch(0)
    for ce, align in ((1.0, 0.5), (3.0, 0.5)):
        monitor.add(torch.tensor([ce, align]))
    assert monitor.end_epoch() == pytest.approx((1.5 + 3.5) / 2)


@pytest.mark.parametrize("term,index", [("classification", 0), ("alignment", 1)])
def test_the_first_non_finite_step_and_term_are_named(term, index):
    monitor = LossMonitor(torch.device("cpu"), check_every=1000)
    monitor.start_epoch(2)
    for step in range(5):
        values = [1.0, 1.0]
        if step >= 3:
            values[index] = math.nan if step == 3 else math.inf
        monitor.add(torch.tensor(values))
    with pytest.raises(NonFiniteLossError, match=f"non-finite {term} loss \\(nan\\) at epoch 3, step 4"):
        monitor.end_epoch()


def test_the_check_runs_inside_a_long_epoch():
    monitor = LossMonitor(torch.device("cpu"), check_every=4)
    monitor.start_epoch(0)
    for _ in range(3):
        monitor.add(torch.tensor([math.nan, 0.0]))
    with pytest.raises(NonFiniteLossError, match="step 1"):
        monitor.add(torch.tensor([1.0, 0.0]))          # the 4th step reads the flags


def test_a_new_epoch_starts_clean():
    monitor = LossMonitor(torch.device("cpu"))
    monitor.start_epoch(0)
    monitor.add(torch.tensor([1.0, 2.0]))
    assert monitor.end_epoch() == 3.0
    monitor.start_epoch(1)
    monitor.add(torch.tensor([0.5, 0.0]))
    assert monitor.end_epoch() == 0.5
