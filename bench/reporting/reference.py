"""Published numbers to compare against: the paper's Tables 1-2 (shipped as package data) or a CSV
of the same shape.

The paper's CSV is read through ``importlib.resources``, so a non-editable install finds it. Each
value keeps the number of decimals it was published with (0.56 stays 0.56), and the paper's
setting is written next to the comparison so that a 32 px smoke run is never read as a replication.
The same CSV doubles as a light, torch-free view of the built-in methods (title, family, the
paper's row order), which the reporting stage uses instead of importing the method registry.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from bench.errors import UserError
from bench.reporting.metrics import AUTO_LAYER

PAPER_RESOURCE = ("bench.reporting", "reference/paper.csv")
PAPER_SOURCE = "Belharbi et al., FG 2024, Tables 1-2 (one seed; models selected on the test split)"
#: The paper's setting, compared with this run's in the table's note (profile ``paper`` mirrors it;
#: 224 px crops and 20 epochs as in the released training command).
PAPER_SETTING = {"profile": "paper", "image_size": 224, "epochs": 20}
#: The paper's table order of datasets; others follow alphabetically.
PAPER_DATASET_ORDER = ("rafdb", "affectnet")
REFERENCE_COLUMNS = ("method", "dataset", "metric", "au", "value")


@dataclass(frozen=True)
class Reference:
    """Published numbers keyed by (normalised method name, dataset, metric column, au)."""

    name: str
    source: str
    values: dict[tuple[str, str, str, bool], float]
    digits: dict[tuple[str, str, str, bool], int] = field(default_factory=dict)   # decimals as published

    def _key(self, method: str, title: str, dataset: str, column: str, au: bool):
        if column == f"att_cos_{AUTO_LAYER}":
            column = "att_cos_layer5"          # the paper's "layer 5" column is each method's aligned layer
        for name in (normalise_name(method), normalise_name(title)):
            key = (name, dataset, column, au)
            if key in self.values:
                return key
        return None

    def get(self, method: str, title: str, dataset: str, column: str, au: bool) -> float | None:
        key = self._key(method, title, dataset, column, au)
        return None if key is None else self.values[key]

    def decimals(self, method: str, title: str, dataset: str, column: str, au: bool) -> int | None:
        """Decimals the value was published with (None: unknown, use the metric's precision)."""
        key = self._key(method, title, dataset, column, au)
        return None if key is None else self.digits.get(key)

    @property
    def is_paper(self) -> bool:
        return self.name == "paper"

    @property
    def word(self) -> str:
        """How headers and notes name the reference."""
        return "paper" if self.is_paper else self.name

    def datasets(self) -> list[str]:
        return list(dict.fromkeys(k[1] for k in self.values))


def normalise_name(name: str) -> str:
    """'GradCAM++' -> 'gradcampp', 'TS-CAM' -> 'tscam': match registry names and titles alike."""
    return re.sub(r"[^a-z0-9]", "", name.lower().replace("++", "pp"))


def paper_csv_text() -> str:
    """The shipped CSV of the paper's numbers, found as package data (works installed or not)."""
    package, name = PAPER_RESOURCE
    try:
        return resources.files(package).joinpath(name).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError) as exc:
        raise UserError(f"the paper's numbers are missing from the installed package ({package}/{name}): "
                        f"reinstall au-cam-bench ({exc.__class__.__name__})") from None


def _decimals(text: str) -> int:
    text = text.strip()
    return len(text.split(".", 1)[1]) if "." in text else 0


def _parse(text: str, where: str) -> tuple[dict, dict]:
    reader = csv.DictReader(io.StringIO(text))
    if not set(REFERENCE_COLUMNS) <= set(reader.fieldnames or ()):
        raise UserError(f"bad reference file {where}: needs columns {', '.join(sorted(REFERENCE_COLUMNS))}")
    values, digits = {}, {}
    for line, row in enumerate(reader, start=2):
        raw = (row["value"] or "").strip()
        if not raw:
            continue
        try:
            value = float(raw)
        except ValueError:
            raise UserError(f"bad reference file {where}:{line}: value {raw!r} is not a number") from None
        au = row["au"].strip().lower() in ("true", "1", "yes", "on")
        key = (normalise_name(row["method"]), row["dataset"].strip(), row["metric"].strip(), au)
        values[key] = value
        digits[key] = _decimals(raw)
    return values, digits


def load_reference(spec: str) -> Reference:
    """``paper`` (the packaged Tables 1-2) or a CSV path with columns method,dataset,metric,au,value."""
    if spec == "paper":
        values, digits = _parse(paper_csv_text(), "(packaged) paper.csv")
        return Reference("paper", PAPER_SOURCE, values, digits)
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"bad --reference {spec!r}: expected 'paper' or a CSV file "
                        "(columns method,dataset,metric,au,value)")
    values, digits = _parse(path.read_text(encoding="utf-8"), str(path))
    return Reference(path.stem, str(path), values, digits)


def method_catalog() -> dict[str, tuple[str, str]]:
    """Built-in method name -> (title, family), in the paper's row order, without importing torch.

    Used for methods that have only failed results (their rows carry no title) and for the models
    that shared rows name; every finished row carries its own title and family.
    """
    out: dict[str, tuple[str, str]] = {}
    for row in csv.DictReader(io.StringIO(paper_csv_text())):
        name = row["method"].strip()
        if name not in out:
            out[name] = (row.get("title") or name, row.get("family") or "other")
    return out


def dataset_order(datasets, asked=None) -> list[str]:
    """The datasets as asked for (``--datasets``), else the paper's order, then the rest by name."""
    present = list(dict.fromkeys(datasets))
    if asked:
        first = [d for d in dict.fromkeys(asked) if d in present]
        return first + sorted(d for d in present if d not in first)
    known = [d for d in PAPER_DATASET_ORDER if d in present]
    return known + sorted(d for d in present if d not in known)
