"""Evaluation reports: JSON files and markdown tables (one row per language).

Every score of :mod:`omnispeech.eval` has ``to_dict()``, ``to_json()`` and ``to_markdown()``;
:func:`write_report` writes either or both files. The functions here only format: they know no
metric.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol


class Report(Protocol):
    """What :func:`write_report` needs of a score."""

    def to_json(self) -> str:
        """The full score as JSON text."""

    def to_markdown(self) -> str:
        """The score as a markdown report."""


def format_value(value: Any, digits: int = 4) -> str:
    """A table cell: floats rounded to ``digits`` decimals, None as an en dash."""
    if value is None:
        return "\u2013"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; numbers are right-aligned.

    Args:
        headers: column titles.
        rows: cells (``str`` as they are, floats by :func:`format_value`), one list per row.

    Returns:
        The table, ending in a newline.
    """
    cells = [[c if isinstance(c, str) else format_value(c) for c in row] for row in rows]
    numeric = [
        all(not isinstance(row[i], str) or row[i].startswith("**") for row in rows) and bool(rows)
        for i in range(len(headers))
    ]
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def language_rows(
    per_language: Mapping[str, Mapping[str, Any]],
    overall: Mapping[str, Any] | None,
    columns: Sequence[str],
) -> list[list[Any]]:
    """Rows of a per-language table: one per language, then ``all``.

    Args:
        per_language: ``{code: {column: value}}``; a ``"metric"`` entry (``"cer"`` /
            ``"wer"``) puts that column's value in bold and is itself shown upper-case.
        overall: the pooled row (None: no ``all`` row).
        columns: the keys to show, in order.

    Returns:
        ``[language, value, ...]`` rows for :func:`format_table`.
    """
    items = list(per_language.items()) + ([("all", overall)] if overall is not None else [])
    rows = []
    for language, values in items:
        metric = values.get("metric")
        row: list[Any] = [language or "(none)"]
        for column in columns:
            value = values.get(column)
            if column == "metric":
                row.append(str(value).upper() if value else "")
            elif column == metric and value is not None:
                row.append(f"**{format_value(value)}**")
            else:
                row.append(value)
        rows.append(row)
    return rows


def write_report(
    score: Report, json_path: str | Path | None = None, markdown_path: str | Path | None = None
) -> None:
    """Write ``score`` as JSON and / or markdown (UTF-8); a None path writes nothing.

    Args:
        score: any score of :mod:`omnispeech.eval`.
        json_path: destination of ``score.to_json()``.
        markdown_path: destination of ``score.to_markdown()``.
    """
    if json_path is not None:
        Path(json_path).write_text(score.to_json() + "\n", encoding="utf-8")
    if markdown_path is not None:
        Path(markdown_path).write_text(score.to_markdown(), encoding="utf-8")


class PerLanguageReport:
    """JSON for a score with ``per_language`` / ``overall`` groups (each with ``to_dict``),
    ``utterances`` (each with ``to_dict``) and ``split``; subclasses set :attr:`task`."""

    task = ""

    def to_dict(self, per_utterance: bool = True) -> dict[str, Any]:
        """JSON-ready summary (and every utterance when ``per_utterance``)."""
        out: dict[str, Any] = {
            "task": self.task,
            "split": self.split,  # type: ignore[attr-defined]
            "overall": self.overall.to_dict(),  # type: ignore[attr-defined]
            "per_language": {
                k: v.to_dict()
                for k, v in self.per_language.items()  # type: ignore[attr-defined]
            },
        }
        if per_utterance:
            out["utterances"] = [u.to_dict() for u in self.utterances]  # type: ignore[attr-defined]
        return out

    def to_json(self, per_utterance: bool = True, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text (non-ASCII kept)."""
        return json.dumps(self.to_dict(per_utterance), indent=indent, ensure_ascii=False)
