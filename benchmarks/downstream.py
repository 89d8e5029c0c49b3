"""Downstream comparison on two labelled scenes, mean ± std over seeds: per-pixel spectral baselines (logistic
regression, random forest on raw spectra) against SpecAware (linear probe, fine-tune, fine-tune + pixel branch),
from random init and from a model pretrained on the demo corpus by the benchmark itself.

    python -m benchmarks.downstream [--seeds 3] [--steps 40] [--pretrain-steps 300] [--scenes potsdam generated]

Pretraining (``--pretrain-steps N``, 0 for random init only; or ``--checkpoint model.pt`` to bring one): the
benchmark builds the demo corpus (:func:`pipelines.demo.generate_demo_input`, every sensor, L1 and L2, two flight
lines, 256 × 256 px, 64-px tiles; or ``--corpus`` names a build such as ``make build-dataset``'s
``build/demo/build``) and runs the MAE pretraining of ``specaware pretrain`` on it with ``PRETRAIN`` (the ``SMALL``
encoder below, 32-px crops, batch 8), once: model, config and loss curve are cached in
``<output>/pretrain-<N>steps`` and reused by later runs with the same settings (so a second process can run the
other scene). Every SpecAware run then starts from that checkpoint's configuration: ``pretrained`` from its
weights, ``random`` from a fresh initialisation of the same model.

Scenes:

- EnMAP Potsdam (``../shared/realdata/enmap-potsdam``): real land cover, 32 × 32 tiles, its fixed split (14 train /
  2 test tiles); the seeds vary initialisation, batch order and augmentation only;
- a generated unmixing-style scene (:mod:`specaware.downstream.generated`): 5 real USGS spectra (two grasses, a
  conifer, sand, coastal water) on every second band of the 200-band AVIRIS set (100 bands, 400-2500 nm),
  96 × 96 px, labels = argmax of the abundances; each seed draws its own scene and its own stratified 16-px
  block split.

Every method of one seed sees the same split and the same class weighting (``--class-weighting``, default
``balanced``: inverse training frequency, for the networks' loss and the scikit-learn baselines alike); an
unweighted logistic regression is kept as a reference row. SpecAware runs use a deliberately small encoder
(``SMALL``) and few steps so the whole comparison fits on two CPU cores: it measures the downstream machinery and
what a short pretraining adds, on equal terms, not the capacity of a ViT-B trained for hours. Prints a table and,
last line, all results (with the pretraining's config and loss at its first and last logged step) as one JSON
object.
"""

from __future__ import annotations

import argparse
import csv
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
from specaware.train.config import PretrainConfig

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"
KEYS = ("OA", "mIoU", "AA", "macro_F1")
# A small encoder (tiny's layout, narrower, no metadata dropout: its attention then takes the fused kernel, ~30 %
# faster on CPU), so the whole comparison fits on two CPU cores.
SMALL = {"embed_dim": 64, "heads": 2, "depth": 4, "meta_dim": 32, "rank": 8, "meta_dropout": 0.0}
# The benchmark's pretraining: the SMALL encoder, 32-px crops (the downstream window) of the demo tiles, batch 8,
# AdamW 1e-3 with a 10 % warm-up and cosine decay, raw physical units as in the paper.
PRETRAIN = {
    "model": "tiny",
    "model_overrides": SMALL,
    "crop": 32,
    "batch_size": 8,
    "lr": 1e-3,
    "min_lr": 1e-5,
    "text": "minilm",
    "deepspeed_config": str(ROOT / "pipelines" / "configs" / "deepspeed_cpu.json"),
}
# The demo corpus the benchmark builds when no --corpus is given: the demo's flight lines at half size.
CORPUS_PIXELS = 256
CORPUS_TILE = 64


def demo_corpus(folder: Path, pixels: int = CORPUS_PIXELS) -> Path:
    """The demo corpus (every sensor, L1 and L2, two flight lines, ``pixels`` × ``pixels``, 64-px tiles) built in
    ``folder``; an existing build there is reused. Returns the build folder."""
    from hyper400k.presets import get_preset
    from pipelines.build import BuildConfig, build
    from pipelines.demo import generate_demo_input

    output = folder / "build"
    if (output / "catalog.json").is_file():
        return output
    generate_demo_input(folder / "input", lines=pixels, samples=pixels)
    result = build(
        BuildConfig(
            input=folder / "input",
            output=output,
            preset=get_preset("hyper400k", tile=CORPUS_TILE),
            scheduler="synchronous",
            progress=False,
        )
    )
    if not result.ok:
        raise SystemExit(f"error: {output}: the demo corpus build failed")
    return output


