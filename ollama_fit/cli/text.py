"""Text that fits a terminal: wrapping at spaces with hanging indents, tables whose widest columns shrink
and wrap inside themselves, widths that count what shows and not color codes. Pure string building."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

Paint = Callable[[str, str], str]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
MIN_COLUMN = 6  # a shrunk table column keeps at least this many characters (or its header's longest word)


def plain(text: str, color: str) -> str:
    return text


def visible(text: str) -> int:
    """The width a string takes on screen: color codes take none."""
    return len(_ANSI.sub("", text))


def _cut(word: str, first: int, rest: int) -> list[str]:
    """A word longer than the line, in pieces of `first`, then `rest` characters (color codes dropped: they
    would be cut in half)."""
    bare = _ANSI.sub("", word)
    pieces = [bare[:first]]
    pieces += [bare[i : i + rest] for i in range(first, len(bare), rest)]
    return pieces


def wrap(text: str, width: int | None, indent: int = 0) -> list[str]:
    """Greedy word wrap that keeps the runs of spaces inside a line (columns) and counts visible width;
    continuation lines start with `indent` spaces."""
    if width is None or visible(text) <= width:
        return [text]
    width = max(width, 1)
    indent = min(indent, width // 2)
    lines: list[str] = []
    line = ""
    for token in re.findall(r"\S+|\s+", text):
        if visible(line) + visible(token) <= width:
            line += token
            continue
        if token.isspace():
            continue  # the break goes here
        if line.strip():
            lines.append(line.rstrip())
            line = " " * indent
        room = width - visible(line)
        if room < 1:
            line, room = " " * indent, width - indent
        if visible(token) > room:  # longer than a whole line: cut it
            *heads, token = _cut(token, room, width - indent)
            for head in heads:
                lines.append(line + head)
                line = " " * indent
        line += token
    if line.strip():
        lines.append(line.rstrip())
    return lines


def _hanging(line: str) -> int:
    """Where continuation lines of `line` start: after a marker (`- `, `! `, `Pick   `), else 2 in."""
    lead = len(line) - len(line.lstrip(" "))
    marker = re.match(r"(\S{1,8})( {2,}| (?=\S))", line[lead:])
    if marker and (len(marker.group(2)) >= 2 or not marker.group(1)[0].isalnum()):
        return lead + len(marker.group(0))
    return lead + 2


def fit(lines: Sequence[str], width: int | None) -> str:
    """Lines wrapped to `width` (None: as they are), continuation lines indented under their first."""
    out: list[str] = []
    for text in lines:
        for line in text.split("\n"):
            out += wrap(line, width, _hanging(line))
    return "\n".join(out)


def _column_widths(natural: list[int], floors: list[int], room: int) -> list[int]:
    """Shrink the widest column one character at a time until the row fits `room` (or all are at a floor)."""
    widths = list(natural)
    while sum(widths) > room:
        shrinkable = [i for i, w in enumerate(widths) if w > floors[i]]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: widths[i])
        widths[widest] -= 1
    return widths


def table(
    rows: Sequence[Sequence[str]], header: Sequence[str] | None = None, indent: int = 2, width: int | None = None
) -> str:
    """Left-aligned columns; numbers are pre-formatted by the caller. With `width`, the widest columns shrink
    (never below their header's longest word) and their cells wrap inside the column."""
    all_rows = [list(header)] if header else []
    all_rows += [list(r) for r in rows]
    if not all_rows:
        return ""
    count = max(map(len, all_rows))
    all_rows = [r + [""] * (count - len(r)) for r in all_rows]
    natural = [max(visible(r[i]) for r in all_rows) for i in range(count)]
    widths = natural
    if width is not None:
        words = [
            max((len(w) for w in str(header[i] if header and i < len(header) else "").split()), default=0)
            for i in range(count)
        ]
        floors = [max(words[i], min(natural[i], MIN_COLUMN)) for i in range(count)]
        widths = _column_widths(natural, floors, width - indent - 2 * (count - 1))
    lines = []
    for r in all_rows:
        cells = [wrap(c, widths[i], 1) if visible(c) > widths[i] else [c] for i, c in enumerate(r)]
        for k in range(max(map(len, cells))):
            parts = [(cell[k] if k < len(cell) else "") for cell in cells]
            padded = [p + " " * (widths[i] - visible(p)) for i, p in enumerate(parts)]
            lines.append(" " * indent + "  ".join(padded).rstrip())
    return "\n".join(lines)
