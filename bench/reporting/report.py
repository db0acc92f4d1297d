"""``bench report``: one Markdown file that a reader can trust on its own.

It bundles the tables, the figures, what the numbers were computed on (split sizes, faces
without landmarks, dropped labels, skipped images), where they came from (versions, hardware,
settings, config hashes, selection split, data fingerprints) and what they cost (each trial's wall
time), read from the trial records, so a result is never separated from its provenance.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from bench.reporting.metrics import DATASET_TITLES, MISSING
from bench.reporting.render.markdown import to_markdown
from bench.reporting.table import Table

#: Skipped image paths listed per split before "and N more".
SHOWN_PATHS = 5
SPLITS = ("train", "val", "test")


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _seconds(value: Any) -> str:
    return "—" if value is None else f"{float(value):.1f}"


def _plugin_of(record: dict, row: dict) -> str | None:
    """``distribution==version`` of a row's method: the row's own label, else the evaluation identity's."""
    if row.get("plugin"):
        return str(row["plugin"])
    origin = (record.get("identity") or {}).get("plugin")
    if isinstance(origin, dict) and origin.get("distribution"):
        return f"{origin['distribution']}=={origin.get('version', '?')}"
    return None


def plugins_cell(records: Sequence[dict]) -> str:
    """Each evaluated method with the distribution and version of its plugin (``cam: au-cam-bench==0.1``);
    a method evaluated with several versions lists each with its count of results."""
    by_method: dict[str, Counter] = {}
    for r in records:
        rows = r.get("rows") or [{"method": name} for name in (r.get("spec") or {}).get("evaluate") or []]
        for row in rows:
            label = _plugin_of(r, row)
            if row.get("method") and label:
                by_method.setdefault(str(row["method"]), Counter())[label] += 1
    if not by_method:
        return "—"
    parts = []
    for method in sorted(by_method):
        counts = by_method[method]
        if len(counts) == 1:
            parts.append(f"{method}: {next(iter(counts))}")
        else:
            parts.append(f"{method}: " + ", ".join(f"{v} ({_count(n, 'result')})" for v, n in counts.most_common()))
    return _md("; ".join(parts))


def provenance_section(records: Sequence[dict]) -> list[str]:
    """Distinct provenance values over all trials (a mixed run shows every variant with its count)."""
    def tally(values) -> str:
        counts = Counter(v for v in values if v not in (None, ""))
        if not counts:
            return "—"
        if len(counts) == 1:
            return _md(next(iter(counts)))
        return "; ".join(f"{_md(v)} ({n} trials)" for v, n in counts.most_common())

    prov = [r.get("provenance") or {} for r in records]
    revisions = [f"{p.get('git_revision') or 'unknown'}{' (uncommitted changes)' if p.get('git_dirty') else ''}"
                 for p in prov if p]
    packages = [", ".join(f"{k} {v}" for k, v in sorted((p.get("versions") or {}).items()) if v) for p in prov]
    hardware = []
    for p in prov:
        hw = p.get("hardware") or {}
        if hw or p.get("device"):
            hardware.append(f"{hw.get('machine', '?')}, {hw.get('cpu_threads', '?')} CPU threads, "
                            f"GPU: {hw.get('cuda') or 'none'}, device: {p.get('device', '?')}")
    lines = ["## Provenance", "", "| what | value |", "|:---|:---|",
             f"| git revision | {tally(revisions)} |",
             f"| python | {tally(p.get('python') for p in prov)} |",
             f"| packages | {tally(packages)} |",
             f"| method plugins | {plugins_cell(records)} |",
             f"| hardware | {tally(hardware)} |", ""]
    from bench.store.settings import setting_of

    configs: dict[tuple, dict] = {}
    for r in records:
        spec = r["spec"]
        row = (r.get("rows") or [{}])[0]
        key = (setting_of(r)[:12], spec.get("profile"), row.get("config_hash") or spec.get("config_digest") or "—",
               " ".join(f"{k}={v}" for k, v in spec.get("overrides") or []) or "—",
               row.get("selection_split", "—"), row.get("data_fingerprint", "—"))
        entry = configs.setdefault(key, {"trials": 0, "datasets": set()})
        entry["trials"] += 1
        entry["datasets"].add(spec["dataset"])
    lines += ["| setting | profile | config hash | overrides | selection split | data fingerprint | datasets | trials |",
              "|:---|:---|:---|:---|:---|:---|:---|---:|"]
    for (setting, profile, digest, overrides, split, fingerprint), entry in sorted(configs.items(), key=lambda kv: str(kv[0])):
        datasets = ", ".join(DATASET_TITLES.get(d, d) for d in sorted(entry["datasets"]))
        lines.append(f"| `{setting}` | {_md(profile)} | `{digest}` | {_md(overrides)} | {_md(split)} | `{fingerprint}` | "
                     f"{datasets} | {entry['trials']} |")
    if any(key[4] == "test" for key in configs):
        lines += ["", "Some models were selected on the test split: their test numbers are optimistic."]
    return lines + [""]


