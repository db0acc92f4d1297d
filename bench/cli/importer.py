"""``bench import fer-aus PATH…``: the paper's published checkpoints as kept models of a run folder.

Each checkpoint becomes ``<run>/models/imported-<sha256 of model.pt>/`` with its provenance, so
``bench eval --run R`` evaluates it like a model trained here and ``bench table`` marks its rows
"imported" (docs/import.md).
"""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from bench.errors import UserError

importer = typer.Typer(no_args_is_help=True, help="Import models trained elsewhere as kept models of a run.")


def register(app: typer.Typer) -> None:
    app.add_typer(importer, name="import")


def save_imported(run_dir: Path, imported, overrides=()) -> Path:
    """Store one imported checkpoint as a kept model (weights + model.json); ``overrides`` (``--set``)
    travel with it, so ``bench eval`` rebuilds exactly the model that was imported."""
    from datetime import datetime, timezone

    from bench.importers import model_record
    from bench.store.models import ModelStore

    model_id = "imported-" + imported.provenance["sha256"][:16]
    imported.overrides = [*imported.overrides, *overrides]
    record = model_record(imported)
    spec = record["spec"]
    record.update(id=model_id, kind="model", created=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                  cell={"method": spec["method"], "dataset": spec["dataset"], "au": spec["au"], "seed": spec["seed"]},
                  identity=None, history=[], selection={"split": record["selected_on"]}, alignment_layers=[],
                  setting=None)
    return ModelStore(run_dir).save(model_id, imported.state_dict, record)


@importer.command("fer-aus")
def fer_aus(
    paths: List[Path] = typer.Argument(..., help="Checkpoint folders (model.pt + config_model.yaml) or folders of them."),
    run_name: str = typer.Option("imported", help="Run folder the models are stored in."),
    results_dir: Path = typer.Option(Path("results"), help="Where run folders live."),
    checkpoint: str = typer.Option("best", help="best | last | all (the authors keep cp_best and cp_last)."),
    profile: str = typer.Option("paper", help="Profile the imported models are rebuilt and evaluated with."),
    set_: List[str] = typer.Option([], "--set", help="Override a setting (key=value) after those read from the checkpoint's config; the shapes must still fit."),
) -> None:
    """Import the published models of "Guided Interpretable FER via Spatial AU Cues" (44 checkpoints)."""
    from rich.console import Console

    from bench.importers import import_command

    if checkpoint not in ("best", "last", "all"):
        raise UserError(f"bad --checkpoint {checkpoint!r}: expected best, last or all")
    for path in paths:
        if not path.exists():
            raise UserError(f"{path} does not exist; give a checkpoint folder (model.pt + config_model.yaml) or a "
                            "folder of them")
    from bench.config.settings import parse_override

    overrides = [parse_override(item) for item in set_]
    console = Console(stderr=True, highlight=False)
    run_dir = results_dir / run_name
    saved = import_command(paths, run_dir, console.print, lambda run, imported: save_imported(run, imported, overrides),
                           profile=profile, overrides=overrides, checkpoint=checkpoint)
    console.print(f"{len(saved)} model(s) in {run_dir}/models; evaluate them with "
                  f"`bench eval --run {run_name} --results-dir {results_dir}`", markup=False)
