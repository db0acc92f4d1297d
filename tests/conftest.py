import os
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Dataset caches of the test session (and of the bench subprocesses it starts) stay out of ~/.cache.
os.environ.setdefault("BENCH_CACHE", tempfile.mkdtemp(prefix="bench-test-cache-"))
torch.set_num_threads(2)

JAFFE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "jaffe"


@pytest.fixture
def template_landmarks():
    """One synthetic neutral-pose face (68, 2) in a 64-px image."""
    from bench.data.synthetic import TEMPLATE

    return torch.tensor(TEMPLATE * 20 + 32, dtype=torch.float32)