def wall_times_section(records: Sequence[dict]) -> list[str]:
    lines = ["## Wall times", "",
             "| trial | methods | dataset | AU | seed | status | train s | eval s | total s | best epoch |",
             "|:---|:---|:---|:---|---:|:---|---:|---:|---:|---:|"]
    totals = Counter()
    for r in sorted(records, key=lambda r: (r["spec"]["dataset"], r["spec"]["method"], r["spec"]["seed"], r["spec"]["au"])):
        spec, t = r["spec"], r.get("timings") or {}
        for k in ("train_seconds", "eval_seconds", "total_seconds"):
            totals[k] += float(t.get(k) or 0.0)
        best = (r.get("rows") or [{}])[0].get("best_epoch", "—")
        lines.append(f"| `{r['id']}` | {', '.join(spec['evaluate'])} | {DATASET_TITLES.get(spec['dataset'], spec['dataset'])} "
                     f"| {'w/' if spec['au'] else 'w/o'} | {spec['seed']} | {r['status']} | "
                     f"{_seconds(t.get('train_seconds'))} | {_seconds(t.get('eval_seconds'))} | "
                     f"{_seconds(t.get('total_seconds'))} | {best} |")
    lines.append(f"| **all {len(records)} trials** | | | | | | {totals['train_seconds']:.1f} | "
                 f"{totals['eval_seconds']:.1f} | {totals['total_seconds']:.1f} | |")
    return lines + [""]


def figures_section(run_dirs: Sequence[Path], out_dir: Path, report_dir: Path, selection=None) -> list[str]:
    from bench.errors import UserError
    from bench.reporting.figures import write_figures

    lines = ["## Figures", ""]
    try:
        paths = write_figures(run_dirs, out_dir, selection=selection)
    except UserError as exc:
        return lines + [f"No figures: {exc}", ""]
    kinds = {"averages-": "Per-class average attention and CAM, w/o vs w/ AU",
             "gallery-": "Gallery of test faces",
             "curves-": "Deletion and insertion curves (mean target-class confidence), w/o vs w/ AU",
             "sanity-": "Model-randomisation cascade: mean |Spearman ρ| per step, w/o vs w/ AU"}
    for path in paths:
        name = path.stem
        kind = next((text for prefix, text in kinds.items() if name.startswith(prefix)), name)
        lines += [f"**{kind}** (`{path.name}`)", "", f"![{name}]({os.path.relpath(path, report_dir)})", ""]
    return lines


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def counts_line(records: Sequence[dict]) -> str:
    """Trials and results (one per evaluated method) counted the way the table counts them."""
    trials_failed = sum(r["status"] != "ok" for r in records)
    rows_in_failed = sum(len(r["spec"].get("evaluate") or []) for r in records if r["status"] != "ok")
    ok_rows = [row for r in records if r["status"] == "ok" for row in r.get("rows") or []]
    extractors_failed = sum((row.get("status") or "ok") != "ok" for row in ok_rows)
    rows = len(ok_rows) + rows_in_failed
    failed = rows_in_failed + extractors_failed
    text = (f"{_count(len(records), 'trial')} ({len(records) - trials_failed} finished, {trials_failed} failed); "
            f"{_count(rows, 'result')}, one per evaluated method ({rows - failed} ok, {failed} failed")
    parts = []
    if rows_in_failed:
        parts.append(f"{rows_in_failed} in {_count(trials_failed, 'failed trial')}")
    if extractors_failed:
        parts.append(f"{_count(extractors_failed, 'failed extractor')} in finished trials")
    return text + (": " + ", ".join(parts) if parts else "") + ")"


