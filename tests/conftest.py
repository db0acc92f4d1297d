import atexit
import importlib
import os
import sys
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Dataset caches of the test session (and of the bench subprocesses it starts) stay out of ~/.cache.
if "BENCH_CACHE" not in os.environ:
    os.environ["BENCH_CACHE"] = tempfile.mkdtemp(prefix="bench-test-cache-")
    atexit.register(shutil.rmtree, os.environ["BENCH_CACHE"], ignore_errors=True)   # not left behind in /tmp
torch.set_num_threads(2)

JAFFE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "jaffe"
PLUGINS = Path(__file__).resolve().parent / "plugins"


@contextmanager
def plugins_from_tests(module: str):
    """Import a plugin module of tests/plugins/ (its classes register on import) for a test module's
    fixture; tests/plugins leaves sys.path afterwards."""
    sys.path.insert(0, str(PLUGINS))
    try:
        yield importlib.import_module(module)
    finally:
        sys.path.remove(str(PLUGINS))


@pytest.fixture
def template_landmarks():
    """One synthetic neutral-pose face (68, 2) in a 64-px image."""
    from bench.data.synthetic import TEMPLATE

    return torch.tensor(TEMPLATE * 20 + 32, dtype=torch.float32)


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run the real ``bench`` entry point in this process: ``cli(*args) -> (exit code, stdout, stderr)``.

    No interpreter start per call (torch is imported once), the same ``main()`` as the console script.
    """
    import sys

    from bench.cli.main import main

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["bench", *map(str, args)])
        with pytest.raises(SystemExit) as stop:
            main()
        out = capsys.readouterr()
        return stop.value.code, out.out, out.err

    return run
