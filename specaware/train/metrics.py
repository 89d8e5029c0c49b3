"""Training metrics: one CSV row per logged step (loss terms, lr, grad norm, throughput), appended atomically
enough for a crash to lose at most the row being written, and resumed runs to continue the same file."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

COLUMNS = (
    "step",
    "loss",
    "sam",
    "charbonnier",
    "lr",
    "grad_norm",
    "samples_per_s",
    "tokens_per_s",
    "disagreement",
)


class MetricsLog:
    """Appends rows to ``metrics.csv``; a resumed run drops rows past its resume step first."""

    def __init__(self, path: Path, resume_step: int = 0) -> None:
        self.path = path
        rows = self.read(path) if path.is_file() else []
        kept = [r for r in rows if int(r["step"]) <= resume_step] if resume_step else []
        with open(path, "w", newline="") as stream:
            writer = csv.DictWriter(stream, COLUMNS)
            writer.writeheader()
            writer.writerows(kept)

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as stream:
            csv.DictWriter(stream, COLUMNS).writerow({k: row.get(k, "") for k in COLUMNS})

    @staticmethod
    def read(path: Path) -> list[dict[str, str]]:
        with open(path, newline="") as stream:
            return list(csv.DictReader(stream))
