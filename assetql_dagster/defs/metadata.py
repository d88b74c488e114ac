"""Small renderers for materialization metadata shown in the Dagster UI."""

from __future__ import annotations

from typing import Any, Sequence

from assetql_dagster.domain.contact_sheet import escape_markdown


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "| " + " | ".join(escape_markdown(c) for c in columns) + " |"
    rule = "|" + "---|" * len(columns)
    body = ["| " + " | ".join(escape_markdown(v) for v in row) + " |" for row in rows]
    return "\n".join([head, rule, *body])
