"""Fig. 1 of the paper as PNGs, from the maps each trial saved during evaluation (no second pass).

- ``averages-<dataset>-<method>.png``: per class (columns), the average AU map, then the average
  layer attention and the average CAM over the test set, w/o AU and w/ AU (rows). Several seeds
  are pooled: class means are weighted by their sample counts.
- ``gallery-<dataset>-cam.png`` / ``gallery-<dataset>-attention.png``: a few test faces (rows)
  with their AU map, then each method's CAM (or attention) w/o and w/ AU overlaid, side by side.
- ``curves-<dataset>.png`` (trials evaluated with ``--eval extended`` only): the deletion and
  insertion curves, mean target-class confidence against the fraction of pixels removed or
  inserted in CAM order, one colour per method, dashed w/o AU and solid w/ AU, averaged over seeds.
- ``sanity-<dataset>.png`` (``--eval extended`` too): the model-randomisation cascade, mean |Spearman
  rho| of each method's CAMs per step, the curve that ``sanity_rho_final`` and ``sanity_auc`` summarise.

Matplotlib's object API with the Agg canvas: no global backend, no display needed. Sizes are
fixed in inches at ``DPI``, so a figure's pixel size follows from its grid (see ``grid_size``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from bench.errors import UserError
from bench.files import atomic_write

DPI = 100
PANEL = 1.2          # inches per map
LABEL_W = 1.3        # inches for the row labels
HEADER_H = 0.45      # inches for the column headers
TITLE_H = 0.4        # inches for the figure title
NEUTRAL_NAME = "Neutral"
CURVES = (("deletion_curve", "Deletion (lower is better)", "fraction of pixels removed"),
          ("insertion_curve", "Insertion (higher is better)", "fraction of pixels inserted"))
CURVES_SIZE = (11.0, 4.2)   # inches: two panels and a legend
SANITY_SIZE = (8.0, 4.2)    # inches: one panel and a legend


@dataclass
class TrialMaps:
    run: str
    trial_id: str
    method: str
    title: str
    family: str
    dataset: str
    au: bool
    seed: int
    layer: str
    arrays: dict[str, np.ndarray]

    def get(self, what: str) -> np.ndarray | None:
        return self.arrays.get(f"{self.method}.{what}")

    def attention(self, layer: str | None = None) -> tuple[str, np.ndarray] | None:
        """(layer, (C, S, S) class means) of the requested layer or the method's alignment layer."""
        layers = [str(x) for x in self.get("layers")] if self.get("layers") is not None else []
        name = layer or self.layer
        if name not in layers:
            return None
        return name, self.get("att_mean")[layers.index(name)].astype(np.float64)

    def gallery_attention(self, layer: str | None = None) -> np.ndarray | None:
        layers = [str(x) for x in self.get("layers")] if self.get("layers") is not None else []
        name = layer or self.layer
        return None if name not in layers else self.get("gallery_att")[:, layers.index(name)].astype(np.float64)


def collect(run_dirs: Sequence[Path], methods: Sequence[str] = (), datasets: Sequence[str] = (),
            selection=None) -> list[TrialMaps]:
    """Every (finished trial, evaluated method) that has saved maps, filtered by method and dataset.

    ``selection`` (``bench.store.settings.Selection``) keeps only the trials of the chosen settings.
    """
    from bench.store.records import RunStore

    out, seen_methods, seen_datasets = [], set(), set()
    for run_dir in run_dirs:
        store = RunStore(run_dir)
        for record in store.records():
            if record["status"] != "ok" or (selection is not None and not selection.keeps(run_dir.name, record["id"])):
                continue
            spec = record["spec"]
            for row in record["rows"]:
                seen_methods.add(row["method"])
                seen_datasets.add(spec["dataset"])
            if (datasets and spec["dataset"] not in datasets) or not any(
                    not methods or row["method"] in methods for row in record["rows"]):
                continue
            arrays = store.read_maps(record["id"])
            if arrays is None:
                continue
            for row in record["rows"]:
                if (methods and row["method"] not in methods) or (row.get("status") or "ok") != "ok":
                    continue
                if f"{row['method']}.att_mean" not in arrays:
                    continue
                layer = (row.get("alignment_layers") or "layer5").split(",")[0]
                out.append(TrialMaps(run_dir.name, record["id"], row["method"], row.get("title") or row["method"],
                                     row.get("family") or "other", spec["dataset"], bool(spec["au"]),
                                     int(spec["seed"]), layer, arrays))
    where = "run " + ", ".join(d.name for d in run_dirs)
    for flag, wanted, seen in (("--methods", methods, seen_methods), ("--datasets", datasets, seen_datasets)):
        bad = [w for w in wanted if w not in seen]
        if bad:
            raise UserError(f"{flag}: {', '.join(map(repr, bad))} not in {where} (there: {', '.join(sorted(seen)) or 'nothing'})")
    return out


