"""Quiet by default: a run shows progress, stage lines and its summary, never library logs; ``-v`` brings them back.

Everything runs as a subprocess with no TTY and COLUMNS=40, as in CI.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

from conftest import ROOT

from hyper400k.progress import LineWriter, progress_bar
from hyper400k.synth import generate


def _env(**changes: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="40")
    env.update(changes)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300
    )


def test_build_on_a_local_cluster_prints_no_library_logs_and_the_dashboard_once(tmp_path):
    generate("aviris-ng", "L1", 64, 64, tmp_path / "input", seed=1)
    generate("aviris-3", "L2", 64, 64, tmp_path / "input", seed=2)
    done = _run(
        ["-m", "pipelines.cli", "build", str(tmp_path / "input"), str(tmp_path / "out"), "--tile", "32",
         "--workers", "1"],
        _env(),
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "INFO" not in output and "WARNING" not in output and "distributed." not in output, output
    assert "\r" not in output  # no redraw frames in a log
    dashboard = [line for line in done.stderr.splitlines() if line.startswith("dask: ")]
    assert len(dashboard) == 1, done.stderr
    assert "dashboard at http://" in dashboard[0] or "no dashboard" in dashboard[0]
    assert "2 products" in done.stdout


def test_verbose_brings_the_dask_logs_back():
    code = (
        "from hyper400k.logs import configure_logging\n"
        "configure_logging(True)\n"
        "import logging, distributed\n"
        "print(logging.getLevelName(logging.getLogger('distributed').getEffectiveLevel()))\n"
        "configure_logging(False)\n"
        "print(logging.getLevelName(logging.getLogger('distributed').getEffectiveLevel()))\n"
    )
    done = _run(["-c", code], _env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["INFO", "ERROR"]


def test_deepspeed_is_silent_outside_training_even_about_its_accelerator():
    env = _env()
    env.pop("DS_ACCELERATOR", None)  # the auto-detection is what warns
    quiet = _run(["-c", "from hyper400k.logs import configure_logging; configure_logging(False); import deepspeed"], env)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == "" and "accelerator" not in quiet.stderr, quiet.stdout + quiet.stderr
    loud = _run(["-c", "from hyper400k.logs import configure_logging; configure_logging(True); import deepspeed"], env)
    assert "accelerator" in (loud.stdout + loud.stderr).lower()


def test_progress_without_a_tty_is_one_plain_line_per_update():
    stream = io.StringIO()  # not a TTY
    with progress_bar(total=3, desc="products", file=stream, mininterval=0) as bar:
        for _ in range(3):
            bar.update()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0].startswith("products:   0%") and lines[-1].startswith("products: 100%")
    assert all(len(line) <= 80 for line in lines)


def test_line_writer_drops_blank_redraws():
    stream = io.StringIO()
    writer = LineWriter(stream)
    writer.write("\r")
    writer.write("\rstep 1   ")
    writer.write("\n")
    assert stream.getvalue() == "step 1\n"
