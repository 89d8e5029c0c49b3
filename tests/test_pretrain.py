"""Pretraining on DeepSpeed (CPU, gloo): the loss falls, resume is exact, the saved model round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import training_build

from specaware.dssync.launch import spawn

STEPS = 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A small real build: AVIRIS-NG L2 and AVIRIS-3 L1 on their real band grids, 64-pixel tiles."""
    products = [("aviris-ng", "L2", 160, 128, 5), ("aviris-ng", "L2", 160, 128, 6), ("aviris-3", "L1", 160, 128, 7)]
    return training_build(tmp_path_factory, products)


def _run(config: dict) -> float:
    """One pretraining rank (DeepSpeed holds one process group per process, so each run gets fresh ones)."""
    from specaware.train.config import PretrainConfig
    from specaware.train.pretrain import pretrain

    return pretrain(PretrainConfig(**config), progress=False).final_loss


def run_pretrain(world_size: int = 1, **config) -> float:
    return spawn(_run, world_size, config, timeout_s=600, threads_per_rank=2 if world_size == 1 else 1)[0]


def base_config(corpus: Path, output: Path, **changes) -> dict:
    return {
        "data": str(corpus),
        "output": str(output),
        "model": "tiny",
        "crop": 64,
        "batch_size": 4,
        "steps": STEPS,
        "warmup_steps": 2,
        "lr": 2e-3,
        "log_every": 1,
        "checkpoint_every": 4,
        "quicklook_every": 4,
        "text": "placeholder",
        "deepspeed_config": str(Path(__file__).resolve().parents[1] / "pipelines/configs/deepspeed_cpu.json"),
    } | changes


def test_resume_is_exact(corpus, tmp_path):
    straight = tmp_path / "straight"
    run_pretrain(**base_config(corpus, straight))
    resumed = tmp_path / "resumed"
    run_pretrain(**base_config(corpus, resumed))
    # interrupt: keep only the step-4 checkpoint, as if the run had died after it
    (resumed / "checkpoints" / "latest").write_text("step000004")
    run_pretrain(**base_config(corpus, resumed))
    a = torch.load(straight / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(resumed / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    diverged = [k for k in a if isinstance(a[k], torch.Tensor) and not torch.equal(a[k], b[k])]
    assert not diverged, f"resumed run diverged from the uninterrupted one in {diverged[:5]}"
    rows = (resumed / "metrics.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(
        range(1, STEPS + 1)
    )  # no duplicate or missing step


def test_loss_falls_and_model_round_trips(corpus, tmp_path):
    from specaware.data import LoaderConfig, ShardDataset, TransformConfig, open_shards
    from specaware.model.checkpoint import load_checkpoint

    output = tmp_path / "run"
    run_pretrain(**base_config(corpus, output, steps=40, checkpoint_every=40, quicklook_every=20, lr=3e-3))
    eval_set = ShardDataset(
        open_shards(corpus),
        LoaderConfig(batch_size=6, resampled=False, shuffle=False),
        TransformConfig(crop=64, random_crop=False, flips=False, rot90=False),
    )
    batch = next(iter(eval_set))
    trained = load_checkpoint(output / "model.pt").eval()
    from specaware.model.mae import build_model

    torch.manual_seed(0)
    fresh = build_model("tiny", text="placeholder").eval()

    def loss(model) -> float:
        with torch.no_grad():
            return float(model(batch, generator=torch.Generator().manual_seed(1)).loss)

    assert loss(trained) < 0.8 * loss(fresh)
    metrics = (output / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 41 and sorted((output / "quicklooks").glob("*.png"))
    assert json.loads((output / "pretrain_config.json").read_text())["steps"] == 40


def test_embed_cli_on_shards_and_product(corpus, tmp_path):
    import numpy as np
    from typer.testing import CliRunner

    from specaware.cli import app
    from specaware.model.checkpoint import save_checkpoint
    from specaware.model.mae import build_model

    checkpoint = save_checkpoint(build_model("tiny", text="placeholder"), tmp_path / "model.pt")
    runner = CliRunner()
    shards = runner.invoke(
        app, ["embed", str(checkpoint), str(corpus), str(tmp_path / "shards.npz"), "--grid"]
    )
    assert shards.exit_code == 0, shards.output
    features = np.load(tmp_path / "shards.npz")
    # Full 64-pixel tiles by default (8 x 8 tokens at k = 8), a centre crop only when asked.
    assert features["cls"].shape[0] == len(features["keys"]) > 0 and features["grid"].shape[1:3] == (8, 8)
    cropped = runner.invoke(
        app, ["embed", str(checkpoint), str(corpus), str(tmp_path / "crop.npz"), "--grid", "--crop", "32"]
    )
    assert cropped.exit_code == 0, cropped.output
    assert np.load(tmp_path / "crop.npz")["grid"].shape[1:3] == (4, 4)
    product = next(p for p in (corpus / "work" / "products").iterdir())
    record = json.loads((product / "record.json").read_text())
    tiles = runner.invoke(app, ["embed", str(checkpoint), record["path"], str(tmp_path / "product.npz")])
    assert tiles.exit_code == 0, tiles.output
    assert np.load(tmp_path / "product.npz")["mean"].shape == (
        4,
        build_model("tiny", text="placeholder").config.embed_dim,
    )


def test_dssync_pretraining_on_two_ranks(corpus, tmp_path):
    output = tmp_path / "dssync"
    dssync = {"enabled": True, "group_size": 2, "schedule": "hypercube", "seed": 0, "disagreement_every": 1}
    run_pretrain(
        2, **base_config(corpus, output, steps=6, dssync=dssync, checkpoint_every=6, quicklook_every=6)
    )
    rows = (output / "metrics.csv").read_text().splitlines()[1:]
    assert len(rows) == 6
    assert all(row.split(",")[-1] != "" for row in rows)  # replica disagreement is logged
    assert (output / "model.pt").is_file()
