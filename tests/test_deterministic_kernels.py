"""``train.deterministic`` switches torch's deterministic kernels per trial, both ways: the switch
is process-wide and a Ray worker process runs trials of several settings in turn."""
import torch

from bench.config.settings import resolve
from bench.train.session import build_session


def test_each_session_sets_the_switch_from_its_own_config():
    before = torch.are_deterministic_algorithms_enabled()
    try:
        on = resolve("smoke", [("train.deterministic", True)], "synthetic", "cam")
        build_session("cam", "synthetic", 0, on, align=False)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()     # an op without one warns, not fails
        off = resolve("smoke", [], "synthetic", "cam")
        build_session("cam", "synthetic", 0, off, align=False)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(before)
