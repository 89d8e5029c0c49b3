"""``--json`` prints exactly one JSON object on stdout, whose fields are the ones docs/json-output.md documents."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import ROOT
from typer.testing import CliRunner

from hyper400k.synth import generate
from pipelines.cli import app

DOC = ROOT / "docs" / "json-output.md"


def documented_fields(command: str) -> set[str]:
    """The first-column names of the field table in the section whose heading names ``command``."""
    sections = re.split(r"^## ", DOC.read_text(), flags=re.M)
    section = next(s for s in sections if s.startswith(f"`{command}`") or f"`{command}`" in s.splitlines()[0])
    names: set[str] = set()
    for line in section.splitlines():
        cell = line.split("|")[1].strip() if line.startswith("| `") else ""
        names.update(re.findall(r"`(\w+)`", cell))
    return names


def run_json(args: list[str], code: int = 0) -> dict:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)  # one object, nothing else on stdout


@pytest.fixture(scope="module")
def small_build(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("json")
    generate("aviris-ng", "L1", 96, 64, folder / "input", seed=5)
    generate("aviris-ng", "L2", 96, 64, folder / "input", seed=5)
    return folder / "input", folder / "build"


def test_build_stats_verify_filter_and_tile_print_their_documented_fields(small_build, tmp_path):
    source, output = small_build
    options = ["--tile", "32", "--scheduler", "synchronous", "--no-progress", "--json"]
    built = run_json(["build", str(source), str(output), *options])
    assert set(built) == documented_fields("hyper400k build")
    assert built["ok"] and built["products"] == 2 and built["samples"] > 0 and built["failed"] == []

    stats = run_json(["stats", str(output), "--json"])
    assert set(stats) == documented_fields("hyper400k stats")
    assert stats["samples"] == built["samples"]
    assert set(next(iter(stats["groups"].values()))) == {"products", "flight_lines", "kept", "dropped"}

    verified = run_json(["verify", str(output), "--json"])
    assert set(verified) == documented_fields("hyper400k verify") and verified["ok"]

    rules = tmp_path / "rules.yaml"
    rules.write_text("name: strict\nrules:\n  - {field: valid_fraction, min: 0.999}\n")
    filtered = run_json(
        ["filter", str(output), "--rules", str(rules), "--out", str(tmp_path / "filtered"), "--json"]
    )
    assert set(filtered) == documented_fields("hyper400k filter")
    assert filtered["kept"] + filtered["dropped_samples"] == built["samples"]

    product = next(p for p in source.rglob("*_rdn_*_img") if p.suffix == "")
    tiled = run_json(["tile", str(product), str(tmp_path / "tile"), "--size", "32", "--json"])
    assert set(tiled) == documented_fields("hyper400k tile")
    assert tiled["kept"] + tiled["dropped_tiles"] == 3 * 2


def test_documented_downstream_fields_are_the_metrics_written():
    import numpy as np

    from specaware.downstream.metrics import classification_metrics

    metrics = classification_metrics(np.array([[5, 1], [2, 7]]), ["a", "b"])
    assert set(metrics) <= documented_fields("specaware finetune")


@pytest.mark.parametrize(
    ("program", "commands"),
    [
        ("pipelines.cli", ["inspect", "tile", "build", "filter", "verify", "stats", "demo"]),
        ("specaware.cli", ["pretrain", "embed", "finetune", "probe", "baseline", "evaluate"]),
    ],
)
def test_every_reporting_command_takes_json(program, commands):
    import importlib

    from typer.main import get_command

    group = get_command(importlib.import_module(program).app)
    for name in commands:
        options = {opt for param in group.commands[name].params for opt in param.opts}
        assert "--json" in options, f"{program} {name} has no --json"


def test_plan_prints_its_documented_fields(tmp_path):
    manifest = tmp_path / "m.yaml"
    made = CliRunner().invoke(app, ["manifest", str(manifest), "--sensor", "aviris-3", "--years", "2024"])
    assert made.exit_code == 0, made.output
    plan = run_json(["plan", str(manifest), "--cores", "16", "--json"])
    assert set(plan) == documented_fields("hyper400k plan")
    assert plan["total"]["products"] > 0 and plan["peak_disk_bytes"] > plan["total"]["shard_bytes"]
