"""scripts/bench_memory.py --pss-only on a tiny cache: two real trials in their own processes map the
one cache file, and the page cache holds it once (the mappings' PSS together equals one trial's)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_memory.py"


@pytest.mark.slow
def test_two_trials_share_the_cache_pages(tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), "--pss-only", "--n", "20", "--size", "64",
                          "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in run.stdout.splitlines() if line.startswith("| ")}
    one, two, ratio = (rows["peak PSS"][i] for i in range(3))
    assert float(ratio) == pytest.approx(int(two.split()[0]) / int(one.split()[0]), abs=0.01)
    assert 1.0 < float(ratio) < 2.2                 # two processes cost more than one, less than two and a bit
    cache_one, cache_two, cache_ratio = rows["PSS of the cache files' mappings"][:3]
    # Shared pages give ~1.0, private copies ~2.0. At this 5 MiB cache the two trials run out of phase (one
    # already on the test split while the other trains), so their union can exceed one trial's peak by a
    # few pages: 1.13-1.16 was seen in 2 of 5 runs here. At 1.9 GB the ratio is 1.000 (docs/speed.md).
    assert int(cache_one.split()[0]) > 0 and 0.9 <= float(cache_ratio) <= 1.3
    assert re.search(r"\| 160 training faces at 64 px", run.stdout)
