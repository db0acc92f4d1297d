"""The final row a job reports to Ray Tune (and so to the experiment trackers of ``bench run --log``)."""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence


def final_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """A trial's result rows as flat scalars ``final/<method>/<metric>`` for the trackers.

    Numbers and booleans only (as floats); lists, nested tables, text and missing values are left out.
    """
    out: dict[str, float] = {}
    for row in rows:
        method = row.get("method")
        if not method:
            continue
        for key, value in row.items():
            if isinstance(value, bool):
                out[f"final/{method}/{key}"] = float(value)
            elif isinstance(value, numbers.Real) and math.isfinite(value):
                out[f"final/{method}/{key}"] = float(value)
    return out
