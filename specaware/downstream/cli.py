"""Downstream commands (``specaware finetune``, ``probe``, ``baseline``, ``evaluate``), registered on the
``specaware`` command line, whose group reports any error as one line (see :mod:`hyper400k.console`). Each
prints the headline metrics and leaves ``metrics.json`` and the figures in the run's output folder; with
``--seeds N`` it repeats the run over N seeded splits and prints mean ± std (written to ``summary.json``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from specaware.downstream.runner import (
    SUMMARY_KEYS,
    DownstreamConfig,
    baseline,
    evaluate,
    finetune,
    probe,
    run_seeds,
)

ConfigArg = Annotated[Path, typer.Argument(help="Downstream config (YAML, pipelines/configs/).")]
OutputOpt = Annotated[str | None, typer.Option(help="Output folder (overrides the config).")]
CheckpointOpt = Annotated[
    str | None, typer.Option(help="Pretrained model.pt or published .pth (overrides the config).")
]
InitOpt = Annotated[str | None, typer.Option(help="pretrained or random (overrides the config).")]
StepsOpt = Annotated[int | None, typer.Option(help="Training steps (overrides the config).")]
SeedsOpt = Annotated[
    int, typer.Option(help="Repeat over N seeded splits (output/seedK each) and report mean ± std.")
]
BranchOpt = Annotated[
    bool | None,
    typer.Option("--pixel-branch/--no-pixel-branch", help="Skip path from the input spectra into the head."),
]
HEADLINE = ("OA", "AA", "kappa", "mIoU", "macro_F1", "change_F1", "change_IoU", "RMSE", "SAD")


def _headline(metrics: dict[str, Any]) -> str:
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in HEADLINE if k in metrics)


def _summary_line(summary: dict[str, Any]) -> str:
    shown = [k for k in SUMMARY_KEYS if k in summary and k in HEADLINE]
    cells = (f"{k} {summary[k]['mean']:.4f} ± {summary[k]['std']:.4f}" for k in shown)
    return f"{summary['runs']} seeds, mean ± std:  " + "  ".join(cells)


def _absent_note(metrics: dict[str, Any]) -> str | None:
    absent = metrics.get("absent_from_test")
    if not absent:
        return None
    return (
        f"note: absent from the test set: {', '.join(absent)}; AA, mIoU and macro F1 count them as 0 "
        "(the *_present scores in metrics.json average the other classes)"
    )


def _run(
    action: Callable[[DownstreamConfig], dict[str, Any]], path: Path, seeds: int = 1, **overrides: Any
) -> None:
    config = DownstreamConfig.from_yaml(path, **overrides)
    if seeds > 1:
        typer.echo(_summary_line(run_seeds(action, config, seeds)))
        return
    metrics = action(config)
    typer.echo(_headline(metrics))
    if "warning" in metrics:
        typer.echo(f"warning: {metrics['warning']}", err=True)
    note = _absent_note(metrics)
    if note:
        typer.echo(note)


def finetune_command(
    config: ConfigArg,
    output: OutputOpt = None,
    checkpoint: CheckpointOpt = None,
    init: InitOpt = None,
    steps: StepsOpt = None,
    pixel_branch: BranchOpt = None,
    seeds: SeedsOpt = 1,
) -> None:
    """Fine-tune encoder + task head, then evaluate on the test split."""
    _run(
        finetune,
        config,
        seeds,
        output=output,
        checkpoint=checkpoint,
        init=init,
        steps=steps,
        pixel_branch=pixel_branch,
    )


def probe_command(
    config: ConfigArg,
    output: OutputOpt = None,
    checkpoint: CheckpointOpt = None,
    init: InitOpt = None,
    steps: StepsOpt = None,
    seeds: SeedsOpt = 1,
) -> None:
    """Linear probe on the frozen encoder, then evaluate on the test split."""
    _run(probe, config, seeds, output=output, checkpoint=checkpoint, init=init, steps=steps)


def baseline_command(
    config: ConfigArg,
    method: Annotated[str, typer.Option(help="logreg or rf.")] = "rf",
    output: OutputOpt = None,
    seeds: SeedsOpt = 1,
) -> None:
    """Per-pixel spectral model on raw spectra (logistic regression or random forest)."""
    _run(baseline, config, seeds, mode=method, output=output, init="random", pixel_branch=False)


def evaluate_command(config: ConfigArg, output: OutputOpt = None) -> None:
    """Re-score the downstream.pt in the output folder; writes metrics.json and the figures."""
    _run(evaluate, config, output=output)