def pooled_class_means(means: Sequence[np.ndarray], counts: Sequence[np.ndarray]) -> np.ndarray:
    """Pool per-class means (C, S, S) of several trials, weighting each class by its sample count."""
    total = np.zeros_like(np.asarray(means[0], dtype=np.float64))
    weight = np.zeros(total.shape[0])
    for mean, count in zip(means, counts):
        mean = np.nan_to_num(np.asarray(mean, dtype=np.float64))
        count = np.asarray(count, dtype=np.float64)
        total += mean * count[:, None, None]
        weight += count
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight[:, None, None] > 0, total / np.maximum(weight, 1)[:, None, None], np.nan)


def grid_size(rows: int, cols: int) -> tuple[int, int]:
    """Pixel (width, height) of a figure with this grid of panels."""
    return round((LABEL_W + cols * PANEL) * DPI), round((TITLE_H + HEADER_H + rows * PANEL) * DPI)


def _grid(rows: int, cols: int, title: str, col_labels: Sequence[str], row_labels: Sequence[str]):
    from matplotlib.figure import Figure

    width, height = LABEL_W + cols * PANEL, TITLE_H + HEADER_H + rows * PANEL
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.text(0.5, 1 - TITLE_H / 2 / height, title, ha="center", va="center", fontsize=10)
    axes = []
    for r in range(rows):
        line = []
        for c in range(cols):
            left = (LABEL_W + c * PANEL) / width
            bottom = (rows - r - 1) * PANEL / height
            ax = fig.add_axes((left + 0.02 * PANEL / width, bottom + 0.02 * PANEL / height,
                               0.96 * PANEL / width, 0.96 * PANEL / height))
            ax.set_axis_off()
            line.append(ax)
        axes.append(line)
        fig.text(0.02, ((rows - r - 0.5) * PANEL) / height, row_labels[r], ha="left", va="center", fontsize=8)
    for c, label in enumerate(col_labels):
        fig.text((LABEL_W + (c + 0.5) * PANEL) / width, (rows * PANEL + HEADER_H / 2) / height, label,
                 ha="center", va="center", fontsize=7, wrap=True)
    return fig, axes


def _show_map(ax, data: np.ndarray | None) -> None:
    if data is None or not np.isfinite(data).any():
        ax.text(0.5, 0.5, "—", ha="center", va="center", transform=ax.transAxes)
        return
    ax.imshow(np.nan_to_num(data), cmap="jet", interpolation="bilinear")


def _overlay(ax, image: np.ndarray, data: np.ndarray | None) -> None:
    h, w = image.shape[:2]
    ax.imshow(image, extent=(0, w, h, 0), interpolation="bilinear")
    if data is not None and np.isfinite(data).any():
        ax.imshow(np.nan_to_num(data), cmap="jet", alpha=0.5, extent=(0, w, h, 0), interpolation="bilinear",
                  vmin=0.0, vmax=max(float(np.nanmax(data)), 1e-8))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)


def _save(fig, path: Path) -> Path:
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI))
    return path


