"""The data contract: the datasets, their fields and the rules each record is held to.

Everything here is plain data and pure Python, shared by every engine. `schemas` declares
the datasets; `reference` is the readable, record-at-a-time implementation of the rules that
the vectorised engines are tested against; `json_exact` decodes JSON keeping numbers as their
exact text and rejecting duplicate keys and lone surrogates.
"""

from digital_finance.contract.schemas import (
    DATASETS,
    FUNDS,
    STOCKS,
    DatasetSpec,
    FieldKind,
    FieldSpec,
)

__all__ = ["DATASETS", "FUNDS", "STOCKS", "DatasetSpec", "FieldKind", "FieldSpec"]
