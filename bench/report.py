"""``bench report``: one Markdown file that a reader can trust on its own.

It bundles the table, the figures, where the numbers came from (versions, hardware, config
hashes, selection split, data fingerprints) and what they cost (each trial's wall time), read
from the trial records, so a result is never separated from its provenance.
"""
from __future__ import annotations

import datetime as _dt
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from bench.table import DATASET_TITLES, Table, to_markdown


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _seconds(value: Any) -> str:
    return "—" if value is None else f"{float(value):.1f}"


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
             f"| hardware | {tally(hardware)} |", ""]
    configs: dict[tuple, dict] = {}
    for r in records:
        spec = r["spec"]
        row = (r.get("rows") or [{}])[0]
        key = (spec.get("profile"), row.get("config_hash") or spec.get("config_digest") or "—",
               " ".join(f"{k}={v}" for k, v in spec.get("overrides") or []) or "—",
               row.get("selection_split", "—"), row.get("data_fingerprint", "—"))
        entry = configs.setdefault(key, {"trials": 0, "datasets": set()})
        entry["trials"] += 1
        entry["datasets"].add(spec["dataset"])
    lines += ["| profile | config hash | overrides | selection split | data fingerprint | datasets | trials |",
              "|:---|:---|:---|:---|:---|:---|---:|"]
    for (profile, digest, overrides, split, fingerprint), entry in sorted(configs.items(), key=lambda kv: str(kv[0])):
        datasets = ", ".join(DATASET_TITLES.get(d, d) for d in sorted(entry["datasets"]))
        lines.append(f"| {_md(profile)} | `{digest}` | {_md(overrides)} | {_md(split)} | `{fingerprint}` | "
                     f"{datasets} | {entry['trials']} |")
    if any(key[3] == "test" for key in configs):
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


def figures_section(run_dirs: Sequence[Path], out_dir: Path, report_dir: Path) -> list[str]:
    from bench.errors import UserError
    from bench.figures import write_figures

    lines = ["## Figures", ""]
    try:
        paths = write_figures(run_dirs, out_dir)
    except UserError as exc:
        return lines + [f"No figures: {exc}", ""]
    for path in paths:
        name = path.stem
        kind = ("Per-class average attention and CAM, w/o vs w/ AU" if name.startswith("averages-")
                else "Gallery of test faces")
        lines += [f"**{kind}** (`{path.name}`)", "", f"![{name}]({os.path.relpath(path, report_dir)})", ""]
    return lines


def render_report(run_dirs: Sequence[Path], table: Table, records: Sequence[dict], figure_lines: list[str]) -> str:
    ok = sum(r["status"] == "ok" for r in records)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# Report: {', '.join(d.name for d in run_dirs)}", "",
             f"{len(records)} trials ({ok} finished, {len(records) - ok} failed) from "
             f"{', '.join(f'`{d}`' for d in run_dirs)}; written {now}.", "",
             "## Results", "", to_markdown(table).rstrip("\n"), ""]
    return "\n".join(lines + figure_lines + provenance_section(records) + wall_times_section(records))


def write_report(run_dirs: Sequence[Path], table: Table, path: Path, with_figures: bool = True) -> Path:
    from bench.store import RunStore, atomic_write_text

    records = [r for d in run_dirs for r in RunStore(d).records()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figure_lines = figures_section(run_dirs, path.parent / "figures", path.parent) if with_figures else []
    atomic_write_text(path, render_report(run_dirs, table, records, figure_lines))
    return path
