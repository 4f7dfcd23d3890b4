"""How a dataset is cut into files, and how each file is written.

A dataset of synthetic records is spread over several files in the forms the sources deliver:
plain NDJSON, gzip-compressed NDJSON, a pretty-printed JSON array and NDJSON with a byte-order
mark and CRLF line ends. `_plan_files` decides the files and their record counts, `_render`
turns one record into its text and `_write_file` writes one file's lines in its form.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# Below this many records a dataset is one plain NDJSON file.
_SPECIAL_FORMS_FROM: Final = 200
# About this many records at most in one plain NDJSON file.
_PLAIN_FILE_RECORDS: Final = 200_000


@dataclass(frozen=True)
class _FilePlan:
    """One file of a dataset: its name, its form and how many records it holds."""

    name: str
    form: str  # plain | gzip | array | crlf_bom
    count: int
    final_newline: bool = True


def _plan_files(n: int) -> list[_FilePlan]:
    """Split n records into files; names sort in the order the records were made."""
    if n < _SPECIAL_FORMS_FROM:
        return [_FilePlan("part-00000.jsonl", "plain", n)]
    n_gzip = min(max(1, n * 8 // 100), 200_000)
    n_array = min(max(1, n * 2 // 100), 20_000)
    n_crlf = min(max(1, n * 4 // 100), 100_000)
    rest = n - n_gzip - n_array - n_crlf
    k = max(2, math.ceil(rest / _PLAIN_FILE_RECORDS))
    plain = [rest // k + (1 if i < rest % k else 0) for i in range(k)]
    forms: list[tuple[str, int]] = [
        ("plain", plain[0]),
        ("gzip", n_gzip),
        ("array", n_array),
        ("plain", plain[1]),
        ("crlf_bom", n_crlf),
        *(("plain", c) for c in plain[2:]),
    ]
    suffix = {"plain": "jsonl", "gzip": "ndjson.gz", "array": "json", "crlf_bom": "ndjson"}
    plans = [
        _FilePlan(f"part-{i:05d}.{suffix[form]}", form, count)
        for i, (form, count) in enumerate(forms)
    ]
    # The last plain file ends without a line end after its last record, as files cut by
    # hand or by a crashed writer do.
    last = max(i for i, plan in enumerate(plans) if plan.form == "plain")
    plans[last] = _FilePlan(plans[last].name, "plain", plans[last].count, final_newline=False)
    return plans


def _write_file(path: Path, plan: _FilePlan, lines: list[str]) -> None:
    """Write the rendered lines (records and blank lines) as one file in the plan's form."""
    if plan.form == "array":
        text = "[\n  " + ",\n  ".join(lines) + "\n]\n" if lines else "[]\n"
    elif plan.form == "crlf_bom":
        text = "\ufeff" + "\r\n".join(lines) + "\r\n"
    else:
        text = "\n".join(lines) + ("\n" if plan.final_newline and lines else "")
    # surrogateescape: the invalid_utf8 records carry their bad bytes as lone surrogates.
    data = text.encode("utf-8", "surrogateescape")
    with path.open("wb") as out:
        if plan.form == "gzip":
            with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=5) as gz:
                gz.write(data)
        else:
            out.write(data)


def _render(parts: list[str] | str, pretty: bool) -> str:
    """The text of one record: raw text as is, `"key": value` parts as a JSON object."""
    if isinstance(parts, str):
        return parts
    if pretty:
        return "{\n    " + ",\n    ".join(parts) + "\n  }"
    return "{" + ", ".join(parts) + "}"
