"""Do the metrics agree, and where do the AU modes differ? Two findings for ``bench report``.

- Metric agreement: for each dataset and AU mode, Kendall's τ between two metrics' rankings of
  the methods (each metric oriented so that larger is better: τ = 1 means both metrics order the
  methods the same way, −1 the reverse). Metrics that disagree are a finding in themselves.
- Faces that flip: per method and dataset, the test faces that one AU mode classifies right and
  the other wrong (one seed: the smallest both modes have), from the per-face results.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

from bench.reporting.metrics import DATASET_TITLES
from bench.reporting.table import FaceSource, Table, au_text

#: Face ids listed per direction before "…".
SHOWN_FACES = 5
#: Fewest methods for a rank correlation worth printing.
MIN_METHODS = 3


@dataclass(frozen=True)
class Agreement:
    dataset: str
    au: bool
    first: str          # metric labels
    second: str
    tau: float | None   # None: fewer than MIN_METHODS methods with both values, or a constant ranking
    p_value: float | None
    n: int


def metric_agreement(table: Table) -> list[Agreement]:
    """Kendall's τ (scipy, τ-b: ties allowed) for every pair of the table's metrics."""
    from scipy.stats import kendalltau

    out = []
    for ds in table.datasets:
        for au in (False, True):
            for a, b in combinations(table.metrics, 2):
                pairs = []
                for _, method, _ in table.rows:
                    ca, cb = table.cell(method, ds, a, au), table.cell(method, ds, b, au)
                    if ca.mean is None or cb.mean is None or ca.shared or cb.shared:
                        continue
                    pairs.append((a.rank_value(ca.mean), b.rank_value(cb.mean)))
                tau = p = None
                if len(pairs) >= MIN_METHODS:
                    result = kendalltau([x for x, _ in pairs], [y for _, y in pairs])
                    if not math.isnan(result.statistic):
                        tau, p = float(result.statistic), float(result.pvalue)
                out.append(Agreement(ds, au, a.label, b.label, tau, p, len(pairs)))
    return out


def agreement_section(table: Table) -> list[str]:
    rows = metric_agreement(table)
    lines = ["## Metric agreement", "",
             "Kendall's τ between two metrics' rankings of the methods (each metric oriented so that larger is "
             f"better; τ = 1: same order, −1: reversed; shared-model cells left out; at least {MIN_METHODS} methods).",
             ""]
    if not any(r.tau is not None for r in rows):
        return lines + [f"Not enough methods: a ranking needs {MIN_METHODS} or more methods with both metrics.", ""]
    lines += ["| dataset | AU | metrics | τ | p | methods |", "|:---|:---|:---|---:|---:|---:|"]
    for r in rows:
        tau = "—" if r.tau is None else f"{r.tau:+.2f}"
        p = "—" if r.p_value is None else f"{r.p_value:.3g}"
        lines.append(f"| {DATASET_TITLES.get(r.dataset, r.dataset)} | {au_text(r.au)} | {r.first} vs {r.second} | "
                     f"{tau} | {p} | {r.n} |")
    return lines + [""]


@dataclass(frozen=True)
class Flips:
    method: str
    title: str
    dataset: str
    seed: int
    n_faces: int
    only_without: list[int]     # right w/o AU, wrong w/ AU
    only_with: list[int]        # wrong w/o AU, right w/ AU


def face_flips(table: Table, faces: FaceSource | None) -> tuple[list[Flips], list[str]]:
    """Per method and dataset: the faces one AU mode gets right and the other wrong; and the
    (method, dataset) pairs that lack per-face results."""
    from bench.reporting.face_tests import pair_faces

    found, lacking = [], []
    for _, method, title in table.rows:
        for ds in table.datasets:
            seeds = sorted({k[3] for k in table.result_rows if k[:2] == (method, ds)})
            seeds = [s for s in seeds if (method, ds, False, s) in table.result_rows
                     and (method, ds, True, s) in table.result_rows]
            if not seeds:
                continue
            seed = seeds[0]
            wo = faces(table.result_rows[(method, ds, False, seed)]) if faces else None
            w = faces(table.result_rows[(method, ds, True, seed)]) if faces else None
            if wo is None or w is None or "pred" not in wo.columns or "pred" not in w.columns:
                lacking.append(f"{title}, {DATASET_TITLES.get(ds, ds)}")
                continue
            joined = pair_faces(wo, w, ("pred",))
            right_wo = joined["pred"] == joined["label"]
            right_w = joined["pred_w"] == joined["label"]
            found.append(Flips(method, title, ds, seed, joined.height,
                               joined.filter(right_wo & ~right_w)["face"].to_list(),
                               joined.filter(~right_wo & right_w)["face"].to_list()))
    return found, lacking


def _ids(faces: list[int]) -> str:
    shown = ", ".join(str(f) for f in faces[:SHOWN_FACES])
    return shown + (", …" if len(faces) > SHOWN_FACES else "") if faces else "—"


def flips_section(table: Table, faces: FaceSource | None) -> list[str]:
    found, lacking = face_flips(table, faces)
    lines = ["## Faces the AU modes disagree on", "",
             "Test faces classified right by one AU mode and wrong by the other (same faces, one seed; "
             f"face = index in the test split; the first {SHOWN_FACES} listed).", ""]
    if found:
        lines += ["| method | dataset | seed | faces | right only w/o AU | right only w/ AU |",
                  "|:---|:---|---:|---:|:---|:---|"]
        for f in found:
            lines.append(f"| {f.title} | {DATASET_TITLES.get(f.dataset, f.dataset)} | {f.seed} | {f.n_faces} | "
                         f"{len(f.only_without)}: {_ids(f.only_without)} | {len(f.only_with)}: {_ids(f.only_with)} |")
        lines.append("")
    if lacking:
        lines += [f"No per-face results for {'; '.join(lacking)} (evaluated before per-face records were kept).", ""]
    if not found and not lacking:
        lines += ["No method has both AU modes on a common seed.", ""]
    return lines
