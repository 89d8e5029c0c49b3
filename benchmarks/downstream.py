"""Downstream comparison on two labelled scenes, mean ± std over seeds: per-pixel spectral baselines (logistic
regression, random forest on raw spectra) against SpecAware (linear probe, fine-tune, fine-tune + pixel branch),
from random init and, with ``--checkpoint``, from a pretrained model.

    python -m benchmarks.downstream [--seeds 3] [--steps 40] [--checkpoint build/pretrain-tiny/model.pt]

Scenes:

- EnMAP Potsdam (``../shared/realdata/enmap-potsdam``): real land cover, 32 × 32 tiles, its fixed split (14 train /
  2 test tiles); the seeds vary initialisation, batch order and augmentation only;
- a generated unmixing-style scene (:mod:`specaware.downstream.generated`): 5 real USGS spectra (two grasses, a
  conifer, sand, coastal water) on every second band of the 200-band AVIRIS set (100 bands, 400-2500 nm),
  96 × 96 px, labels = argmax of the abundances; each seed draws its own scene and its own stratified 16-px
  block split.

Every method of one seed sees the same split. SpecAware runs use a deliberately small encoder (``SMALL``) and few
steps so the whole comparison fits in minutes on two CPU cores: it measures the downstream machinery on equal
terms, not the capacity of a ViT-B trained for hours. Prints a table and, last line, all results as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from specaware.downstream.datasets import TaskData, load_data, read_wavelength_table
from specaware.downstream.generated import DEMO_MATERIALS, generate_unmixing_scene, write_unmixing_mat
from specaware.downstream.runner import DownstreamConfig, run, summarise

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"
KEYS = ("OA", "mIoU", "AA", "macro_F1")
# A small encoder (tiny's layout, narrower, no metadata dropout: its attention then takes the fused kernel, ~30 %
# faster on CPU), so the whole comparison fits in minutes on two CPU cores.
SMALL = {"embed_dim": 64, "heads": 2, "depth": 4, "meta_dim": 32, "rank": 8, "meta_dropout": 0.0}


def _methods(checkpoint: str | None) -> list[tuple[str, dict[str, Any]]]:
    """(name, config values) of every compared method."""
    methods: list[tuple[str, dict[str, Any]]] = [
        ("logistic regression (raw spectra)", {"mode": "logreg"}),
        ("random forest (raw spectra)", {"mode": "rf"}),
    ]
    for init in ["random"] + (["pretrained"] if checkpoint else []):
        values = {"init": init, "checkpoint": checkpoint}
        methods += [
            (f"SpecAware {init}: linear probe", values | {"mode": "probe", "lr": 1e-2, "weight_decay": 0.0}),
            (f"SpecAware {init}: fine-tune", values | {"mode": "finetune"}),
            (
                f"SpecAware {init}: fine-tune + pixel branch",
                values | {"mode": "finetune", "pixel_branch": True},
            ),
        ]
    return methods


def _potsdam(seed: int) -> tuple[dict[str, Any], TaskData]:
    spec = {"kind": "tiles", "root": str(REALDATA / "enmap-potsdam"), "scale": 1e-4, "gsd_m": 30.0}
    return spec, load_data(spec)


def _generated(seed: int, folder: Path) -> tuple[dict[str, Any], TaskData]:
    table = REALDATA / "wavelengths" / "indian_pines_corrected_200_wavelength_fwhm_nm.txt"
    wavelength, fwhm = read_wavelength_table(table)
    scene = generate_unmixing_scene(
        REALDATA / "speclib" / "s07_AV95_envi.hdr",
        wavelength[::2],
        rows=96,
        cols=96,
        endmembers=len(DEMO_MATERIALS),
        materials=DEMO_MATERIALS,
        seed=seed,
    )
    image, abundances = write_unmixing_mat(scene, folder / f"scene{seed}")
    spec = {
        "kind": "matrix",
        "image": str(image),
        "abundances": str(abundances),
        "wavelength_nm": wavelength[::2].tolist(),
        "fwhm_nm": fwhm[::2].tolist(),
        "class_names": ["lawn grass", "dry grass", "pinon pine", "quartz sand", "coastal water"],
        "protocol": "blocks",
        "block": 16,
        "window": 32,
        "seed": seed,
    }
    return spec, load_data(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="training steps of every SpecAware run")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--checkpoint", help="pretrained model.pt (omit: random init only)")
    parser.add_argument("--output", default="build/downstream/benchmark")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--scenes", nargs="*", default=["generated", "potsdam"])
    args = parser.parse_args()
    output = Path(args.output)
    torch.set_num_threads(1)  # one thread per process: the shared cores are oversubscribed anyway

    results: dict[str, Any] = {}
    for scene_name in args.scenes:
        runs: dict[str, list[dict[str, Any]]] = {}
        seconds: dict[str, float] = {}
        data: TaskData | None = None
        for seed in range(args.seeds):
            spec, data = _potsdam(seed) if scene_name == "potsdam" else _generated(seed, output / "data")
            base = DownstreamConfig(
                task="segmentation",
                data=spec,
                output="",
                init="random",
                model_overrides=SMALL if not args.checkpoint else {},
                neck_width=32,
                head_channels=32,
                steps=args.steps,
                warmup_steps=min(10, args.steps - 1),
                batch_size=args.batch_size,
                lr=2e-3,
                rf_trees=100,
                seed=seed,
                device=args.device,
                log_every=max(1, args.steps // 3),
            )
            for name, values in _methods(args.checkpoint):
                slug = name.lower().replace(" ", "-").replace(":", "").replace("(", "").replace(")", "")
                config = replace(base, **values, output=str(output / scene_name / slug / f"seed{seed}"))
                start = time.perf_counter()
                runs.setdefault(name, []).append(run(config, data))
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
        assert data is not None
        print(
            f"\n{scene_name}: {data.protocol}; {data.sensor.bands} bands, {data.num_classes} classes, "
            f"{args.seeds} seeds, {args.steps} steps per SpecAware run"
        )
        print(f"{'method':48s} " + " ".join(f"{k:>15s}" for k in KEYS) + "   s/run")
        results[scene_name] = {"protocol": data.protocol, "bands": data.sensor.bands, "methods": {}}
        for name, method_runs in runs.items():
            summary = summarise(method_runs)
            cells = " ".join(f"{summary[k]['mean']:7.3f} ± {summary[k]['std']:5.3f}" for k in KEYS)
            print(f"{name:48s} {cells}   {seconds[name] / args.seeds:5.1f}")
            results[scene_name]["methods"][name] = {
                k: {"mean": summary[k]["mean"], "std": summary[k]["std"]} for k in KEYS
            } | {
                "absent_from_test": sorted({c for r in method_runs for c in r["absent_from_test"]}),
                "per_class_F1": [round(v, 4) for v in np.array(summary["per_class"]["F1_mean"]).tolist()],
                "seconds_per_run": round(seconds[name] / args.seeds, 1),
            }
    print(
        json.dumps(
            {
                "seeds": args.seeds,
                "steps": args.steps,
                "checkpoint": args.checkpoint,
                "model": SMALL,
                **results,
            }
        )
    )


if __name__ == "__main__":
    main()
