"""The ``specaware`` command line: pretraining and feature extraction (thin layer over the library)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from hyper400k.console import DEBUG_HELP, JsonOpt, ReportingGroup, emit_json
from hyper400k.logs import allow_deepspeed, configure_logging

app = typer.Typer(
    help="SpecAware: pretrain the multi-sensor hyperspectral foundation model and use it.",
    no_args_is_help=True,
    cls=ReportingGroup,
)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also show the libraries' logs.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help=DEBUG_HELP)] = False,
) -> None:
    """Errors print one line ``error: <file>: <problem>`` and exit 2 (bad input), 3 (system) or 4 (bug)."""
    configure_logging(verbose)


@app.command()
def pretrain(
    config: Annotated[Path, typer.Option(help="Pretraining config (YAML).")] = Path(
        "pipelines/configs/pretrain_tiny.yaml"
    ),
    data: Annotated[str | None, typer.Option(help="Build folder or shards (overrides the config).")] = None,
    output: Annotated[str | None, typer.Option(help="Output folder (overrides the config).")] = None,
    steps: Annotated[int | None, typer.Option(help="Total steps (overrides the config).")] = None,
    warmup_steps: Annotated[
        int | None, typer.Option(help="Linear warm-up steps (overrides the config).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="tiny, base or large (overrides the config).")] = None,
    deepspeed_config: Annotated[
        str | None, typer.Option(help="DeepSpeed JSON (overrides the config).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """MAE pretraining on DeepSpeed; resumes from the output folder's latest checkpoint."""
    allow_deepspeed()  # training: DeepSpeed's warnings concern the run
    from specaware.train.config import PretrainConfig
    from specaware.train.pretrain import pretrain as run

    settings = PretrainConfig.from_yaml(
        config,
        data=data,
        output=output,
        steps=steps,
        warmup_steps=warmup_steps,
        model=model,
        deepspeed_config=deepspeed_config,
    )
    # with --json, stdout carries only the JSON: the per-row metrics go to stderr
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        result = run(settings, progress=progress)
    if as_json:
        emit_json(
            {
                "steps": result.steps,
                "final_loss": result.final_loss,
                "model": str(result.model_path),
                "metrics": str(result.metrics_path),
            }
        )
        return
    typer.echo(f"{result.steps} steps, final loss {result.final_loss:.4f}; model: {result.model_path}")


@app.command()
def embed(
    checkpoint: Annotated[
        Path, typer.Argument(help="A model.pt written by pretraining, or a published SpecAware .pth.")
    ],
    source: Annotated[str, typer.Argument(help="A product file, or a build/shards folder.")],
    output: Annotated[Path, typer.Argument(help="Output .npz (keys, cls, mean[, grid]).")],
    tile: Annotated[int, typer.Option(help="Tile size in pixels (products).")] = 64,
    crop: Annotated[
        int | None, typer.Option(help="Centre crop of each shard sample (default: the full tile).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Samples per forward pass.")] = 8,
    grid: Annotated[bool, typer.Option(help="Also store the patch-token grid of every item.")] = False,
    split: Annotated[str | None, typer.Option(help="Only samples of this split (shard sets).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Encoder features of every tile of a product, or every sample of a shard set (full tiles unless --crop)."""
    from specaware.embed import embed_batches, product_batches, save_features, shard_batches
    from specaware.model.checkpoint import load_model

    model = load_model(checkpoint)
    path = Path(source)
    is_shards = path.is_dir() or path.suffix in (".tar", ".json", ".parquet") or "{" in source
    batches = (
        shard_batches(source, batch_size, crop, split=split)
        if is_shards
        else product_batches(path, tile, batch_size)
    )
    features = embed_batches(model, batches, keep_grid=grid)
    save_features(output, features)
    if as_json:
        emit_json(
            {"items": len(features["keys"]), "features": int(features["cls"].shape[1]), "output": str(output)}
        )
        return
    typer.echo(f"{len(features['keys'])} items x {features['cls'].shape[1]} features -> {output}")


@app.command("import-weights")
def import_weights(
    source: Annotated[
        Path, typer.Argument(help="A published SpecAware checkpoint (.pth): MAE or encoder-only.")
    ],
    output: Annotated[Path, typer.Argument(help="Our checkpoint (.pt) to write.")],
) -> None:
    """Convert a published SpecAware checkpoint into ours, strictly (every tensor mapped, every shape equal)."""
    from specaware.model.checkpoint import save_checkpoint
    from specaware.model.published import import_published

    model, origin = import_published(source)
    save_checkpoint(model, output, origin=origin)
    count = sum(p.numel() for p in model.parameters())
    typer.echo(f"{origin['form']} checkpoint, {model.config.name} config, {count:,} parameters -> {output}")


def _register_downstream() -> None:
    """``finetune``, ``probe``, ``baseline`` and ``evaluate`` live in :mod:`specaware.downstream.cli`."""
    from specaware.downstream import cli as downstream

    app.command("finetune")(downstream.finetune_command)
    app.command("probe")(downstream.probe_command)
    app.command("baseline")(downstream.baseline_command)
    app.command("evaluate")(downstream.evaluate_command)


_register_downstream()

if __name__ == "__main__":  # `python -m specaware.cli`, as the deepspeed/torchrun launchers start it
    app()