def _by_split(values: Any, split: str) -> str:
    if not isinstance(values, dict) or values.get(split) is None:
        return MISSING
    return _md(values[split])


def _dropped(dropped: Any) -> str:
    if not isinstance(dropped, dict) or not dropped:
        return MISSING
    parts = []
    for split in SPLITS:
        codes = dropped.get(split)
        if isinstance(codes, dict):
            inner = ", ".join(f"code {_md(code)}: {_md(n)}" for code, n in sorted(codes.items(), key=lambda kv: str(kv[0])))
            parts.append(f"{split}: {inner or 'none'}")
    return "; ".join(parts) or MISSING


def _skipped_paths(data: dict) -> list[str]:
    lines = []
    paths = data.get("skipped_paths") if isinstance(data.get("skipped_paths"), dict) else {}
    counts = data.get("skipped") if isinstance(data.get("skipped"), dict) else {}
    for split in SPLITS:
        listed = list(paths.get(split) or [])
        total = max(int(counts.get(split) or 0), len(listed))
        if not total:
            continue
        shown = ", ".join(f"`{_md(p)}`" for p in listed[:SHOWN_PATHS])
        more = total - min(len(listed), SHOWN_PATHS)
        text = shown + (f", and {more} more" if shown and more else "") if shown else f"{total} (paths not recorded)"
        lines.append(f"- Skipped images, {split}: {text}")
    return lines


def _coverage(records: Sequence[dict]) -> str:
    """AU coverage as recorded; w/o AU trials may not compute it, so differing values are shown per AU mode."""
    def text(value: Any) -> str:
        return MISSING if value is None else f"{float(value):.3f}"

    by_au: dict[bool, list[str]] = {}
    for r in records:
        value = text(r["data"].get("au_coverage"))
        by_au.setdefault(bool(r["spec"]["au"]), [])
        if value not in by_au[bool(r["spec"]["au"])]:
            by_au[bool(r["spec"]["au"])].append(value)
    values = {v for vs in by_au.values() for v in vs}
    if len(values) == 1:
        return values.pop()
    return ", ".join(f"{'w/ AU' if au else 'w/o AU'}: {' / '.join(by_au[au])}" for au in sorted(by_au))


def _data_lines(data: dict, coverage: str) -> list[str]:
    lines = ["| split | images | without valid landmarks | skipped (unreadable) | placement |",
             "|:---|---:|---:|---:|:---|"]
    for split in SPLITS:
        lines.append(f"| {split} | {_by_split(data.get('counts'), split)} | "
                     f"{_by_split(data.get('without_landmarks'), split)} | {_by_split(data.get('skipped'), split)} | "
                     f"{_by_split(data.get('placement'), split)} |")
    lines += ["",
              f"- Data root: {_md(data.get('data_root') or 'none (generated)')}",
              f"- Landmarks: {_md(data.get('landmark_source') or MISSING)}"
              + (f" (digest `{_md(data['landmark_digest'])}`)" if data.get("landmark_digest") else ""),
              f"- AU coverage: {coverage}",
              f"- Dropped labels (dataset codes): {_dropped(data.get('dropped_labels'))}",
              *_skipped_paths(data)]
    return lines


