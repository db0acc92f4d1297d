"""Every registered method passes every conformance check: a new plugin needs no new test code.
The fixture plugins in tests/plugins show that the checks catch what the harness would get wrong."""

import pytest
from conftest import plugins_from_tests

from bench.metrics.conformance import CHECKS, ConformanceError, run_checks
from methods import method_names


@pytest.mark.parametrize("check", list(CHECKS), ids=list(CHECKS))
@pytest.mark.parametrize("method", method_names())
def test_conformance(method, check):
    CHECKS[check](method)


# --- the suite catches the mistakes of issue 11 (problem 6), with messages that say expected vs came ---
@pytest.fixture(scope="module")
def faulty():
    with plugins_from_tests("faulty_plugins") as module:
        yield module


def test_a_transposed_cam_is_caught(faulty):
    with pytest.raises(ConformanceError) as info:
        CHECKS["CAM on the map grid"](faulty.TransposedCAM)
    assert str(info.value).startswith("expected a CAM of spatial size (4, 4) (the grid of 'layer5'), came (4, 3)")
    CHECKS["finite CAM (B, h, w)"](faulty.TransposedCAM)        # what the suite checked before: passes


def test_a_forward_that_reads_labels_without_needs_labels_is_caught(faulty):
    with pytest.raises(ConformanceError, match=r"expected the same logits with and without labels in eval mode "
                                               r"\(needs_labels is False\), came max \|diff\| 5 with the true labels"):
        CHECKS["logits ignore labels"](faulty.LabelPeekingCAM)


def test_the_suite_calls_forward_as_the_harness_does(faulty):
    """Without labels (as the harness calls it) the peeking model is a plain CAM: every other check passes."""
    failed = {label: reason for label, reason in run_checks(faulty.LabelPeekingCAM) if reason}
    assert list(failed) == ["logits ignore labels"]


def test_a_bare_assert_in_plugin_code_says_where(faulty):
    class Asserting(faulty.TransposedCAM):
        name = "fx_asserting"
        title = "Asserting"

        def explain(self, model, x, target):
            assert x.shape[0] > 1000
            return super().explain(model, x, target)

    reasons = dict(run_checks(Asserting))
    reason = reasons["finite CAM (B, h, w)"]
    assert reason.startswith("AssertionError at ") and "test_conformance.py" in reason
    assert "assert x.shape[0] > 1000" in reason


def test_a_declared_label_reading_forward_fails_too(faulty):
    """needs_labels = True lets a plugin use the labels for its CAM (WSOL), never for its logits: the
    evaluator predicts without labels, so such a forward would be judged on logits it never trained for
    or, if the labels reached them, on the answer itself."""
    class DeclaredPeeking(faulty.LabelPeekingCAM):
        name = "fx_declared_peeking"
        title = "Declared label-peeking CAM (fixture)"
        needs_labels = True

    with pytest.raises(ConformanceError, match=r"^expected the same logits with and without labels in eval mode "
                                               r"\(needs_labels is True: labels may steer only the CAM\), "
                                               r"came max \|diff\| 5 with the true labels; the evaluator predicts "
                                               r"with forward\(x, labels=None\)"):
        CHECKS["logits ignore labels"](DeclaredPeeking)
    failed = {label: reason for label, reason in run_checks(DeclaredPeeking) if reason}
    assert "logits ignore labels" in failed


def test_acol_uses_labels_for_its_cam_only():
    """ACoL declares needs_labels (its erasing reads the true class) and passes: its logits are head A's."""
    CHECKS["logits ignore labels"]("acol")


# --- issue 20: checks say when their premise failed; a library's error names the plugin line that called it ---
from bench.metrics.conformance import DEPENDS, run_suite  # noqa: E402
from methods.cam import CAM  # noqa: E402


class UnsqueezedCAM(CAM):
    """Returns (B, 1, h, w): the shape check fails, and nothing may pass on the CAM it did not accept."""
    name = "fx_unsqueezed"
    title = "Unsqueezed CAM (fixture)"

    def explain(self, model, x, target):
        output, cam = super().explain(model, x, target)
        return output, cam.unsqueeze(1)


class LibraryCrashCAM(CAM):
    """Fails inside torch, as a plugin calling a library with the wrong input does."""
    name = "fx_library_crash"
    title = "Library-crash CAM (fixture)"

    def explain(self, model, x, target):
        import torch.nn.functional as F

        output, cam = super().explain(model, x, target)
        return output, F.interpolate(cam, size=(3, 3, 3))


def test_every_check_declares_premises_that_run_before_it():
    order = list(CHECKS)
    assert set(DEPENDS) == set(CHECKS)
    for label, needs in DEPENDS.items():
        assert all(order.index(n) < order.index(label) for n in needs), label


def test_checks_on_a_failed_cam_shape_are_not_run_and_say_which_check_failed():
    results = {r.label: r for r in run_suite(UnsqueezedCAM)}
    assert results["finite CAM (B, h, w)"].status == "FAIL"
    assert results["finite CAM (B, h, w)"].reason == "expected a CAM of shape (8, h, w), came (8, 1, 4, 4)"
    blocked = {label for label, r in results.items() if r.status == "not run"}
    assert blocked == {"CAM on the map grid", "explain's Output = a clean forward", "CAM alone = CAM in batch (eval)",
                       "hooks released"}                         # "CAM on the map grid" used to pass here
    assert results["CAM on the map grid"].reason == "not run: depends on 'finite CAM (B, h, w)', which failed"
    passed = {label for label, r in results.items() if r.status == "pass"}
    assert passed == set(CHECKS) - blocked - {"finite CAM (B, h, w)"}


def test_a_failed_root_blocks_its_dependents_through_checks_that_did_not_run(monkeypatch):
    def broken(method):
        raise ConformanceError("expected logits of shape (8, 7), came (8, 6)")

    monkeypatch.setitem(CHECKS, "output shapes", broken)
    results = run_suite("cam")
    assert results[0].status == "FAIL" and all(r.status == "not run" for r in results[1:])
    assert {r.reason for r in results[1:]} == {"not run: depends on 'output shapes', which failed"}
    assert dict(run_checks("cam"))["CAM on the map grid"] == "not run: depends on 'output shapes', which failed"


def test_an_error_inside_a_library_names_the_plugin_line_and_keeps_the_traceback():
    result = next(r for r in run_suite(LibraryCrashCAM) if r.label == "finite CAM (B, h, w)")
    assert result.reason.startswith("ValueError at ") and "torch/nn/functional.py:" in result.reason
    assert "called from " in result.reason and "test_conformance.py:" in result.reason
    assert "F.interpolate(cam, size=(3, 3, 3))" in result.reason
    assert result.details.startswith("Traceback (most recent call last):")
    assert "in check_finite_cam" in result.details and "in interpolate" in result.details
