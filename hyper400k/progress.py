"""Progress bars that stay readable in a log file.

On a terminal this is a plain tqdm bar. Without a TTY (CI, ``nohup``, a pipe) tqdm still redraws the bar with
carriage returns, which a log file keeps as one flood of ``\\r`` frames; there the bar is written as one line per
update instead, at most every :data:`LOG_INTERVAL_S` seconds (tqdm's ``mininterval``), plus the final state.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm import tqdm

LOG_INTERVAL_S = float(os.environ.get("HYPER400K_PROGRESS_INTERVAL", "30"))


class LineWriter:
    """A file for tqdm that turns each redraw (``\\r`` + bar) into one line of ``stream``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip("\n")
        if line.strip():
            self.stream.write(line.rstrip() + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable: Iterable[Any] | None = None, *, file: TextIO | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on a TTY; periodic plain lines (fixed width, no terminal query) otherwise."""
    stream = file or sys.stderr
    if stream.isatty():
        return tqdm(iterable, file=stream, **kwargs)
    kwargs.setdefault("mininterval", LOG_INTERVAL_S)
    kwargs.setdefault("maxinterval", max(kwargs["mininterval"], 10.0))  # the monitor thread must not redraw sooner
    return tqdm(iterable, file=LineWriter(stream), ncols=80, ascii=True, dynamic_ncols=False, **kwargs)
