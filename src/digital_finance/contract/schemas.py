"""The datasets of the contract (`shared/CONTRACT.md`), declared as data.

Engines never spell a field name or a rule themselves: they walk these specs. Adding a field
to the contract is a change here, and every engine, the reference and the tests follow.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property


class FieldKind(enum.Enum):
    """How a raw JSON value becomes a typed column; each kind is one rule in the contract."""

    INTEGER = "integer"  # JSON integer or ASCII-digit string -> int64
    DECIMAL = "decimal"  # JSON number or numeric string -> exact decimal
    EVENT_TIME = "event_time"  # ISO-8601 / naive local / epoch -> UTC timestamp (us)
    SYMBOL = "symbol"  # trimmed, upper-cased ticker
    CURRENCY = "currency"  # 3 ASCII letters, upper-cased, with a default
    IDENTIFIER = "identifier"  # non-empty trimmed string, or a JSON integer as its text
    TEXT = "text"  # any JSON string, kept as is


@dataclass(frozen=True)
class FieldSpec:
    """One field of a dataset: where it comes from, how it is checked, what it becomes."""

    name: str
    kind: FieldKind
    required: bool
    column: str | None = None  # silver column name when it differs from the JSON field
    min_value: int | Decimal | None = None  # inclusive lower bound (integers)
    max_value: int | Decimal | None = None  # inclusive upper bound
    precision: int = 18  # decimals: total digits
    scale: int = 6  # decimals: fractional digits
    exclusive_min: Decimal | None = None  # decimals: value must be greater than this
    default: str | None = None

    @property
    def silver_name(self) -> str:
        """The column this field is stored in."""
        return self.column or self.name

    @property
    def missing_reason(self) -> str:
        """Reason code when a required field is absent or null."""
        return f"missing_{self.name}"

    @property
    def invalid_reason(self) -> str:
        """Reason code when the field is present but breaks its rule."""
        return f"invalid_{self.name}"


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset of the contract: its fields, its de-duplication key and its table names."""

    name: str  # stocks | mutual_funds
    fields: tuple[FieldSpec, ...]
    key: tuple[str, ...]  # silver columns forming the de-duplication key
    event_time: str  # silver column holding the event time used for "latest wins"

    # a spec keys the caches of compiled contracts, and the ingestion API looks one up per
    # request: hashing its fields anew each time cost a tenth of a one-record request
    @cached_property
    def _hash(self) -> int:
        return hash((self.name, self.fields, self.key, self.event_time))

    def __hash__(self) -> int:
        return self._hash

    def __getstate__(self) -> dict[str, object]:
        # string hashes differ between processes (Spark's workers unpickle specs)
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    @property
    def field_names(self) -> tuple[str, ...]:
        """The JSON field names the contract knows for this dataset."""
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> FieldSpec:
        """The spec of one field, by its JSON name."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")


MAX_INT64 = 2**63 - 1
_MONEY_BOUND = Decimal(10) ** 12  # 12 integer digits

STOCKS = DatasetSpec(
    name="stocks",
    fields=(
        FieldSpec("stock_id", FieldKind.INTEGER, True, min_value=1, max_value=MAX_INT64),
        FieldSpec("company_id", FieldKind.INTEGER, True, min_value=1, max_value=MAX_INT64),
        FieldSpec("symbol", FieldKind.SYMBOL, True),
        FieldSpec(
            "price",
            FieldKind.DECIMAL,
            True,
            precision=18,
            scale=6,
            exclusive_min=Decimal(0),
            max_value=_MONEY_BOUND - Decimal("0.000001"),
        ),
        FieldSpec("volume", FieldKind.INTEGER, False, min_value=0, max_value=MAX_INT64),
        FieldSpec("exchange", FieldKind.TEXT, False),
        FieldSpec("currency", FieldKind.CURRENCY, False, default="USD"),
        FieldSpec("timestamp", FieldKind.EVENT_TIME, True, column="event_time"),
    ),
    key=("stock_id",),
    event_time="event_time",
)

FUNDS = DatasetSpec(
    name="mutual_funds",
    fields=(
        FieldSpec("fund_id", FieldKind.IDENTIFIER, True),
        FieldSpec("fund_name", FieldKind.TEXT, False),
        FieldSpec("company_id", FieldKind.INTEGER, True, min_value=1, max_value=MAX_INT64),
        FieldSpec(
            "holding_weight",
            FieldKind.DECIMAL,
            True,
            precision=9,
            scale=6,
            exclusive_min=Decimal(0),
            max_value=Decimal(100),
        ),
        FieldSpec(
            "nav",
            FieldKind.DECIMAL,
            True,
            precision=18,
            scale=6,
            exclusive_min=Decimal(0),
            max_value=_MONEY_BOUND - Decimal("0.000001"),
        ),
        FieldSpec("as_of", FieldKind.EVENT_TIME, True),
    ),
    key=("fund_id", "company_id"),
    event_time="as_of",
)

DATASETS: dict[str, DatasetSpec] = {STOCKS.name: STOCKS, FUNDS.name: FUNDS}

# Whole-record reasons, checked before any field, in this order. The first two are the
# reader's (`sources.file_reader`: a line's size, its bytes); the rest the contract's.
RECORD_TOO_LARGE = "record_too_large"
INVALID_UTF8 = "invalid_utf8"
NESTING_TOO_DEEP = "nesting_too_deep"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
DUPLICATE_KEY = "duplicate_key"
RECORD_REASONS = (
    RECORD_TOO_LARGE,
    INVALID_UTF8,
    NESTING_TOO_DEEP,
    INVALID_JSON,
    NOT_AN_OBJECT,
    DUPLICATE_KEY,
)
LINE_REASONS = (RECORD_TOO_LARGE, INVALID_UTF8)  # decided by the reader, before any parsing
# Deeper JSON is not parsed: every engine's parser (and Python's) would need a stack that deep.
MAX_NESTING_DEPTH = 512
