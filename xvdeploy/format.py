"""Plain-text and Markdown tables and number formats: the library's one formatting module (the CLI uses it, never the reverse)."""
from __future__ import annotations


def format_table(headers: list[str], rows: list[list[object]]) -> str:
    """Fixed-width text table with a header rule."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    """GitHub-flavoured Markdown table."""
    def cell(value: object) -> str:  # a bare "|" would split the cell
        return str(value).replace("|", "\\|")

    out = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(out)


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; binary units up to PiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"
