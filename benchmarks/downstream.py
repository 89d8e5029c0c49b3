"""Real-data downstream result: EnMAP Potsdam land cover (fixed split) — pretrained vs. random-init SpecAware
(linear probe and fine-tune) vs. per-pixel spectral baselines, in one evaluation harness.

    python benchmarks/downstream.py --checkpoint build/pretrain-tiny/model.pt [--steps 300] [--output DIR]

Without ``--checkpoint`` only the random-init SpecAware (``tiny``) and the baselines run. The data loads once; every
run starts from ``pipelines/configs/probe_enmap_tiny.yaml`` / ``finetune_enmap_tiny.yaml`` with the mode, init,
steps and output overridden, and leaves its metrics.json / confusion.png / maps.png under ``--output/<run>``.
Prints a table (OA, AA, κ, mIoU, macro F1 on the test tiles) and, last line, all metrics as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from specaware.downstream.datasets import load_data
from specaware.downstream.runner import DownstreamConfig, run

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("OA", "AA", "kappa", "mIoU", "macro_F1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", help="pretrained tiny model.pt (omit: random init and baselines only)"
    )
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "realdata" / "enmap-potsdam"))
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the configs')")
    parser.add_argument("--output", default="build/downstream/enmap-benchmark")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    configs = ROOT / "pipelines" / "configs"
    probe_base, finetune_base = (
        replace(DownstreamConfig.from_yaml(configs / name, init="random"), checkpoint=args.checkpoint)
        for name in ("probe_enmap_tiny.yaml", "finetune_enmap_tiny.yaml")
    )
    data_spec = probe_base.data | {"root": args.data}
    data = load_data(data_spec)
    output = Path(args.output)

    runs: list[tuple[str, DownstreamConfig]] = [
        ("random forest (raw spectra)", replace(probe_base, mode="rf", init="random")),
        ("logistic regression (raw spectra)", replace(probe_base, mode="logreg", init="random")),
    ]
    inits = ["random"] + (["pretrained"] if args.checkpoint else [])
    for init in inits:
        runs.append((f"SpecAware {init} - linear probe", replace(probe_base, init=init)))
        runs.append((f"SpecAware {init} - fine-tune", replace(finetune_base, init=init)))

    results = {}
    print(
        f"EnMAP Potsdam, fixed split: {len(data.train)} train / {len(data.test)} test tiles, {data.sensor.bands} bands"
    )
    print(f"{'run':40s} " + " ".join(f"{k:>8s}" for k in KEYS) + "   time s")
    for name, config in runs:
        slug = name.lower().replace(" ", "-").replace("(", "").replace(")", "")
        config = replace(config, data=data_spec, output=str(output / slug), device=args.device)
        if args.steps is not None:
            config = replace(config, steps=args.steps, warmup_steps=min(config.warmup_steps, args.steps - 1))
        start = time.perf_counter()
        metrics = run(config, data)
        elapsed = time.perf_counter() - start
        results[name] = {k: metrics[k] for k in KEYS} | {
            "per_class_F1": metrics["per_class"]["F1"],
            "seconds": round(elapsed, 1),
            "steps": config.steps if config.mode in ("finetune", "probe") else None,
        }
        print(f"{name:40s} " + " ".join(f"{metrics[k]:8.4f}" for k in KEYS) + f"   {elapsed:6.1f}")
    print(json.dumps({"dataset": "enmap-potsdam", "checkpoint": args.checkpoint, "results": results}))


if __name__ == "__main__":
    main()
