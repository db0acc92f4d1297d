"""The metric registry of the tables: each ``--metric`` key, its record column, title, precision
and direction (which value is best), plus the titles and marks every renderer shares.

Kept in one place so that a new metric is one entry here, and so that "best" means the same thing
in bold (Markdown, LaTeX, rich), in the CSV and in ``bench report``'s metric agreement.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from bench.errors import UserError

FAMILY_TITLES = {"cnn": "CNN-based", "transformer": "Transformer-based"}
DATASET_TITLES = {"rafdb": "RAF-DB", "affectnet": "AffectNet", "synthetic": "Synthetic", "jaffe": "JAFFE"}
MISSING = "—"
SIG_MARK = "†"
SHARED_MARK = "‡"
FLAG_MARK = "§"
UP, DOWN = "↑", "↓"
METRIC_KEYS = ("cl", "cam-cos", "att-cos")
EXTENDED_KEYS = ("deletion", "insertion", "road", "sanity", "sanity-auc", "pointing", "mass", "rank",
                 "au-agreement", "preservation", "au-deletion", "shortcut")
ALL_METRIC_KEYS = METRIC_KEYS + EXTENDED_KEYS
#: Row columns written only by ``bench run --eval extended``: a row with none of them was not evaluated so.
EXTENDED_COLUMNS = ("deletion_auc", "insertion_auc", "road", "sanity_rho_final", "sanity_auc", "sanity_similarity",
                    "sanity_pass", "pointing", "relevance_mass", "relevance_rank", "au_importance_agreement",
                    "preservation", "deletion", "shortcut_reliance")
EXTENDED_HINT = "evaluate them with `bench eval --eval extended,interventions` (same run; trains nothing)"
#: --layer auto: each method's own (first) alignment layer, as the paper's Table 2 compares CNNs
#: at layer 5 with transformers at their aligned token map.
AUTO_LAYER = "auto"

SANITY_NOTE = ("fails the model-randomisation test: its maps barely change when the top layers are "
               "re-initialised")


@dataclass(frozen=True)
class Metric:
    column: str                  # column in the store frame
    label: str                   # header (without the direction arrow)
    digits: int
    higher_better: bool = True
    per_model: bool = False      # a property of the trained model: rows sharing one model repeat it
    extended: bool = False       # computed only by ``bench run --eval extended``
    flag_column: str | None = None   # boolean row column; False on any seed flags the cell
    flag_note: str = ""
    by_magnitude: bool = False   # best = closest to 0 (smallest |value|), for signed similarity scores
    legacy: str | None = None    # an older record column read when this one is absent
    average: str = "macro"       # how the evaluation averages faces: macro (per class) | mean (all faces)

    @property
    def arrow(self) -> str:
        return UP if self.higher_better else DOWN

    @property
    def header(self) -> str:
        return f"{self.label} {self.arrow}"

    def rank_value(self, value: float) -> float:
        """A number where larger is better, so that every metric ranks methods the same way."""
        if self.by_magnitude:
            return -abs(value)
        return value if self.higher_better else -value


#: Older records' signed sanity score: read, but its best is the value closest to 0 (a map that
#: anti-correlates with its trained self is no better than one that does not correlate at all).
LEGACY_SANITY = Metric("sanity_similarity", "Sanity similarity", 3, higher_better=False, extended=True,
                       flag_column="sanity_pass", flag_note=SANITY_NOTE, by_magnitude=True, average="mean")


def metrics_for(layer: str, keys: Sequence[str] = METRIC_KEYS) -> list[Metric]:
    att_label = "ATT-COS (aligned layer)" if layer == AUTO_LAYER else f"ATT-COS ({layer})"
    known = {
        "cl": Metric("cl", "CL", 2, per_model=True),
        "cam-cos": Metric("cam_cos", "CAM-COS", 3),
        "att-cos": Metric(f"att_cos_{layer}", att_label, 3, per_model=True),
        "deletion": Metric("deletion_auc", "Deletion AUC", 3, higher_better=False, extended=True, average="mean"),
        "insertion": Metric("insertion_auc", "Insertion AUC", 3, extended=True, average="mean"),
        "road": Metric("road", "ROAD", 3, extended=True, average="mean"),
        # mean |Spearman rho| between the trained and the fully randomised model's maps: 0 is best.
        "sanity": Metric("sanity_rho_final", "Sanity |ρ| (random model)", 3, higher_better=False, extended=True,
                         by_magnitude=True, legacy="sanity_similarity", average="mean"),
        # normalised area under the mean-|rho| curve over the cascade steps: 0 is best.
        "sanity-auc": Metric("sanity_auc", "Sanity |ρ| AUC", 3, higher_better=False, extended=True,
                             by_magnitude=True, average="mean"),
        "pointing": Metric("pointing", "Pointing", 3, extended=True),
        "mass": Metric("relevance_mass", "Relevance mass", 3, extended=True),
        "rank": Metric("relevance_rank", "Relevance rank", 3, extended=True),
        # --eval interventions (docs/interventions.md): does the decision use the AUs?
        "au-agreement": Metric("au_importance_agreement", "AU importance agreement", 3, extended=True, average="mean"),
        "preservation": Metric("preservation", "Preservation", 3, extended=True, average="mean"),
        "au-deletion": Metric("deletion", "AU deletion check", 3, extended=True, average="mean"),
        "shortcut": Metric("shortcut_reliance", "Shortcut reliance", 3, higher_better=False, per_model=True,
                           extended=True, average="mean"),
    }
    bad = [k for k in keys if k not in known]
    if bad:
        raise UserError(f"unknown --metric {', '.join(bad)}: expected some of {', '.join(ALL_METRIC_KEYS)}")
    return [known[k] for k in dict.fromkeys(keys)]


def resolve_legacy(metrics: Sequence[Metric], columns: Sequence[str]) -> list[Metric]:
    """Swap a metric for its legacy form when the frame has only the older column."""
    have = set(columns)
    out = []
    for m in metrics:
        if m.legacy == LEGACY_SANITY.column and m.column not in have and LEGACY_SANITY.column in have:
            out.append(LEGACY_SANITY)
        else:
            out.append(m)
    return out
