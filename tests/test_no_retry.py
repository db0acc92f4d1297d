"""Issue 21.7: failures that can only repeat are not retried by Ray's ``--max-failures``.

A trial whose loss turns NaN resumed from its last checkpoint and diverged again, once per allowed
retry. Now a non-finite loss (like an identity mismatch or a user error) ends the trial at once.
"""
import json
import os
import subprocess
import sys

import pytest

# The plugin appends one line per training attempt (once per method instance, on its first full
# batch: the preflight's 4-face dry run does not count), so the file counts the attempts.
DIVERGES_AND_COUNTS = '''
import os

import torch

from methods.cam import CAM
from methods.registry import register


@register
class DivergesCounted(CAM):
    """Test-only: NaN loss on full batches, i.e. in the trial, after the dry run."""

    name = "divergescounted"
    title = "DivergesCounted"

    def loss(self, output, batch):
        loss = super().loss(output, batch)
        if batch.images.shape[0] <= 4:
            return loss
        if not getattr(self, "_counted", False):
            self._counted = True
            with open(os.environ["ATTEMPTS_FILE"], "a") as f:
                f.write(f"{os.getpid()}\\n")
        if os.environ.get("CRASH_INSTEAD"):
            raise RuntimeError("a crash, which a retry may heal")
        return loss * torch.nan
'''


def _run(tmp_path, **extra_env):
    (tmp_path / "divergescounted.py").write_text(DIVERGES_AND_COUNTS)
    attempts = tmp_path / "attempts.txt"
    results = tmp_path / "results"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "BENCH_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(tmp_path),
           "BENCH_PLUGINS": "divergescounted", "ATTEMPTS_FILE": str(attempts), **extra_env}
    out = subprocess.run([sys.executable, "-c", "from bench.cli.main import main; main()", "run",
                          "--methods", "divergescounted", "--au", "off", "--profile", "smoke", "--set", "train.epochs=1",
                          "--max-failures", "2", "--results-dir", str(results)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 1, out.stderr[-3000:]
    assert "1 failed" in out.stderr, out.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (results / "smoke" / "evaluations").glob("*.json")]
    assert [r["status"] for r in records] == ["failed"]
    return len(attempts.read_text().splitlines()), records[0]["error"]


@pytest.mark.slow
def test_a_nan_trial_under_max_failures_fails_once_not_three_times(tmp_path):
    attempts, error = _run(tmp_path)
    assert attempts == 1                                           # not 1 + 2 retries
    assert "non-finite classification loss" in error


@pytest.mark.slow
def test_a_crash_is_still_retried(tmp_path):
    """The counter sees retries: a plain crash (a lost worker, a flaky library) keeps its --max-failures."""
    attempts, error = _run(tmp_path, CRASH_INSTEAD="1")
    assert attempts == 3 and "a crash, which a retry may heal" in error
