"""Every method learns with the demo profile's settings (issue 13: four methods sat at chance, and a
model at chance has no meaningful CAM).

Each trained method (post-hoc extractors share CAM's training) trains without AU alignment, as
``make run`` does for seed 0, and must clear chance on the clean validation split by a margin a
guessing model would not reach, within its demo epochs. Training stops at the first epoch that
clears it, so a method that learns costs only a few epochs.
"""
import pytest
import torch

from bench.config.settings import resolve
from bench.train.fit import fit
from bench.train.session import build_session
from methods import all_methods

CHANCE = 100 / 7
#: Validation has 210 faces: a guess has a std of sqrt(p(1-p)/210) = 2.4 points around 14.3%, so
#: 24% is four of them above chance (and above every epoch's chance excursion over a dozen looks).
THRESHOLD = 24.0
TRAINED = sorted(name for name, cls in all_methods().items()
                 if cls.__module__.startswith("methods.") and cls.train_group() == name)


class Learned(Exception):
    """Raised from the epoch reporter once validation CL clears the threshold (stops training)."""

    def __init__(self, epoch: int, val_cl: float):
        super().__init__(f"epoch {epoch}: {val_cl:.1f}%")
        self.epoch, self.val_cl = epoch, val_cl


def stop_once_learned(metrics: dict) -> None:
    if metrics["val_cl"] >= THRESHOLD:
        raise Learned(metrics["epoch"], metrics["val_cl"])


def test_threshold_is_well_above_chance():
    guess_std = (CHANCE / 100 * (1 - CHANCE / 100) / 210) ** 0.5 * 100
    assert (THRESHOLD - CHANCE) / guess_std > 4


def test_every_builtin_trained_method_is_covered():
    assert {"cam", "wildcat", "acol", "prm", "adl", "cutmix", "tscam", "apvit"} <= set(TRAINED)
    assert "gradcam" not in TRAINED                       # shares CAM's training run


@pytest.fixture
def one_thread():
    """Train as ``make run``'s trials do (``--cpus-per-trial 1``: one torch thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("method", TRAINED)
def test_demo_method_beats_chance_without_au(method, one_thread):
    config = resolve("demo", [("train.checkpoint", False), ("train.select_on", "val")], "synthetic", method, False)
    session = build_session(method, "synthetic", 0, config, align=False)
    with pytest.raises(Learned) as learned:
        result = fit(session, stop_once_learned)
        curve = [round(h["val_cl"], 1) for h in result.history]
        pytest.fail(f"{method} never reached {THRESHOLD}% validation CL in {config.train.epochs} demo epochs "
                    f"(chance {CHANCE:.1f}%): {curve}")
    assert learned.value.epoch <= config.train.epochs
