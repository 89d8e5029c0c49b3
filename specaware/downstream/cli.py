"""Downstream commands (``specaware finetune``, ``probe``, ``baseline``, ``evaluate``), registered on the
``specaware`` command line, whose group reports any error as one line (see :mod:`hyper400k.console`). Each
prints the headline metrics and leaves ``metrics.json`` and the figures in the run's output folder; with
``--seeds N`` it repeats the run over N seeded splits and prints mean ± std (written to ``summary.json``).

The runner (torch, DeepSpeed, scikit-learn) is imported inside the commands, so ``specaware --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from hyper400k.console import JsonOpt, emit_json
from hyper400k.logs import allow_deepspeed

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
PatchOpt = Annotated[
    int | None,
    typer.Option(help="Patch size k of the backbone (4 or 2 for finer tokens; default: the checkpoint's)."),
]
BranchOpt = Annotated[
    bool | None,
    typer.Option("--pixel-branch/--no-pixel-branch", help="Skip path from the input spectra into the head."),
]
HEADLINE = ("OA", "AA", "kappa", "mIoU", "macro_F1", "change_F1", "change_IoU", "RMSE", "SAD")

WarmupOpt = Annotated[int | None, typer.Option(help="Linear warm-up steps (overrides the config).")]


def _headline(metrics: dict[str, Any]) -> str:
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in HEADLINE if k in metrics)


def _summary_line(summary: dict[str, Any], keys: tuple[str, ...]) -> str:
    shown = [k for k in keys if k in summary and k in HEADLINE]
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


def _run(action: str, path: Path, as_json: bool, seeds: int = 1, **overrides: Any) -> None:
    """Run ``specaware.downstream.runner.<action>`` on the config at ``path`` (over ``seeds`` seeded splits when
    more than one) and print its headline metrics, or all of them as JSON."""
    from specaware.downstream import runner

    if action in ("finetune", "probe"):
        allow_deepspeed()  # training: DeepSpeed's warnings concern the run
    config = runner.DownstreamConfig.from_yaml(path, **overrides)
    run = getattr(runner, action)
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        result = runner.run_seeds(run, config, seeds) if seeds > 1 else run(config)
    if as_json:
        emit_json(result)
        return
    if seeds > 1:
        typer.echo(_summary_line(result, runner.SUMMARY_KEYS))
        return
    typer.echo(_headline(result))
    if "warning" in result:
        typer.echo(f"warning: {result['warning']}", err=True)
    note = _absent_note(result)
    if note:
        typer.echo(note)


def finetune_command(
    config: ConfigArg,
    output: OutputOpt = None,
    checkpoint: CheckpointOpt = None,
    init: InitOpt = None,
    steps: StepsOpt = None,
    pixel_branch: BranchOpt = None,
    patch_size: PatchOpt = None,
    seeds: SeedsOpt = 1,
    warmup_steps: WarmupOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune encoder + task head, then evaluate on the test split."""
    _run(
        "finetune",
        config,
        as_json,
        seeds,
        output=output,
        checkpoint=checkpoint,
        init=init,
        steps=steps,
        pixel_branch=pixel_branch,
        patch_size=patch_size,
        warmup_steps=warmup_steps,
    )


def probe_command(
    config: ConfigArg,
    output: OutputOpt = None,
    checkpoint: CheckpointOpt = None,
    init: InitOpt = None,
    steps: StepsOpt = None,
    seeds: SeedsOpt = 1,
    warmup_steps: WarmupOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Linear probe on the frozen encoder, then evaluate on the test split."""
    _run(
        "probe",
        config,
        as_json,
        seeds,
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
    seeds: SeedsOpt = 1,
    as_json: JsonOpt = False,
) -> None:
    """Per-pixel spectral model on raw spectra (logistic regression or random forest)."""
    _run("baseline", config, as_json, seeds, mode=method, output=output, init="random", pixel_branch=False)


def evaluate_command(config: ConfigArg, output: OutputOpt = None, as_json: JsonOpt = False) -> None:
    """Re-score the downstream.pt in the output folder; writes metrics.json and the figures."""
    _run("evaluate", config, as_json, output=output)
