"""Per-epoch metrics as CSV next to the checkpoint: ``RUN_DIR/metrics.csv``, one row per completed epoch.

Columns: ``epoch``, then the values in the order they first appeared: ``loss/<term>``, ``lr/<group>`` and, on the
epochs that evaluated, ``eval/<setting>/<metric>`` (fractions; empty cells on the other epochs). The whole file is
rewritten atomically at each record (it is small), so a crash never leaves a torn row, and a resumed run keeps
the rows of the epochs its checkpoint had completed and replaces any later ones.
"""

from __future__ import annotations

import csv
from pathlib import Path

from common.fsio import atomic_write

METRICS_CSV = "metrics.csv"


class EpochCSV:
    """The rows of ``path``: ``record(epoch, values)`` merges ``values`` into the epoch's row and rewrites the file."""

    def __init__(self, path: Path, keep_through: int = 0) -> None:
        """Open ``path``, keeping existing rows of epochs ``<= keep_through`` (0: start afresh)."""
        self.path = path
        self.columns: list[str] = ["epoch"]
        self.rows: dict[int, dict[str, str]] = {}
        if keep_through > 0 and path.is_file():
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                self.columns += [c for c in reader.fieldnames or [] if c not in self.columns]
                for row in reader:
                    if int(row["epoch"]) <= keep_through:
                        self.rows[int(row["epoch"])] = row

    def record(self, epoch: int, values: dict[str, float]) -> None:
        """Add (or update) the values of 1-based ``epoch`` and rewrite the CSV."""
        row = self.rows.setdefault(epoch, {"epoch": str(epoch)})
        for key, value in values.items():
            if key not in self.columns:
                self.columns.append(key)
            row[key] = repr(float(value))

        def write(tmp: Path) -> None:
            with tmp.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.columns, restval="")
                writer.writeheader()
                writer.writerows(self.rows[e] for e in sorted(self.rows))

        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, write)