def data_section(records: Sequence[dict]) -> list[str]:
    """Per dataset, the records' ``data`` section; trials that disagree are shown as variants."""
    lines = ["## Data", ""]
    by_dataset: dict[str, list[dict]] = {}
    for r in records:
        by_dataset.setdefault(r["spec"]["dataset"], []).append(r)
    for dataset in sorted(by_dataset):
        recs = by_dataset[dataset]
        lines += [f"### {DATASET_TITLES.get(dataset, dataset)}", ""]
        with_data = [r for r in recs if isinstance(r.get("data"), dict) and r["data"]]
        if len(with_data) < len(recs):
            missing = len(recs) - len(with_data)
            lines += [f"{missing} of {_count(len(recs), 'trial')} {'has' if missing == 1 else 'have'} no data section "
                      "(failed before loading the data, or written before bench recorded it).", ""]
        variants: dict[str, list[dict]] = {}
        for r in with_data:
            key = {k: v for k, v in r["data"].items() if k != "au_coverage"}
            variants.setdefault(json.dumps(key, sort_keys=True, default=str), []).append(r)
        for i, group in enumerate(variants.values(), start=1):
            if len(variants) > 1:
                seeds = sorted({r["spec"]["seed"] for r in group})
                modes = " and ".join(("w/ AU" if au else "w/o AU") for au in sorted({bool(r["spec"]["au"]) for r in group}))
                lines += [f"**Variant {i} of {len(variants)}** ({_count(len(group), 'trial')}: {modes}, "
                          f"seed{'s' * (len(seeds) != 1)} {', '.join(map(str, seeds))}):", ""]
            lines += _data_lines(group[0]["data"], _coverage(group)) + [""]
    return lines


def render_report(run_dirs: Sequence[Path], table: Table, records: Sequence[dict], figure_lines: list[str],
                  extended: Table | None = None, settings: Sequence[str] = (), *, agreement: Table | None = None,
                  faces=None) -> str:
    """``agreement``: a table of every metric present (for Kendall's τ between their rankings);
    ``faces``: the per-face source (``bench.reporting.table.FaceSource``) for the faces that flip."""
    from bench.reporting.agreement import agreement_section, flips_section

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    shown = f" Settings shown: {'; '.join(settings)}." if settings else ""
    lines = [f"# Report: {', '.join(d.name for d in run_dirs)}", "",
             f"{counts_line(records)} from {', '.join(f'`{d}`' for d in run_dirs)}; written {now}.{shown}", "",
             "## Results", "", to_markdown(table).rstrip("\n"), ""]
    if extended is not None:
        lines += ["## Faithfulness and sanity (`--eval extended`)", "", to_markdown(extended).rstrip("\n"), ""]
    if agreement is not None and agreement.cells:
        lines += agreement_section(agreement) + flips_section(agreement, faces)
    return "\n".join(lines + figure_lines + data_section(records) + provenance_section(records)
                     + wall_times_section(records))


def write_report(run_dirs: Sequence[Path], table: Table, path: Path, with_figures: bool = True, *,
                 extended: Table | None = None, selection=None, agreement: Table | None = None, faces=None) -> Path:
    """Write the report of the selected trials (``bench.store.settings.Selection``; None: every trial)."""
    from bench.files import atomic_write_text
    from bench.store.records import RunStore

    if selection is None:
        records = [r for d in run_dirs for r in RunStore(d).records()]
        settings: list[str] = []
    else:
        records = [r for d in run_dirs for r in selection.records(d)]
        settings = [f"run {name}: {s.label()}" for name, chosen in selection.shown.items() for s in chosen]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figure_lines = (figures_section(run_dirs, path.parent / "figures", path.parent, selection)
                        if with_figures else [])
    atomic_write_text(path, render_report(run_dirs, table, records, figure_lines, extended, settings,
                                          agreement=agreement, faces=faces))
    return path
