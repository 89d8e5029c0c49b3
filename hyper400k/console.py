"""One-line error reports for the command lines, identical at any terminal width and without a TTY.

Rich wraps long lines at the terminal width, so an error printed through it reads differently in a
40-column CI log than on a desktop; errors are therefore written as plain text, one line each.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence


def error_text(exc: BaseException) -> str:
    """``<file>: <problem>`` for an OS error that names a file, else the exception's own message."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def print_error(exc: BaseException, prefix: str = "error") -> None:
    """Write ``<prefix>: <message>`` to stderr as a single unwrapped line."""
    sys.stderr.write(f"{prefix}: {error_text(exc)}\n")
    sys.stderr.flush()


def format_table(columns: Sequence[str], rows: Iterable[Sequence[str]], title: str | None = None) -> str:
    """A plain-text table whose columns are as wide as their longest cell.

    Never wrapped or truncated: a rich table squeezes its cells to the terminal width (80 columns
    without a TTY, or $COLUMNS), which cut group names and drop reasons in CI logs and pipes.
    """
    body = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(name)] + [len(row[i]) for row in body]) for i, name in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    out = [title] if title else []
    out += [line(columns), line(["-" * width for width in widths])]
    out += [line(row) for row in body]
    return "\n".join(out)