def pretrain_config(corpus: Path, folder: Path, steps: int, seed: int = 0) -> PretrainConfig:
    """The benchmark's pretraining run (``PRETRAIN``) of ``steps`` steps on ``corpus`` into ``folder``."""
    return PretrainConfig(
        data=str(corpus),
        output=str(folder),
        steps=steps,
        warmup_steps=max(1, steps // 10) if steps > 1 else 0,
        seed=seed,
        log_every=max(1, min(10, steps // 10)),
        checkpoint_every=steps,
        quicklook_every=steps,
        **PRETRAIN,
    )


def loss_curve_ends(metrics_csv: Path, rows_per_end: int = 5) -> dict[str, dict[str, float]]:
    """The pretraining's first and last logged rows (step, loss, SAM, Charbonnier) from its ``metrics.csv``, and
    the mean loss over up to ``rows_per_end`` logged rows at each end (one batch's loss swings with its sensor
    and level: radiance and reflectance differ in scale)."""
    with metrics_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise SystemExit(f"error: {metrics_csv}: no logged step")
    keys = ("step", "loss", "sam", "charbonnier")
    ends = {"first": rows[:rows_per_end], "last": rows[-rows_per_end:]}
    return {
        "first": {k: float(rows[0][k]) for k in keys},
        "last": {k: float(rows[-1][k]) for k in keys},
        **{
            f"{end}_mean": {k: float(np.mean([float(r[k]) for r in picked])) for k in keys[1:]}
            for end, picked in ends.items()
        },
    }


def pretrained_checkpoint(config: PretrainConfig) -> tuple[Path, dict[str, Any]]:
    """Run ``config``'s pretraining once: when its folder already holds a ``model.pt`` pretrained with the same
    config it is reused, else pretraining runs (in this process, the code of ``specaware pretrain``). Returns the
    model path and the record for the benchmark JSON (config, loss curve ends, seconds, whether cached)."""
    from specaware.train.pretrain import pretrain

    folder = Path(config.output)
    model, recorded = folder / "model.pt", folder / "pretrain_config.json"
    wanted = json.loads(json.dumps(config.to_dict()))
    cached = model.is_file() and recorded.is_file() and json.loads(recorded.read_text()) == wanted
    seconds = 0.0
    if not cached:
        if model.is_file():
            raise SystemExit(
                f"error: {folder}: holds a model pretrained with other settings; remove it or use another --output"
            )
        start = time.perf_counter()
        pretrain(config, progress=False)
        seconds = time.perf_counter() - start
    record = {
        "config": wanted,
        "loss": loss_curve_ends(folder / "metrics.csv"),
        "seconds": round(seconds, 1),
        "cached": cached,
        "model": str(model),
    }
    return model, record


def _methods(checkpoint: str | None, pretrained: bool, weighting: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, config values) of every compared method; SpecAware from ``checkpoint``'s configuration (random
    init) and, when ``pretrained``, from its weights. With class weighting on, an unweighted logistic regression
    is added as the reference the issue's aim names."""
    methods: list[tuple[str, dict[str, Any]]] = [("logistic regression (raw spectra)", {"mode": "logreg"})]
    if weighting != "none":
        methods.append(
            ("logistic regression (raw spectra, unweighted)", {"mode": "logreg", "class_weighting": "none"})
        )
    methods.append(("random forest (raw spectra)", {"mode": "rf"}))
    for init in ["random"] + (["pretrained"] if pretrained else []):
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


def compare(
    scene_name: str,
    seeds: int,
    base: DownstreamConfig,
    methods: list[tuple[str, dict[str, Any]]],
    output: Path,
) -> dict[str, Any]:
    """Every method on ``scene_name`` (``potsdam`` or ``generated``) over ``seeds`` seeds from ``base``; prints
    the table and returns the scene's results."""
    runs: dict[str, list[dict[str, Any]]] = {}
    seconds: dict[str, float] = {}
    data: TaskData | None = None
    for seed in range(seeds):
        spec, data = _potsdam(seed) if scene_name == "potsdam" else _generated(seed, output / "data")
        for name, values in methods:
            slug = name.lower().replace(" ", "-").replace(":", "").replace("(", "").replace(")", "")
            slug = slug.replace(",", "")
            config = replace(
                base, data=spec, seed=seed, **values, output=str(output / scene_name / slug / f"seed{seed}")
            )
            start = time.perf_counter()
            runs.setdefault(name, []).append(run(config, data))
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
    assert data is not None
    print(
        f"\n{scene_name}: {data.protocol}; {data.sensor.bands} bands, {data.num_classes} classes, "
        f"{seeds} seeds, {base.steps} steps per SpecAware run"
    )
    print(f"{'method':48s} " + " ".join(f"{k:>15s}" for k in KEYS) + "   s/run")
    result: dict[str, Any] = {"protocol": data.protocol, "bands": data.sensor.bands, "methods": {}}
    for name, method_runs in runs.items():
        summary = summarise(method_runs)
        cells = " ".join(f"{summary[k]['mean']:7.3f} ± {summary[k]['std']:5.3f}" for k in KEYS)
        print(f"{name:48s} {cells}   {seconds[name] / seeds:5.1f}")
        result["methods"][name] = {
            k: {"mean": summary[k]["mean"], "std": summary[k]["std"]} for k in KEYS
        } | {
            "absent_from_test": sorted({c for r in method_runs for c in r["absent_from_test"]}),
            "per_class_F1": [round(v, 4) for v in np.array(summary["per_class"]["F1_mean"]).tolist()],
            "warnings": [r["warning"] for r in method_runs if "warning" in r],
            "seconds_per_run": round(seconds[name] / seeds, 1),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="training steps of every SpecAware run")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--pretrain-steps",
        type=int,
        default=300,
        help="pretraining steps on the demo corpus (0: random init only)",
    )
    parser.add_argument("--corpus", help="a build folder to pretrain on (default: build the demo corpus)")
    parser.add_argument("--checkpoint", help="a pretrained model.pt to use instead of pretraining")
    parser.add_argument("--class-weighting", choices=["balanced", "none"], default="balanced")
    parser.add_argument("--output", default="build/downstream/benchmark")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--scenes", nargs="+", choices=["generated", "potsdam"], default=["generated", "potsdam"]
    )
    parser.add_argument(
        "--methods", nargs="+", help="run only the methods whose name contains one of these (default: all)"
    )
    args = parser.parse_args()
    output = Path(args.output)
    torch.set_num_threads(1)  # one thread per process: the shared cores are oversubscribed anyway

    checkpoint, pretraining = args.checkpoint, None
    if checkpoint is None and args.pretrain_steps > 0:
        corpus = Path(args.corpus) if args.corpus else demo_corpus(output / "corpus")
        folder = output / f"pretrain-{args.pretrain_steps}steps"
        path, pretraining = pretrained_checkpoint(pretrain_config(corpus, folder, args.pretrain_steps))
        checkpoint = str(path)
    base = DownstreamConfig(
        task="segmentation",
        data={},
        output="",
        init="random",
        checkpoint=checkpoint,
        model_overrides=SMALL if checkpoint is None else {},
        neck_width=32,
        head_channels=32,
        steps=args.steps,
        warmup_steps=min(10, args.steps - 1),
        batch_size=args.batch_size,
        lr=2e-3,
        class_weighting=args.class_weighting,
        rf_trees=100,
        device=args.device,
        log_every=max(1, args.steps // 3),
    )
    methods = _methods(checkpoint, checkpoint is not None, args.class_weighting)
    if args.methods:
        methods = [m for m in methods if any(part in m[0] for part in args.methods)]
        if not methods:
            raise SystemExit(f"error: --methods {args.methods} matches none of the benchmark's methods")
    results = {scene: compare(scene, args.seeds, base, methods, output) for scene in args.scenes}
    report = {
        "seeds": args.seeds,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "class_weighting": args.class_weighting,
        "checkpoint": checkpoint,
        "model": SMALL if pretraining or checkpoint is None else "the checkpoint's",
        "pretraining": pretraining,
        **results,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
