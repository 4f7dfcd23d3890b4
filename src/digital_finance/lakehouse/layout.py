"""Where each table lives under the output root (shared/CONTRACT.md, "Tables on disk")."""

from __future__ import annotations

from dataclasses import dataclass

# the Delta app id under which every engine records the batch a commit belongs to
APP_ID = "digital-finance"


@dataclass(frozen=True)
class TableLayout:
    """Relative paths of the lakehouse tables."""

    gold: str = "gold/stock_fund_holdings"
    runs: str = "_system/pipeline_runs"
    batches: str = "_system/batches"
    forgotten: str = "_system/forgotten"

    def bronze(self, dataset: str) -> str:
        """Bronze table of a dataset."""
        return f"bronze/{dataset}"

    def silver(self, dataset: str) -> str:
        """Silver table of a dataset."""
        return f"silver/{dataset}"

    def quarantine(self, dataset: str) -> str:
        """Quarantine table of a dataset."""
        return f"quarantine/{dataset}"

    def all(self) -> list[str]:
        """Every table a run writes, in data-flow order."""
        tables: list[str] = []
        for kind in (self.bronze, self.quarantine, self.silver):
            tables += [kind("stocks"), kind("mutual_funds")]
        return [*tables, self.gold, self.runs, self.batches]

    def every(self) -> list[str]:
        """Every table, with those only some commands make (`forget`'s)."""
        return [*self.all(), self.forgotten]


TABLES = TableLayout()


def table_uri(root: str, table: str) -> str:
    """A table's location under an output root that is a folder or a URI (`abfss://...`)."""
    return root.rstrip("/") + "/" + table