def _classes(trials: Sequence[TrialMaps]) -> tuple[list[str], list[int]]:
    names = [str(x) for x in trials[0].arrays["class_names"]]
    keep = [i for i, n in enumerate(names) if n != NEUTRAL_NAME]
    return names, keep


def averages_figure(trials: Sequence[TrialMaps], path: Path, layer: str | None = None) -> Path:
    """One method on one dataset: AU map, attention and CAM class averages, w/o vs w/ AU."""
    names, keep = _classes(trials)
    first = trials[0]
    rows: list[tuple[str, np.ndarray | None]] = []
    rows.append(("AU map", pooled_class_means([t.arrays["au_mean"] for t in trials],
                                              [t.arrays["au_count"] for t in trials])))
    used_layer = layer or first.layer
    has_cam = any(t.get("cam_mean") is not None for t in trials)
    for au in (False, True):
        side = [t for t in trials if t.au == au]
        label = "w/ AU" if au else "w/o AU"
        att = [(t.attention(layer), t.get("count")) for t in side]
        att = [(a[1], c) for a, c in att if a is not None]
        rows.append((f"attention {used_layer}\n{label}", pooled_class_means(*zip(*att)) if att else None))
        if has_cam:
            cams = [(t.get("cam_mean"), t.get("count")) for t in side if t.get("cam_mean") is not None]
            rows.append((f"CAM\n{label}", pooled_class_means(*zip(*cams)) if cams else None))
    seeds = sorted({t.seed for t in trials})
    title = (f"{first.title} on {first.dataset}: per-class averages over the test set "
             f"(seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})")
    fig, axes = _grid(len(rows), len(keep), title, [names[i] for i in keep], [r[0] for r in rows])
    for r, (_, data) in enumerate(rows):
        for c, k in enumerate(keep):
            _show_map(axes[r][c], None if data is None else data[k])
    return _save(fig, path)


def gallery_figure(trials: Sequence[TrialMaps], path: Path, kind: str, layer: str | None = None) -> Path | None:
    """A few test faces (rows): image + AU map, then each method's CAM or attention, w/o and w/ AU."""
    seed = min(t.seed for t in trials)
    chosen = [t for t in trials if t.seed == seed]
    base = chosen[0].arrays
    index = base["gallery_index"]
    if len(index) == 0:
        return None
    same = [t for t in chosen if np.array_equal(t.arrays["gallery_index"], index)
            and t.arrays["gallery_image"].shape == base["gallery_image"].shape]
    if len(same) < len(chosen):
        warnings.warn(f"{len(chosen) - len(same)} trial(s) on {chosen[0].dataset} have other gallery faces; left out")
    columns: list[tuple[str, TrialMaps | None]] = []
    order: dict[str, int] = {}
    for t in same:
        order.setdefault(t.method, len(order))
    for method in order:
        for au in (False, True):
            hit = next((t for t in same if t.method == method and t.au == au), None)
            if hit is not None and (kind == "attention" or hit.get("gallery_cam") is not None):
                columns.append((f"{hit.title}\n{'w/ AU' if au else 'w/o AU'}", hit))
    if not columns:
        return None
    names = [str(x) for x in base["class_names"]]
    images, labels, au_maps = base["gallery_image"], base["gallery_label"], base["gallery_au"].astype(np.float64)
    what = f"attention ({layer or 'alignment layer'})" if kind == "attention" else "CAM (true class)"
    title = f"{chosen[0].dataset}, seed {seed}: test faces, AU map and {what}"
    col_labels = ["face", "AU map", *(c[0] for c in columns)]
    fig, axes = _grid(len(index), len(col_labels), title, col_labels, [names[int(l)] for l in labels])
    for r in range(len(index)):
        axes[r][0].imshow(images[r], interpolation="bilinear")
        _overlay(axes[r][1], images[r], au_maps[r])
        for c, (_, t) in enumerate(columns, start=2):
            data = t.gallery_attention(layer) if kind == "attention" else t.get("gallery_cam")
            _overlay(axes[r][c], images[r], None if data is None else data[r].astype(np.float64))
    return _save(fig, path)


