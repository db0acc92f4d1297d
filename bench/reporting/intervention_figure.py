"""Per-class bars of ground-truth AU importance next to the CAM's mass per AU, w/o and w/ AU, one method.

From the per-face arrays of ``bench.metrics.interventions`` (``label``, ``unit_drop_logit``,
``unit_cam_mass``, and the unit names of ``details["units"]``): one panel per non-neutral class, one
group of bars per unit (AUs sharing a region), four bars per group: the ground-truth importance and the
CAM mass, w/o AU (light) and w/ AU (dark). Both are shares within the class (class means, negative
drops counted as 0, divided by their sum), so a CAM that matches the model's use of the AUs gives
bars of equal height side by side. Matplotlib's object API with the Agg canvas; no torch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from bench.files import atomic_write

DPI = 100
PANEL_SIZE = (4.2, 2.8)      # inches per class panel
COLUMNS = 3
COLOURS = {("importance", "w/o AU"): "#9ecae1", ("mass", "w/o AU"): "#fdae6b",
           ("importance", "w/ AU"): "#2171b5", ("mass", "w/ AU"): "#d94801"}
LABELS = {"importance": "ground-truth importance", "mass": "CAM mass"}


def class_unit_shares(labels: np.ndarray, values: np.ndarray, num_classes: int) -> np.ndarray:
    """(n,) labels, (n, U) per-face unit values (NaN padded) -> (C, U) class means as shares of their sum.

    Negative values (an AU whose removal *raised* the logit) count as 0; a class whose values are all 0
    or missing stays 0 (NaN when it has no face).
    """
    out = np.full((num_classes, values.shape[1]), np.nan)
    for c in range(num_classes):
        rows = values[labels == c]
        if len(rows) == 0:
            continue
        counts = (~np.isnan(rows)).sum(0)
        mean = np.clip(np.where(counts > 0, np.nansum(rows, 0) / np.maximum(counts, 1), 0.0), 0, None)
        total = mean.sum()
        out[c] = mean / total if total > 0 else mean
    return out


def shares_from_faces(faces: Mapping[str, np.ndarray], num_classes: int) -> dict[str, np.ndarray]:
    """The (C, U) ``importance`` and ``mass`` shares of one evaluation's per-face arrays."""
    labels = np.asarray(faces["label"])
    return {"importance": class_unit_shares(labels, np.asarray(faces["unit_drop_logit"], float), num_classes),
            "mass": class_unit_shares(labels, np.asarray(faces["unit_cam_mass"], float), num_classes)}


def intervention_figure(path: Path, method_title: str, class_names: Sequence[str], units: Sequence[Sequence[str]],
                        shares: Mapping[str, Mapping[str, np.ndarray]], neutral: int = 0) -> Path:
    """Write the PNG. ``shares``: {"w/o AU": {"importance": (C, U), "mass": (C, U)}, "w/ AU": {...}} (either
    may be missing); ``units``: per class, its unit names (``details["units"]``)."""
    from matplotlib.figure import Figure

    variants = [v for v in ("w/o AU", "w/ AU") if v in shares]
    if not variants:
        raise ValueError("no evaluation to draw: give the shares of w/o AU, w/ AU or both")
    classes = [c for c in range(len(class_names)) if c != neutral and len(units[c])]
    rows = max(1, -(-len(classes) // COLUMNS))
    fig = Figure(figsize=(PANEL_SIZE[0] * COLUMNS, PANEL_SIZE[1] * rows + 0.9), dpi=DPI)
    fig.suptitle(f"{method_title}: ground-truth AU importance (intervention) vs CAM mass, per class")
    bars = [(kind, v) for v in variants for kind in ("importance", "mass")]
    width = 0.8 / len(bars)
    for slot, c in enumerate(classes):
        ax = fig.add_subplot(rows, COLUMNS, slot + 1)
        names = list(units[c])
        x = np.arange(len(names))
        for b, (kind, variant) in enumerate(bars):
            values = np.clip(np.nan_to_num(np.asarray(shares[variant][kind], float)[c, :len(names)]), 0, None)
            values = values / values.sum() if values.sum() > 0 else values      # shares over the drawn units
            ax.bar(x - 0.4 + width * (b + 0.5), values, width, color=COLOURS[(kind, variant)],
                   label=f"{LABELS[kind]}, {variant}")
        ax.set_title(class_names[c], fontsize=10)
        ax.set_xticks(x)
        ax.set_xticklabels(names, fontsize=7, rotation=30)
        ax.set_ylim(0, 1)
        ax.set_ylabel("share within the class", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(bars), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    path = Path(path)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI))
    return path
