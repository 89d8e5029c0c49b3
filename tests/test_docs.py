"""The documentation runs as written: every fenced code block of README.md and docs/*.md is executed.

Blocks are taken from the Markdown with markdown-it (the parser rich already depends on), in file order,
and run one after another in one working folder, as a reader following the docs would:

- ``python`` blocks run with this interpreter; ``sh``/``bash``/``console`` blocks run in bash with ``-e`` and
  ``pipefail``, with ``hyper400k``, ``specaware`` and ``python`` on the PATH pointing at this checkout;
- ``yaml`` blocks must parse;
- blocks without a language (folder trees, output) are not code and are not counted;
- a block that cannot run in CI says so in its info string with a reason, e.g. ```` ```sh no-run needs GPUs ````;
  it is reported as skipped with that reason (``pytest -rs`` lists them).

The working folder holds ``build/demo``, a small demo build made once per session (the same command as
``make build-dataset``, with smaller products), ``pipelines/`` and ``benchmarks/`` of this checkout, and
``../shared/realdata`` (the real products), so paths in the docs resolve as they do in the repository root.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import REALDATA, ROOT
from markdown_it import MarkdownIt

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
SHELLS = {"sh", "bash", "console", "shell"}
NO_RUN = "no-run"
BLOCK_TIMEOUT_S = 540  # under the 600 s per-test limit of pytest-timeout; a shared CI machine is slow


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language, why it does not run (if so) and its text."""

    path: Path
    line: int
    language: str
    skip_reason: str | None
    code: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def parse_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of one Markdown file that carry a language, in order."""
    blocks = []
    for token in MarkdownIt().parse(path.read_text()):
        if token.type != "fence" or not token.info.strip():
            continue
        language, *flags = token.info.split()
        reason = None
        if flags and flags[0] == NO_RUN:
            reason = " ".join(flags[1:])
        blocks.append(Block(path, token.map[0] + 1, language, reason, token.content))
    return blocks


BLOCKS = [block for path in DOCS for block in parse_blocks(path)]


def _shim(folder: Path, name: str, command: list[str]) -> None:
    script = folder / name
    script.write_text(f'#!/bin/sh\nexec {shlex.join(command)} "$@"\n')
    script.chmod(0o755)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A folder laid out like the repository root, holding a demo build, and the environment to run in it."""
    base = tmp_path_factory.mktemp("docs")
    repo = base / "repo"
    repo.mkdir()
    for name in ("pipelines", "benchmarks"):
        (repo / name).symlink_to(ROOT / name)
    (base / "shared").mkdir()
    if REALDATA.is_dir():
        (base / "shared" / "realdata").symlink_to(REALDATA)
    bin_dir = base / "bin"
    bin_dir.mkdir()
    _shim(bin_dir, "hyper400k", [sys.executable, "-m", "pipelines.cli"])
    _shim(bin_dir, "specaware", [sys.executable, "-m", "specaware.cli"])
    _shim(bin_dir, "python", [sys.executable])
    env = dict(os.environ)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep),
        DS_ACCELERATOR="cpu",
        COLUMNS="40",
        MPLBACKEND="Agg",
    )
    demo = subprocess.run(
        [*shlex.split("hyper400k demo build/demo --lines 256 --samples 128 --tile 64 --scheduler synchronous")],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    return repo, env


def test_every_fence_in_the_docs_is_parsed_as_a_code_block():
    """A fence the parser does not see as one (e.g. a backtick in its info string) would silently escape the tests."""
    for path in DOCS:
        fences = [token for token in MarkdownIt().parse(path.read_text()) if token.type == "fence"]
        opening_lines = sum(1 for line in path.read_text().splitlines() if line.lstrip().startswith("```")) // 2
        assert len(fences) == opening_lines, f"{path.name}: {opening_lines} fenced blocks, {len(fences)} parsed"


def test_docs_have_runnable_blocks_and_every_skip_says_why():
    runnable = [b for b in BLOCKS if b.skip_reason is None]
    assert len(runnable) >= 5, [b.name for b in BLOCKS]
    for block in BLOCKS:
        if block.skip_reason is not None:
            assert block.skip_reason, f"{block.name}: '{NO_RUN}' needs a reason after it"
        assert block.language in SHELLS | {"python", "yaml"}, f"{block.name}: unknown language {block.language}"


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_doc_block_runs(block: Block, workdir):
    if block.skip_reason is not None:
        pytest.skip(f"{block.name}: {block.skip_reason}")
    if block.language == "yaml":
        assert isinstance(yaml.safe_load(block.code), dict | list), block.name
        return
    if "../shared/realdata" in block.code and not REALDATA.is_dir():
        pytest.skip(f"{block.name}: real products not found at {REALDATA}")
    repo, env = workdir
    if block.language == "python":
        command = [sys.executable, "-c", block.code]
    else:
        command = ["bash", "-e", "-o", "pipefail", "-c", block.code]
    done = subprocess.run(
        command, cwd=repo, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S
    )
    assert done.returncode == 0, (
        f"{block.name} failed ({done.returncode}):\n{block.code}\n--- stdout\n{done.stdout[-2000:]}"
        f"\n--- stderr\n{done.stderr[-4000:]}"
    )
