"""A full disk, a read-only or a forbidden output: one clean error naming the path, exit 3, and the previous
build left as it was (shards, index and catalog unchanged and still verifying)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from cli_process import error_lines, run_cli

from hyper400k.console import EXIT_SYSTEM
from hyper400k.presets import get_preset
from hyper400k.synth import generate
from hyper400k.verify import verify_build
from pipelines.build import BuildConfig, build

BUILD = ("--tile", "32", "--scheduler", "synchronous", "--no-progress")


@pytest.fixture
def small_disk(tmp_path):
    """A 5 MB tmpfs: room for a one-product build, not for four products."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip() or 'mount failed'})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def first_build(tmp_path: Path, output: Path) -> dict[str, str]:
    """A finished one-product build (in-process: only the second, failing build runs the command line)."""
    generate("aviris-ng", "L2", 64, 48, tmp_path / "in", seed=1)
    config = BuildConfig(
        input=tmp_path / "in", output=output, preset=get_preset("hyper400k", tile=32), scheduler="synchronous",
        progress=False,
    )  # fmt: skip
    assert build(config).ok
    for seed in (2, 3, 4):
        generate("aviris-ng", "L1", 64, 48, tmp_path / "in", seed=seed)
    return snapshot(output)


def snapshot(output: Path) -> dict[str, str]:
    """sha256 of every file of the finished build (work/ holds per-product state that may legitimately grow)."""
    return {
        str(p.relative_to(output)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(output.rglob("*"))
        if p.is_file() and p.relative_to(output).parts[0] != "work"
    }


def assert_clean_failure(process, output: Path, before: dict[str, str], *problems: str) -> None:
    assert process.returncode == EXIT_SYSTEM, process.stderr
    assert "Traceback" not in process.stderr
    lines = error_lines(process)
    assert len(lines) == 1 and any(problem in lines[0] for problem in problems), process.stderr
    assert lines[0].startswith(f"error: {output}"), lines[0]  # names the path it could not write
    assert snapshot(output) == before
    assert verify_build(output, check_samples=True, progress=False).ok


def test_full_disk(tmp_path, small_disk):
    output = small_disk / "build"
    before = first_build(tmp_path, output)
    process = run_cli("pipelines.cli", "build", tmp_path / "in", output, *BUILD)
    assert_clean_failure(process, output, before, "No space left on device", "disk full (ENOSPC)")


def test_read_only_output(tmp_path, small_disk):
    output = small_disk / "build"
    before = first_build(tmp_path, output)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    process = run_cli("pipelines.cli", "build", tmp_path / "in", output, *BUILD)
    assert_clean_failure(process, output, before, "Read-only file system")


def test_permission_denied_output(tmp_path):
    output = tmp_path / "build"
    before = first_build(tmp_path, output)
    process = run_cli("pipelines.cli", "build", tmp_path / "in", output, *BUILD, deny=[output])
    assert_clean_failure(process, output, before, "Permission denied")
    assert os.access(output, os.W_OK)  # the test put the permissions back
