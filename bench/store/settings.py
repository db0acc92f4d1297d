"""The settings (profile + overrides) that one run folder holds, and which of them a report shows.

A run folder is named after the profile by default, so two ``bench run`` commands with different
``--set``/``--profile`` write into one folder. Every record carries ``setting``, a digest of the
configuration its command used; reporting shows one setting per run folder (the one asked for
with ``--config``, or else the newest) and says so, instead of mixing them or failing on the mix.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from bench.errors import UserError

#: Characters of a setting shown to the user (enough to be unique in practice, short enough to type).
SHOWN = 12


@dataclass(frozen=True)
class RunSetting:
    setting: str            # the records' ``setting`` digest
    description: str        # "demo" or "demo, train.epochs=5" (profile, then overrides)
    trials: int             # trial records with this setting (finished and failed)
    newest_mtime: float     # newest record file of this setting (seconds since the epoch)

    def label(self) -> str:
        return f"{self.setting[:SHOWN]} ({self.description}; {self.trials} trial{'s' * (self.trials != 1)})"


def setting_digest(profile: str, overrides: Iterable[Sequence[Any]]) -> str:
    """The setting of records written before records carried one: the digest ``TrialSpec.setting``
    computes from profile and overrides, so old and new records of one command group together."""
    blob = json.dumps([profile, [list(kv) for kv in overrides]], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:SHOWN]


def describe(profile: str, overrides: Iterable[Sequence[Any]]) -> str:
    """'demo' or 'demo, train.epochs=5, au.weight=9'; a profile file shows its file name."""
    name = Path(profile).name if str(profile).endswith(".toml") else str(profile)
    return ", ".join([name, *(f"{k}={v}" for k, v in overrides)])


def setting_of(record: dict) -> str:
    spec = record.get("spec") or {}
    return record.get("setting") or setting_digest(spec.get("profile", "?"), spec.get("overrides") or [])


def _description(records: Sequence[dict]) -> str:
    spec = records[0].get("spec") or {}
    text = describe(spec.get("profile", "?"), spec.get("overrides") or [])
    return text if any(r.get("setting") for r in records) else f"{text}; recorded without a setting"


def _records_with_mtime(run_dir: Path) -> list[tuple[dict, float]]:
    from bench.store.records import RunStore

    store = RunStore(run_dir)
    out = []
    for record in store.records():
        path = store.legacy_dir / f"{record['id']}.json" if record.get("legacy") else store.evaluations.path(record["id"])
        out.append((record, path.stat().st_mtime if path.is_file() else 0.0))
    return out


def _settings(records: Sequence[tuple[dict, float]]) -> list[RunSetting]:
    groups: dict[str, list[tuple[dict, float]]] = {}
    for record, mtime in records:
        groups.setdefault(setting_of(record), []).append((record, mtime))
    out = [RunSetting(key, _description([r for r, _ in group]), len(group), max(m for _, m in group))
           for key, group in groups.items()]
    return sorted(out, key=lambda s: (-s.newest_mtime, s.setting))


def settings_in_run(run_dir: Path) -> list[RunSetting]:
    """Every setting in ``run_dir``, newest first (empty for a folder without records)."""
    return _settings(_records_with_mtime(Path(run_dir)))


@dataclass(frozen=True)
class Selection:
    """Which trials of which runs a report shows; ``note`` explains an automatic choice (or is None)."""

    trial_ids: dict[str, frozenset[str]]      # run folder name -> kept trial ids
    shown: dict[str, tuple[RunSetting, ...]]  # run folder name -> the settings those trials have
    note: str | None = None

    def keeps(self, run: str, trial_id: str) -> bool:
        return trial_id in self.trial_ids.get(run, frozenset())

    def records(self, run_dir: Path) -> list[dict]:
        from bench.store.records import RunStore

        return [r for r in RunStore(run_dir).records() if self.keeps(Path(run_dir).name, r["id"])]


def _matches(record: dict, prefix: str) -> bool:
    """A setting prefix, or (as before settings existed) a config-hash prefix of the record."""
    hashes = [row.get("config_hash") for row in record.get("rows") or [] if isinstance(row, dict)]
    hashes.append((record.get("spec") or {}).get("config_digest"))
    return setting_of(record).startswith(prefix) or any(h and str(h).startswith(prefix) for h in hashes)


def select_settings(run_dirs: Sequence[Path], config: str | None = None) -> Selection:
    """Per run folder: the trials of setting ``config`` (a prefix), or of its newest setting."""
    config = (config or "").strip() or None
    kept: dict[str, frozenset[str]] = {}
    shown: dict[str, tuple[RunSetting, ...]] = {}
    auto: list[str] = []
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        records = _records_with_mtime(run_dir)
        settings = _settings(records)
        if config is not None:
            if not records:
                raise UserError(f"--config {config!r} matches no trial in run {run_dir.name} (it has no trials)")
            hits = [(r, m) for r, m in records if _matches(r, config)]
            if not hits:
                raise UserError(f"--config {config!r} matches no trial in run {run_dir.name} (settings: "
                                f"{', '.join(s.label() for s in settings)}); give a prefix of one of them")
            by_setting = [s for s in settings if s.setting.startswith(config)]
            if len(by_setting) > 1:
                raise UserError(f"--config {config!r} matches {len(by_setting)} settings in run {run_dir.name} "
                                f"({', '.join(s.label() for s in by_setting)}); give more characters")
            chosen = _settings(hits)
        elif len(settings) > 1:
            newest = settings[0]
            hits = [(r, m) for r, m in records if setting_of(r) == newest.setting]
            chosen = [newest]
            auto.append(f"run {run_dir.name} shows its newest, {newest.label()}; also there: "
                        + ", ".join(s.label() for s in settings[1:]))
        else:
            hits, chosen = records, settings
        hits, superseded = newest_per_cell(hits)
        if superseded:
            auto.append(f"run {run_dir.name}: {superseded} older record(s) of the same cells are kept on disk (each "
                        "cell gives the result of its newest model; a value its newest evaluation lacks comes from an earlier "
                        "evaluation of that model: docs/reproducibility.md)")
        kept[run_dir.name] = frozenset(r["id"] for r, _ in hits)
        shown[run_dir.name] = tuple(chosen)
    note = None
    if auto:
        several = any("shows its newest" in line for line in auto)
        note = ("; ".join(auto) if not several else
                "several settings in one run folder: " + "; ".join(auto) + ". Pick another with --config HASH.")
    return Selection(kept, shown, note)


def newest_per_cell(records: Sequence[tuple[dict, float]]) -> tuple[list[tuple[dict, float]], int]:
    """The newest record of each grid cell (setting, trained method, evaluated methods, dataset, AU, seed).

    A cell's id is a hash of its identity, so a rerun after the data, the landmarks or a plugin
    changed files a second record for the same cell; the older one describes inputs that no longer
    exist and must not be mixed into a table (or block it as a duplicate).
    """
    newest: dict[tuple, tuple[dict, float]] = {}
    for record, mtime in records:
        spec = record.get("spec") or {}
        cell = (setting_of(record), spec.get("method"), tuple(spec.get("evaluate") or ()), spec.get("dataset"),
                spec.get("au"), spec.get("seed"))
        if cell not in newest or mtime > newest[cell][1]:
            newest[cell] = (record, mtime)
    kept = list(newest.values())
    return kept, len(records) - len(kept)
