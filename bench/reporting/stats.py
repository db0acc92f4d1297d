"""Statistics for the tables: spread over seeds and the paired test of AU on vs off over seeds.

The tests over the test faces of one seed are in ``face_tests.py``.

Seeds are the unit of replication: a cell's spread is over its seeds, and the AU effect is tested
on pairs (w/o AU, w/ AU) that share a seed (same data order and initialisation), which removes the
seed-to-seed variance that an unpaired test would have to fight.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

#: --test choices: key -> name used in footnotes.
TESTS = {"t": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}
#: --spread choices: key -> footnote wording.
SPREADS = {"std": "std", "ci": "95% CI half-width (Student t)"}


@dataclass(frozen=True)
class Summary:
    mean: float | None
    std: float | None         # sample std (ddof = 1); None with fewer than 2 values
    ci95: float | None        # half-width of the 95% confidence interval of the mean (Student t)
    n: int

    def spread(self, kind: str) -> float | None:
        return self.ci95 if kind == "ci" else self.std


def summarize(values: Sequence[float]) -> Summary:
    vals = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(vals)
    if n == 0:
        return Summary(None, None, None, 0)
    mean = float(vals.mean())
    if n < 2:
        return Summary(mean, None, None, 1)
    from scipy import stats

    std = float(vals.std(ddof=1))
    return Summary(mean, std, float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)), n)


@dataclass(frozen=True)
class PairedTest:
    test: str                  # t | wilcoxon (pairs are seeds) | mcnemar | bootstrap (pairs are test faces)
    n_pairs: int
    p_value: float | None      # None: undefined (e.g. all paired differences equal)
    seed: int | None = None    # faces tests: the seed whose two models were compared
    diff: float | None = None  # faces tests: w/ AU minus w/o AU (accuracy as a fraction for CL)
    ci_low: float | None = None    # bootstrap: 95% interval of the difference
    ci_high: float | None = None


def paired_test(without: Mapping[int, float], with_: Mapping[int, float], test: str = "t") -> PairedTest | None:
    """Two-sided test of AU on vs off over the seeds present on both sides; None under 2 pairs."""
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; expected {', '.join(TESTS)}")
    seeds = sorted(s for s in set(without) & set(with_)
                   if without[s] is not None and with_[s] is not None
                   and not math.isnan(without[s]) and not math.isnan(with_[s]))
    if len(seeds) < 2:
        return None
    a = np.array([without[s] for s in seeds], dtype=float)
    b = np.array([with_[s] for s in seeds], dtype=float)
    diff = b - a
    if np.allclose(diff, diff[0]):
        # Constant differences: the t statistic is undefined (zero variance) and the signed-rank
        # test has nothing to rank; we call it untestable rather than infinitely significant.
        return PairedTest(test, len(seeds), None)
    from scipy import stats

    if test == "t":
        p = stats.ttest_rel(b, a).pvalue
    else:
        p = stats.wilcoxon(b, a, zero_method="wilcox", alternative="two-sided").pvalue
    p = float(p)
    return PairedTest(test, len(seeds), None if math.isnan(p) else p)
