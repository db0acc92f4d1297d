"""Models trained elsewhere, imported as models of ours (key maps written from their definitions)."""
from bench.importers.fer_aus import (ImportedModel, find_checkpoints, import_checkpoint, import_checkpoints,
                                     import_command, model_record)

__all__ = ["ImportedModel", "find_checkpoints", "import_checkpoint", "import_checkpoints", "import_command",
           "model_record"]
