"""Run a command line as a user does: a separate process, no TTY (stdin from /dev/null), 40 columns.

``deny`` makes paths unreadable. Permission bits do not stop root, so when the tests run as root the
child process refuses those paths itself (see ``deny_access.py``), exactly as the kernel would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def run_cli(
    module: str, *args: str | Path, deny: Sequence[Path] = (), timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m module args``; returns the finished process with text stdout/stderr."""
    env = {**os.environ, "COLUMNS": "40", "TERM": "dumb", "DS_ACCELERATOR": "cpu"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", module, *map(str, args)]
    for path in deny:
        path.chmod(0)
    if deny and os.geteuid() == 0:
        env["DENY_ACCESS"] = os.pathsep.join(str(Path(p).resolve()) for p in deny)
        command = [
            sys.executable,
            "-c",
            f"import deny_access, runpy; runpy.run_module({module!r}, run_name='__main__', alter_sys=True)",
            *map(str, args),
        ]
    try:
        return subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=timeout,
        )
    finally:
        for path in deny:
            path.chmod(0o755 if path.is_dir() else 0o644)


def error_lines(process: subprocess.CompletedProcess) -> list[str]:
    """The ``error:`` lines a command wrote to stderr (library warnings and progress are other lines)."""
    return [line for line in process.stderr.splitlines() if line.startswith("error:")]
