"""What the benchmark scripts share: aligned Markdown tables and the generated block of docs/benchmarks.md.

Each script owns the text between its two markers (``<!-- cpu:begin -->`` /
``<!-- cpu:end -->``, ``<!-- gpu:begin -->`` / ``<!-- gpu:end -->``) and
replaces only that; every file is written through :mod:`xvdeploy.fileio`
(temporary name, then rename).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from xvdeploy.fileio import write_text_atomic
from xvdeploy.format import markdown_table

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"

_ALIGN = {"l": "---", "r": "---:", "c": ":---:"}


def md_table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """:func:`xvdeploy.format.markdown_table` with column alignment: one of ``l``/``r``/``c`` per column
    (default: the first column left, the others right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    lines = markdown_table(headers, rows).split("\n")
    lines[1] = "| " + " | ".join(_ALIGN[a] for a in align) + " |"
    return "\n".join(lines)


def replace_block(text: str, begin: str, end: str, block: str, append: str | None = None) -> str:
    """``text`` with everything from ``begin`` to ``end`` replaced by ``block`` (which carries the markers).

    Without the markers (in that order) ``append`` (default: ``block``) is added at the end.
    """
    if begin in text and end in text and text.index(begin) < text.index(end):
        return text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    return text.rstrip("\n") + "\n\n" + (block if append is None else append) + "\n"


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomic write, creating the folder if needed."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)


def write_block(path: str | os.PathLike, begin: str, end: str, block: str, *, empty: str = "",
                append: str | None = None) -> None:
    """Replace the marked block of the document at ``path``; a missing or empty file starts as ``empty``."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    write_text(path, replace_block(text if text.strip() else empty, begin, end, block, append))


def write_json(path: str | os.PathLike, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")
