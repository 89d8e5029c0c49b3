"""What the command lines print when something goes wrong, identical at any terminal width and without a TTY.

Rich wraps long lines at the terminal width, so an error printed through it reads differently in a
40-column CI log than on a desktop; errors are therefore written as plain text, one line each.

:class:`ReportingGroup` is the click group of both command lines (``hyper400k`` and ``specaware``): any
exception a command lets out becomes one ``error: <file>: <problem>`` line and a documented exit code
(``EXIT_*`` below), and ``--debug`` adds the traceback. Commands therefore need no ``try`` of their own.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

import typer
import yaml
from typer.core import TyperGroup

try:  # typer >= 0.2x carries its own copy of click; older releases use click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_errors

# Exit codes (documented in the README; Ctrl-C exits 130, as typer does).
EXIT_FAILED = 1  # the command ran to the end, but some products failed or a check found faults
EXIT_INPUT = 2  # bad input or usage: missing, malformed or unsupported file, bad option value
EXIT_SYSTEM = 3  # the system refused: permission denied, disk full, read-only file system, other I/O error
EXIT_INTERNAL = 4  # an unexpected error (a bug): rerun with --debug and report the traceback
_INPUT_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError)
DEBUG_HELP = "On an error, also print the Python traceback."
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout (fields: docs/json-output.md).")
]
"""The ``--json`` option of every reporting command (both CLIs): what it prints is :func:`emit_json`'s."""


def error_text(exc: BaseException) -> str:
    """``<file>: <problem>`` for an OS error that names a file, else the exception's own message on one line."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror if exc.filename is None else f"{exc.filename}: {exc.strerror}"
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def print_error(exc: BaseException, prefix: str = "error") -> None:
    """Write ``<prefix>: <message>`` to stderr as a single unwrapped line."""
    sys.stderr.write(f"{prefix}: {error_text(exc)}\n")
    sys.stderr.flush()


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code of an exception a command let out."""
    from hyper400k.errors import ProductError
    from hyper400k.shards import ShardError

    if isinstance(exc, ProductError | ShardError) and _refused_by_the_system(exc.__cause__):
        return exit_code_for(exc.__cause__)  # a header that cannot be read, a shard that cannot be written
    if isinstance(exc, _INPUT_OS_ERRORS):
        return EXIT_INPUT
    if isinstance(exc, OSError):
        return EXIT_SYSTEM
    if isinstance(exc, ProductError | ShardError | ValueError | yaml.YAMLError):
        return EXIT_INPUT
    return EXIT_INTERNAL


def _refused_by_the_system(cause: BaseException | None) -> bool:
    """Whether an OS error behind a product or shard error came from the system (it carries an OS errno).

    Libraries raise ``OSError`` without one for a file they cannot parse: rasterio's ``RasterioIOError`` for a
    damaged GeoTIFF, netCDF4's negative NetCDF codes. Such a product is bad input, not a refusal."""
    return isinstance(cause, OSError) and isinstance(cause.errno, int) and cause.errno > 0


def report_exception(exc: BaseException, debug: bool) -> int:
    """Print one error line (after the traceback when ``debug``) and return the exit code."""
    code = exit_code_for(exc)
    if debug:
        traceback.print_exception(exc)
    if code == EXIT_INTERNAL:
        sys.stderr.write(
            f"error: internal error: {type(exc).__name__}: {error_text(exc)}"
            f"{'' if debug else ' (rerun with --debug for the traceback)'}\n"
        )
        sys.stderr.flush()
    else:
        print_error(exc)
    return code


class ReportingGroup(TyperGroup):
    """A Typer group that turns whatever a command raises into one plain error line and an exit code.

    Usage errors are printed the same way (click's rich panel is drawn to the terminal width).
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click_errors.NoArgsIsHelpError:
            raise
        except click_errors.ClickException as exc:
            raise typer.Exit(_report_click_error(exc, ctx)) from exc

    def invoke(self, ctx: Any) -> Any:
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, click_errors.NoArgsIsHelpError):
            raise
        except click_errors.ClickException as exc:
            raise typer.Exit(_report_click_error(exc, ctx)) from exc
        except Exception as exc:
            raise typer.Exit(report_exception(exc, debug)) from exc


def _report_click_error(exc: Exception, ctx: Any) -> int:
    """One line for a usage error (bad option, missing argument), pointing at the command's help."""
    message = " ".join(exc.format_message().split())
    if isinstance(exc, click_errors.UsageError):
        path = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
        message += f" (see '{path} --help')"
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    return exc.exit_code


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


def emit_json(record: dict) -> None:
    """A command's report as one line of strict JSON on stdout (progress and stage lines stay on stderr)."""
    sys.stdout.write(json.dumps(record, default=str, allow_nan=False) + "\n")
    sys.stdout.flush()
