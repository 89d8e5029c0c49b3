"""Downstream commands (``specaware finetune``, ``probe``, ``baseline``, ``evaluate``), registered on the
``specaware`` command line. Each prints the headline metrics and leaves ``metrics.json`` and the figures in the
run's output folder.

The runner (torch, DeepSpeed, scikit-learn) is imported inside the commands, so ``specaware --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from hyper400k.console import print_error
from hyper400k.logs import allow_deepspeed

ConfigArg = Annotated[Path, typer.Argument(help="Downstream config (YAML, pipelines/configs/).")]
OutputOpt = Annotated[str | None, typer.Option(help="Output folder (overrides the config).")]
CheckpointOpt = Annotated[str | None, typer.Option(help="Pretrained model.pt (overrides the config).")]
InitOpt = Annotated[str | None, typer.Option(help="pretrained or random (overrides the config).")]
StepsOpt = Annotated[int | None, typer.Option(help="Training steps (overrides the config).")]
WarmupOpt = Annotated[int | None, typer.Option(help="Linear warm-up steps (overrides the config).")]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the metrics as one JSON object (fields: docs/json-output.md).")
]


def _run(action: str, path: Path, as_json: bool, **overrides: Any) -> None:
    """Run ``specaware.downstream.runner.<action>`` on the config at ``path`` and print its headline metrics."""
    from specaware.downstream import runner

    if action in ("finetune", "probe"):
        allow_deepspeed()  # training: DeepSpeed's warnings concern the run
    try:
        # with --json, stdout carries only the JSON
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            metrics = getattr(runner, action)(runner.DownstreamConfig.from_yaml(path, **overrides))
    except (ValueError, FileNotFoundError) as exc:
        print_error(exc)
        raise typer.Exit(code=2) from exc
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    keys = ("OA", "AA", "kappa", "mIoU", "macro_F1", "change_F1", "change_IoU")
    typer.echo("  ".join(f"{k} {metrics[k]:.4f}" for k in keys if k in metrics))


def finetune_command(
    config: ConfigArg,
    output: OutputOpt = None,
    checkpoint: CheckpointOpt = None,
    init: InitOpt = None,
    steps: StepsOpt = None,
    warmup_steps: WarmupOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune encoder + task head, then evaluate on the test split."""
    _run(
        "finetune",
        config,
        as_json,
        output=output,
        checkpoint=checkpoint,
        init=init,
        steps=steps,
        warmup_steps=warmup_steps,
    )


def probe_command(
    config: ConfigArg,
    output: OutputOpt = None,
    checkpoint: CheckpointOpt = None,
    init: InitOpt = None,
    steps: StepsOpt = None,
    warmup_steps: WarmupOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Linear probe on the frozen encoder, then evaluate on the test split."""
    _run(
        "probe",
        config,
        as_json,
        output=output,
        checkpoint=checkpoint,
        init=init,
        steps=steps,
        warmup_steps=warmup_steps,
    )


def baseline_command(
    config: ConfigArg,
    method: Annotated[str, typer.Option(help="logreg or rf.")] = "rf",
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Per-pixel spectral classifier on raw spectra (logistic regression or random forest)."""
    _run("baseline", config, as_json, mode=method, output=output, init="random")


def evaluate_command(config: ConfigArg, output: OutputOpt = None, as_json: JsonOpt = False) -> None:
    """Re-score the downstream.pt in the output folder; writes metrics.json and the figures."""
    _run("evaluate", config, as_json, output=output)
