"""The pipeline's rules as data, rendered by each engine: declared once, so engines cannot drift.

Each rule here is what both engines used to spell out in their own code (DuckDB SQL in
`engines/embedded/`, PySpark in `engines/spark/`). An engine renders it with its own quoting
(`"col"` in DuckDB, `` `col` `` in Spark SQL); `tests/spark/test_rules_render.py` runs every
rendering on both engines over the same rows and compares.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from digital_finance.definition.expectations import Action, Expectation

Quote = Callable[[str], str]


def duckdb_quote(name: str) -> str:
    """A DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def spark_quote(name: str) -> str:
    """A Spark SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class LatestWins:
    """Which record of a key silver keeps: the latest event, then the one received last.

    Inside a batch "received last" is the later file, then the later line; across batches
    the later batch (shared/CONTRACT.md, "silver").
    """

    key: tuple[str, ...]
    event_time: str
    receipt_in_batch: tuple[str, ...] = ("file_ordinal", "line_number")
    receipt_across_batches: str = "_batch_id"

    def batch_order(self) -> tuple[str, ...]:
        """Columns, largest first wins, that pick one record per key within a batch."""
        return (self.event_time, *self.receipt_in_batch)

    def key_match(self, new: str, old: str, quote: Quote) -> str:
        """SQL: `new` and `old` rows hold the same key."""
        return " AND ".join(f"{old}.{quote(k)} = {new}.{quote(k)}" for k in self.key)

    def newer(self, new: str, old: str, quote: Quote) -> str:
        """SQL: the `new` row (a later batch's winner) replaces the `old` row of its key."""
        ev, batch = quote(self.event_time), quote(self.receipt_across_batches)
        later = f"{new}.{ev} > {old}.{ev}"
        tie = f"{new}.{ev} = {old}.{ev} AND {new}.{batch} > {old}.{batch}"
        return f"{later} OR ({tie})"


@dataclass(frozen=True)
class Dialect:
    """How one engine's SQL spells what the rules use: quoting, literals and list functions."""

    quote: Quote
    size: str  # elements in a list
    keep_where: str  # the elements of a list for which a lambda holds, in their order
    contains: str  # whether a list holds a value
    lambda_form: str  # `{x}` the parameter, `{body}` the body
    list_form: str  # `{items}` comma-separated
    empty: str  # an empty list of strings
    first_form: str  # the first element of `{list}`, NULL when there is none
    backslash_escapes: bool = False  # Spark SQL: `\'` in a literal; `''` would concatenate

    def literal(self, text: str) -> str:
        """A string literal."""
        if self.backslash_escapes:
            return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return "'" + text.replace("'", "''") + "'"

    def lam(self, x: str, body: str) -> str:
        """A lambda over one parameter."""
        return self.lambda_form.format(x=x, body=body)

    def strings(self, items: list[str]) -> str:
        """A list of SQL expressions, or the empty list of strings."""
        return self.list_form.format(items=", ".join(items)) if items else self.empty

    def first(self, items: str) -> str:
        """The first element of a list expression."""
        return self.first_form.format(list=items)


DUCKDB = Dialect(
    quote=duckdb_quote,
    size="len",
    keep_where="list_filter",
    contains="list_contains",
    lambda_form="lambda {x}: {body}",
    list_form="[{items}]",
    empty="CAST([] AS VARCHAR[])",
    first_form="({list})[1]",
)
SPARK = Dialect(
    quote=spark_quote,
    size="size",
    keep_where="filter",
    contains="array_contains",
    lambda_form="{x} -> {body}",
    list_form="array({items})",
    empty="CAST(array() AS array<string>)",
    first_form="get({list}, 0)",  # NULL past the end whatever the ANSI mode
    backslash_escapes=True,
)


@dataclass(frozen=True)
class QuarantineChoice:
    """Which staged records go to quarantine, with which reason and step; which reach silver.

    A record that broke the contract is quarantined with every contract rule it broke (the
    first is its `reason`) at the contract step. A user expectation is evaluated only where
    the contract passed, and a condition that is NULL fails. A record that passed the
    contract but failed user rules whose action is `quarantine` is quarantined with those
    rules, in the order they are declared, at the expectations step. Only a record that is
    neither may become a silver candidate. `contract` and `failed` are the staged columns of
    contract rules broken and user rules failed.
    """

    contract: str = "reasons"
    failed: str = "failed_rules"

    def check(self, name: str, condition: str, d: Dialect) -> str:
        """SQL: the rule's name where the record passed the contract and fails `condition`."""
        return (
            f"CASE WHEN {d.size}({self.contract}) = 0 AND NOT coalesce(({condition}), FALSE) "
            f"THEN {d.literal(name)} END"
        )

    def failed_rules(self, rules: list[tuple[str, str]], d: Dialect) -> str:
        """SQL: the user rules (name, condition) the record failed, in declared order."""
        if not rules:
            return d.empty
        checks = d.strings([self.check(name, condition, d) for name, condition in rules])
        return f"{d.keep_where}({checks}, {d.lam('x', 'x IS NOT NULL')})"

    def quarantining(self, names: list[str], d: Dialect) -> str:
        """SQL: the failed user rules among `names` (the quarantine ones), in declared order."""
        if not names:
            return d.empty
        wanted = d.strings([d.literal(n) for n in names])
        return f"{d.keep_where}({self.failed}, {d.lam('x', f'{d.contains}({wanted}, x)')})"

    def reasons(self, names: list[str], d: Dialect) -> str:
        """SQL: the rules a quarantined record is kept for (empty when it is not)."""
        return (
            f"CASE WHEN {d.size}({self.contract}) > 0 THEN {self.contract} "
            f"ELSE {self.quarantining(names, d)} END"
        )

    def reason(self, names: list[str], d: Dialect) -> str:
        """SQL: the quarantine row's `reason`, the first of its reasons."""
        return d.first(self.reasons(names, d))

    def step(self, contract_step: str, rules_step: str, d: Dialect) -> str:
        """SQL: the step that quarantined the record."""
        return (
            f"CASE WHEN {d.size}({self.contract}) > 0 THEN {d.literal(contract_step)} "
            f"ELSE {d.literal(rules_step)} END"
        )

    def quarantined(self, names: list[str], d: Dialect) -> str:
        """SQL: the record goes to quarantine."""
        return f"{d.size}({self.reasons(names, d)}) > 0"

    def passes(self, names: list[str], d: Dialect) -> str:
        """SQL: the record may become a silver candidate."""
        return f"{d.size}({self.contract}) = 0 AND {d.size}({self.quarantining(names, d)}) = 0"


QUARANTINE = QuarantineChoice()


def count_rules(
    contract: Mapping[str, int],
    user: Mapping[str, int],
    builtin_actions: Mapping[str, Action],
    user_rules: Sequence[Expectation],
) -> list[tuple[str, Action, int]]:
    """(rule, action, failures) of a batch, from the failures the engine counted per rule.

    Every contract rule a record broke counts (a record may break several), sorted by name,
    with its configured action (`quarantine` unless raised); then every user rule in declared
    order, those with no failure included, so a rule that passed shows as passed.
    """
    counts = [(r, builtin_actions.get(r, Action.QUARANTINE), contract[r]) for r in sorted(contract)]
    counts += [(e.name, e.action, user.get(e.name, 0)) for e in user_rules]
    return counts


@dataclass(frozen=True)
class Lineage:
    """Where each silver row came from: silver column <- staged column."""

    columns: tuple[tuple[str, str], ...] = (
        ("_source_file", "source_file"),
        ("_line_number", "line_number"),
    )


LINEAGE = Lineage()
