"""Every registered method passes every conformance check: a new plugin needs no new test code."""
import pytest

from bench.conformance import CHECKS
from methods import method_names


@pytest.mark.parametrize("check", list(CHECKS), ids=list(CHECKS))
@pytest.mark.parametrize("method", method_names())
def test_conformance(method, check):
    CHECKS[check](method)