def _mean_curves(trials: Sequence[TrialMaps], key: str) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(fractions, mean curve over seeds, seeds) of trials whose curves share one fraction grid."""
    have = [t for t in trials if t.get(key) is not None and "curve_fractions" in t.arrays]
    if not have:
        return None
    fractions = np.asarray(have[0].arrays["curve_fractions"], dtype=np.float64)
    same = [t for t in have if np.array_equal(np.asarray(t.arrays["curve_fractions"], dtype=np.float64), fractions)
            and t.get(key).shape == fractions.shape]
    if len(same) < len(have):
        warnings.warn(f"{len(have) - len(same)} {trials[0].title} trial(s) on {trials[0].dataset} have {key} on "
                      "another fraction grid; left out")
    return fractions, np.mean([t.get(key).astype(np.float64) for t in same], axis=0), len(same)


def curves_figure(trials: Sequence[TrialMaps], path: Path) -> Path | None:
    """Deletion and insertion curves of every method on one dataset, w/o (dashed) vs w/ AU (solid);
    None when no trial has curves (they come only from ``bench run --eval extended``)."""
    if not any(t.get(key) is not None for t in trials for key, _, _ in CURVES):
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=CURVES_SIZE, dpi=DPI)
    axes = fig.subplots(1, 2)
    colours = {}
    seeds = sorted({t.seed for t in trials})
    for ax, (key, title, xlabel) in zip(axes, CURVES):
        for method in dict.fromkeys(t.method for t in trials):
            for au in (False, True):
                side = [t for t in trials if t.method == method and t.au == au]
                curve = _mean_curves(side, key) if side else None
                if curve is None:
                    continue
                fractions, mean, n = curve
                colour = colours.setdefault(method, f"C{len(colours) % 10}")
                ax.plot(fractions, mean, color=colour, linestyle="-" if au else "--", linewidth=1.4,
                        label=f"{side[0].title} {'w/ AU' if au else 'w/o AU'}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel("mean target-class confidence", fontsize=9)
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    for h, l in zip(*axes[1].get_legend_handles_labels()):
        if l not in labels:
            handles.append(h)
            labels.append(l)
    fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False)
    fig.suptitle(f"{trials[0].dataset}: deletion and insertion curves (mean over "
                 f"seed{'s' * (len(seeds) != 1)} {', '.join(map(str, seeds))})", fontsize=10)
    fig.subplots_adjust(left=0.07, right=0.78, bottom=0.14, top=0.84, wspace=0.3)
    return _save(fig, path)


def _mean_sanity(side: Sequence[TrialMaps]) -> tuple[list[str], np.ndarray, int] | None:
    """(cascade step names, mean |rho| per step over seeds, seeds) of trials that share one cascade."""
    have = [t for t in side if t.get("sanity_abs_rho") is not None and t.get("sanity_steps") is not None]
    if not have:
        return None
    steps = [str(x) for x in have[0].get("sanity_steps")]
    same = [t for t in have if [str(x) for x in t.get("sanity_steps")] == steps]
    return steps, np.mean([t.get("sanity_abs_rho").astype(np.float64) for t in same], axis=0), len(same)


def sanity_figure(trials: Sequence[TrialMaps], path: Path) -> Path | None:
    """Mean |Spearman rho| between the trained and the randomised model's CAMs at each cascade step
    (top layers first), one colour per method, dashed w/o AU and solid w/ AU; the headline sanity
    scores summarise these curves (its last point, its area). None without cascade curves."""
    if not any(t.get("sanity_abs_rho") is not None for t in trials):
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=SANITY_SIZE, dpi=DPI)
    ax = fig.subplots(1, 1)
    colours, names = {}, None
    for method in dict.fromkeys(t.method for t in trials):
        for au in (False, True):
            side = [t for t in trials if t.method == method and t.au == au]
            curve = _mean_sanity(side) if side else None
            if curve is None:
                continue
            steps, mean, _ = curve
            names = names or steps
            colour = colours.setdefault(method, f"C{len(colours) % 10}")
            ax.plot(range(len(mean)), mean, color=colour, linestyle="-" if au else "--", marker="o", markersize=3,
                    linewidth=1.4, label=f"{side[0].title} {'w/ AU' if au else 'w/o AU'}")
    ax.set_xticks(range(len(names or [])))
    ax.set_xticklabels(names or [], rotation=30, ha="right", fontsize=7)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("randomised from the top, cumulatively", fontsize=9)
    ax.set_ylabel("mean |Spearman ρ| (0 is best)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.tick_params(axis="y", labelsize=8)
    fig.legend(*ax.get_legend_handles_labels(), loc="center right", fontsize=7, frameon=False)
    fig.suptitle(f"{trials[0].dataset}: model-randomisation sanity check", fontsize=10)
    fig.subplots_adjust(left=0.1, right=0.72, bottom=0.25, top=0.88)
    return _save(fig, path)


def write_figures(run_dirs: Sequence[Path], out_dir: Path, *, methods: Sequence[str] = (),
                  datasets: Sequence[str] = (), layer: str | None = None, selection=None) -> list[Path]:
    """All figures of the given runs (the trials ``selection`` keeps) into ``out_dir``; returns the PNG paths."""
    trials = collect(run_dirs, methods, datasets, selection)
    if not trials:
        raise UserError(f"no saved maps in run {', '.join(d.name for d in run_dirs)}: "
                        "figures need trials finished by this version of bench run (results/<run>/maps/)")
    if layer is not None and all(t.attention(layer) is None for t in trials):
        have = sorted({str(x) for t in trials for x in t.get("layers")})
        raise UserError(f"bad --layer {layer!r}: no saved attention for it (layers: {', '.join(have)})")
    paths = []
    for dataset in sorted({t.dataset for t in trials}):
        on_ds = [t for t in trials if t.dataset == dataset]
        for method in dict.fromkeys(t.method for t in on_ds):
            paths.append(averages_figure([t for t in on_ds if t.method == method],
                                         out_dir / f"averages-{dataset}-{method}.png", layer))
        for kind in ("cam", "attention"):
            path = gallery_figure(on_ds, out_dir / f"gallery-{dataset}-{kind}.png", kind, layer)
            if path is not None:
                paths.append(path)
        for figure, name in ((curves_figure, "curves"), (sanity_figure, "sanity")):
            path = figure(on_ds, out_dir / f"{name}-{dataset}.png")
            if path is not None:
                paths.append(path)
        for method in dict.fromkeys(t.method for t in on_ds):
            path = interventions_figure([t for t in on_ds if t.method == method],
                                        out_dir / f"interventions-{dataset}-{method}.png")
            if path is not None:
                paths.append(path)
    return paths


def interventions_figure(trials: Sequence[TrialMaps], path: Path) -> Path | None:
    """Per class, each AU unit's ground-truth importance next to the CAM's mass on it, w/o and w/ AU, for one
    method (``--eval interventions``; the first seed of each AU mode); None when nothing was evaluated so."""
    import json

    from bench.reporting.intervention_figure import intervention_figure, shares_from_faces

    shares, units, names = {}, None, None
    for au, variant in ((False, "w/o AU"), (True, "w/ AU")):
        found = sorted((t for t in trials if t.au == au and t.get("int_face_unit_drop_logit") is not None),
                       key=lambda t: t.seed)
        if not found:
            continue
        t = found[0]
        names = [str(x) for x in t.arrays["class_names"]]
        units = json.loads(str(t.get("int_units")[0]))
        faces = {key: t.get(f"int_face_{key}") for key in ("label", "unit_drop_logit", "unit_cam_mass")}
        shares[variant] = shares_from_faces(faces, len(names))
    if not shares:
        return None
    return intervention_figure(path, trials[0].title, names, units, shares)
