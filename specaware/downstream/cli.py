"""Downstream commands (``specaware finetune``, ``probe``, ``baseline``, ``evaluate``), registered on the
``specaware`` command line, whose group reports any error as one line (see :mod:`hyper400k.console`). Each prints the headline metrics and leaves ``metrics.json`` and the figures in the
run's output folder."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from specaware.downstream.runner import DownstreamConfig, baseline, evaluate, finetune, probe

ConfigArg = Annotated[Path, typer.Argument(help="Downstream config (YAML, pipelines/configs/).")]
OutputOpt = Annotated[str | None, typer.Option(help="Output folder (overrides the config).")]
CheckpointOpt = Annotated[
    str | None, typer.Option(help="Pretrained model.pt or published .pth (overrides the config).")
]
InitOpt = Annotated[str | None, typer.Option(help="pretrained or random (overrides the config).")]
StepsOpt = Annotated[int | None, typer.Option(help="Training steps (overrides the config).")]


def _run(action: Callable[[DownstreamConfig], dict[str, Any]], path: Path, **overrides: Any) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    metrics = action(DownstreamConfig.from_yaml(path, **overrides))
    keys = ("OA", "AA", "kappa", "mIoU", "macro_F1", "change_F1", "change_IoU")
    typer.echo("  ".join(f"{k} {metrics[k]:.4f}" for k in keys if k in metrics))
    if "warning" in metrics:
        typer.echo(f"warning: {metrics['warning']}", err=True)


def finetune_command(
    config: ConfigArg,
    output: OutputOpt = None,
    checkpoint: CheckpointOpt = None,
    init: InitOpt = None,
    steps: StepsOpt = None,
) -> None:
    """Fine-tune encoder + task head, then evaluate on the test split."""
    _run(finetune, config, output=output, checkpoint=checkpoint, init=init, steps=steps)


def probe_command(
    config: ConfigArg,
    output: OutputOpt = None,
    checkpoint: CheckpointOpt = None,
    init: InitOpt = None,
    steps: StepsOpt = None,
) -> None:
    """Linear probe on the frozen encoder, then evaluate on the test split."""
    _run(probe, config, output=output, checkpoint=checkpoint, init=init, steps=steps)


def baseline_command(
    config: ConfigArg,
    method: Annotated[str, typer.Option(help="logreg or rf.")] = "rf",
    output: OutputOpt = None,
) -> None:
    """Per-pixel spectral classifier on raw spectra (logistic regression or random forest)."""
    _run(baseline, config, mode=method, output=output, init="random")


def evaluate_command(config: ConfigArg, output: OutputOpt = None) -> None:
    """Re-score the downstream.pt in the output folder; writes metrics.json and the figures."""
    _run(evaluate, config, output=output)
