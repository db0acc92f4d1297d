"""The documented evaluation options (docs/metrics.md): defaults, values and one-line errors."""
import pytest

from bench.config.settings import resolve
from bench.errors import UserError


def test_defaults_keep_the_true_class_and_a_strict_pointing_game():
    for profile in ("smoke", "demo", "paper"):
        config = resolve(profile).eval
        assert config.faithfulness_target == "true" and config.pointing_tolerance == 0.0


def test_the_options_can_be_set():
    config = resolve("smoke", [("eval.faithfulness_target", "predicted"), ("eval.pointing_tolerance", 15)]).eval
    assert config.faithfulness_target == "predicted" and config.pointing_tolerance == 15.0


@pytest.mark.parametrize("key, value, message", [
    ("eval.faithfulness_target", "top1", r"eval.faithfulness_target = 'top1' is not allowed; use true or predicted"),
    ("eval.pointing_tolerance", -2, r"eval.pointing_tolerance = -2.0 must be >= 0 pixels"),
])
def test_bad_values_are_one_line_user_errors(key, value, message):
    with pytest.raises(UserError, match=message) as info:
        resolve("smoke", [(key, value)])
    assert "\n" not in str(info.value)
