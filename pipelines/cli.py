"""The ``hyper400k`` command line: a thin layer over the library (no logic lives here).

Heavy libraries (GDAL, xarray, dask, torch) are imported inside the commands that use them, so ``--help`` and
argument errors answer at once.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hyper400k.console import DEBUG_HELP, EXIT_FAILED, JsonOpt, ReportingGroup, emit_json, format_table
from hyper400k.logs import configure_logging

# What a product's files may not state, given on the command line (over its sidecar): inspect and tile.
SensorOpt = Annotated[str | None, typer.Option(help="Override the sensor (needed only for 'other').")]
LevelOpt = Annotated[str | None, typer.Option(help="Override the level: L1 or L2.")]
ScaleOpt = Annotated[float | None, typer.Option(help="Multiply stored values by this to get physical units.")]
WhenOpt = Annotated[
    datetime | None, typer.Option("--datetime", help="Acquisition time (UTC) if the files lack it.")
]

app = typer.Typer(
    help="Airborne imaging-spectrometer products to a STAC-indexed WebDataset corpus.",
    no_args_is_help=True,
    cls=ReportingGroup,
)
err = Console(stderr=True, soft_wrap=True)


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also show the libraries' logs (dask, per-product INFO).")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help=DEBUG_HELP)] = False,
) -> None:
    """Errors print one line ``error: <file>: <problem>`` and exit 2 (bad input), 3 (system) or 4 (bug)."""
    configure_logging(verbose)


def _reasons(counts: dict[str, int]) -> str:
    """``reason: count, …`` for drop counters, or ``none``."""
    return ", ".join(f"{reason}: {count}" for reason, count in sorted(counts.items())) or "none"


@app.command()
def inspect(
    product: Annotated[Path, typer.Argument(help="Data file or ENVI header of a product.")],
    as_json: JsonOpt = False,
    sensor: SensorOpt = None,
    level: LevelOpt = None,
    scale: ScaleOpt = None,
    when: WhenOpt = None,
) -> None:
    """Print a product's scene metadata."""
    from hyper400k.product import open_product

    with open_product(product, sensor=sensor, level=level, scale=scale, when=when) as scene:
        meta = scene.meta
    if as_json:
        typer.echo(meta.to_json())
        return
    record = meta.to_json_dict()
    wl = meta.wavelength_nm
    record["wavelength_nm"] = f"{len(wl)} bands, {wl.min():.2f}-{wl.max():.2f} nm"
    record["fwhm_nm"] = f"{meta.fwhm_nm.min():.3f}-{meta.fwhm_nm.max():.3f} nm ({meta.fwhm_source})"
    record["good_bands"] = f"{int(meta.good_bands.sum())} of {meta.bands}"
    record["footprint"] = "polygon" if meta.footprint else None
    for key in ("fwhm_source", "lines", "samples", "bands"):
        record.pop(key)
    rows = [(key, value if isinstance(value, str) else json.dumps(value)) for key, value in record.items()]
    typer.echo(format_table(("field", "value"), rows, meta.product_id))


@app.command()
def synth(
    sensor: Annotated[str, typer.Option(help="aviris-ng, aviris-classic or aviris-3.")],
    level: Annotated[str, typer.Option(help="L1 (radiance) or L2 (reflectance).")],
    lines: Annotated[int, typer.Option(min=1)],
    samples: Annotated[int, typer.Option(min=1)],
    output: Annotated[Path, typer.Option(help="Folder to write the product into.")],
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same product.")] = 0,
    speclib: Annotated[
        Path | None, typer.Option(help="ENVI spectral library (.hdr) to draw surfaces from.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="envi, or netcdf (AVIRIS-3 only).")] = "envi",
) -> None:
    """Write a realistic product in the sensor's real on-disk format."""
    from hyper400k.synth import generate

    output.mkdir(parents=True, exist_ok=True)
    path = generate(sensor, level, lines, samples, output, seed=seed, speclib=speclib, fmt=fmt)
    typer.echo(str(path))


@app.command()
def tile(
    product: Annotated[Path, typer.Argument(help="Data file or ENVI header of a product.")],
    output: Annotated[Path, typer.Argument(help="Folder for the tiles (one shard) and quicklooks.")],
    preset: Annotated[str, typer.Option(help="Tiling + quality preset.")] = "hyper400k",
    size: Annotated[int | None, typer.Option(help="Tile size in pixels (default: the preset's).")] = None,
    stride: Annotated[int | None, typer.Option(help="Stride in pixels (default: the tile size).")] = None,
    as_json: JsonOpt = False,
    sensor: SensorOpt = None,
    level: LevelOpt = None,
    scale: ScaleOpt = None,
    when: WhenOpt = None,
) -> None:
    """Tile one product (for debugging): writes its kept samples as one shard and prints why tiles were dropped."""
    from hyper400k.patches import ProductSummary, iter_outcomes
    from hyper400k.presets import get_preset
    from hyper400k.product import open_product
    from hyper400k.sensors import identify
    from hyper400k.shards import ShardWriter

    chosen = get_preset(preset, size, stride)
    summary = ProductSummary()
    overrides = dict(sensor=sensor, level=level, scale=scale, when=when)
    with (
        open_product(product, **overrides) as scene,
        ShardWriter(output, scene.meta.product_id, 1 << 62) as writer,
    ):
        name = identify(Path(scene.meta.files["data"]))
        flight_line = name.flight_line if name else scene.meta.product_id
        segment = name.segment if name else None
        for outcome in iter_outcomes(scene, chosen, split="train", flight_line=flight_line, segment=segment):
            summary.add(outcome)
            if outcome.sample is not None:
                writer.write(outcome.sample)
    if as_json:
        emit_json(
            {
                "product": str(product),
                "output": str(output),
                "kept": summary.kept,
                "dropped_tiles": summary.dropped_tiles,
                "dropped": dict(sorted(summary.dropped.items())),
            }
        )
        return
    typer.echo(
        f"{summary.kept} tiles kept, {summary.dropped_tiles} dropped ({_reasons(summary.dropped)}) -> {output}"
    )


@app.command()
def build(
    input: Annotated[Path, typer.Argument(help="Folder of products, or a manifest (YAML/JSON) to download.")],
    output: Annotated[
        str,
        typer.Argument(
            help="Output folder (shards/, catalog.json, report/), or an object-store prefix such as "
            "s3://bucket/prefix or gs://bucket/prefix."
        ),
    ],
    preset: Annotated[
        str, typer.Option(help="Tiling + quality preset: hyper400k or hyper400k-qa.")
    ] = "hyper400k",
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address, or 'synchronous'.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes of the local cluster.")] = None,
    tile_size: Annotated[
        int | None, typer.Option("--tile", help="Tile size (default: the preset's).")
    ] = None,
    stride: Annotated[int | None, typer.Option(help="Stride (default: the tile size).")] = None,
    shard_mb: Annotated[float, typer.Option(help="Target shard size in MB.")] = 1000.0,
    splits: Annotated[str, typer.Option(help="train,validate,test fractions.")] = "0.8,0.1,0.1",
    seed: Annotated[int, typer.Option(help="Seed for splits and shard mixing.")] = 0,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    window: Annotated[
        int, typer.Option(min=1, help="Products per packing task (one sensor × level, mixed in its shards).")
    ] = 8,
    verify: Annotated[
        bool, typer.Option("--verify", help="Check the sha256 of every committed shard, not only its size.")
    ] = False,
    keep_downloads: Annotated[
        bool,
        typer.Option(
            "--keep-downloads",
            help="Keep what a manifest build fetched (default: each download is deleted once its product is tiled).",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild an existing build whose settings differ (else refused).")
    ] = False,
    work: Annotated[
        Path | None,
        typer.Option(
            help="Local work folder of an s3:// or gs:// output (spools, window records, one window of shards "
            "at a time); keep it between runs. Default: a folder per output URL under ~/.cache/hyper400k.",
        ),
    ] = None,
    storage_option: Annotated[
        list[str] | None,
        typer.Option(
            "--storage-option",
            help="KEY=VALUE option of the object-store filesystem (s3fs, gcsfs), e.g. endpoint_url=http://"
            "host:9000; repeatable. Credentials otherwise come from the usual AWS_* / GOOGLE_* settings.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build the corpus: tile + filter every product, pack shards, write the STAC catalog and report.

    Re-running adds new products, drops removed ones and repairs missing or damaged shards; the output
    changes from one consistent generation to the next. A re-run with other settings (preset, tile, stride,
    shard size, seed, splits) is refused unless --force, which rebuilds everything under the new ones."""
    from hyper400k.presets import get_preset
    from hyper400k.splits import SPLITS
    from hyper400k.storage import is_url, parse_storage_options
    from pipelines.build import BuildConfig
    from pipelines.build import build as run_build

    try:
        fractions = dict(zip(SPLITS, (float(v) for v in splits.split(",")), strict=True))
    except ValueError as exc:
        raise typer.BadParameter(
            f"expected three fractions like 0.8,0.1,0.1, got {splits!r}", param_hint="'--splits'"
        ) from exc
    if work is not None and not is_url(output):
        raise typer.BadParameter(
            "applies to an s3:// or gs:// output; a local output keeps its work/ inside it",
            param_hint="'--work'",
        )
    config = BuildConfig(
        input=input,
        output=output if is_url(output) else Path(output),
        preset=get_preset(preset, tile_size, stride),
        scheduler=scheduler,
        workers=workers,
        split_fractions=fractions,
        seed=seed,
        shard_bytes=int(shard_mb * 1e6),
        progress=progress,
        window_products=window,
        verify=verify,
        keep_downloads=keep_downloads,
        force=force,
        work=work,
        storage_options=parse_storage_options(storage_option or []),
    )
    result = run_build(config, on_stage=lambda message: err.print(f"[cyan]{message}[/cyan]"))
    samples = sum(r["kept"] for r in result.records)
    failed = [
        {"product_id": failure["product_id"], "reason": failure["reason"].splitlines()[0]}
        for failure in result.failures
    ]
    if as_json:
        emit_json(
            {
                "ok": result.ok,
                "output": str(output),
                "products": len(result.records),
                "samples": samples,
                "failed": failed,
                "ignored": result.ignored,
                "report": str(result.report_path),
                "catalog": None if result.catalog_path is None else str(result.catalog_path),
            }
        )
    else:
        typer.echo(
            f"{len(result.records)} products, {samples} samples -> {output}; report: {result.report_path}"
        )
        if result.ignored:
            typer.echo(
                f"ignored: {len(result.ignored)} file(s) under the input that are not products (see the report)"
            )
        for failure in failed:
            typer.echo(f"failed: {failure['product_id']}: {failure['reason']}", err=True)
    if not result.ok:
        raise typer.Exit(code=EXIT_FAILED)


@app.command()
def verify(
    directory: Annotated[
        str,
        typer.Argument(
            help="A build folder (with catalog.json) or its URL (s3://, gs://, https://), or a shard folder "
            "with index.json."
        ),
    ],
    samples: Annotated[bool, typer.Option(help="Also decode and schema-check every sample.")] = True,
    storage_option: Annotated[
        list[str] | None,
        typer.Option("--storage-option", help="KEY=VALUE option of the object-store filesystem; repeatable."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check every shard against the index (size, sha256) and every sample against the schema; in a build,
    also cross-check the index, patch table and catalog (counts and keys)."""
    from hyper400k.stac import find_catalog
    from hyper400k.storage import as_location, configure, is_url, parent, parse_storage_options
    from hyper400k.verify import verify_build, verify_shards

    if is_url(directory):
        configure(directory, parse_storage_options(storage_option or []))
    location = as_location(directory)
    catalog = find_catalog(location)
    if catalog is not None:
        report = verify_build(parent(catalog), check_samples=samples, progress=not as_json)
    else:
        report = verify_shards(location, check_samples=samples, progress=not as_json)
    typer.echo(report.to_json() if as_json else report.to_text())
    if not report.ok:
        raise typer.Exit(code=EXIT_FAILED)


@app.command()
def stats(
    directory: Annotated[Path, typer.Argument(help="A build folder (with report/report.json).")],
    as_json: JsonOpt = False,
) -> None:
    """Print a build's counts per sensor × level and its drop reasons."""
    path = directory / "report" / "report.json"
    if not path.is_file():
        raise FileNotFoundError(2, "no build report here", str(path))
    summary = json.loads(path.read_text())
    if as_json:
        emit_json(
            {
                "build": str(directory),
                "samples": summary["samples"],
                "shards": summary["shards"],
                "samples_per_split": summary["samples_per_split"],
                "products_failed": summary["products_failed"],
                "groups": {
                    name: {key: group[key] for key in ("products", "flight_lines", "kept", "dropped")}
                    for name, group in sorted(summary["groups"].items())
                },
            }
        )
        return
    rows = [
        (name, group["products"], group["flight_lines"], group["kept"], _reasons(group["dropped"]))
        for name, group in sorted(summary["groups"].items())
    ]
    title = f"{directory}: {summary['samples']} samples in {summary['shards']} shards"
    typer.echo(format_table(("group", "products", "flight lines", "samples", "dropped"), rows, title))
    typer.echo(
        f"samples per split: {summary['samples_per_split']}; failed products: {summary['products_failed']}"
    )


@app.command()
def filter(
    build_dir: Annotated[
        Path, typer.Argument(help="The build to filter (read only; its committed generation).")
    ],
    rules: Annotated[
        Path, typer.Option("--rules", help="Rule set (YAML): {name, rules: [{field, min|max|equals}]}.")
    ],
    output: Annotated[Path, typer.Option("--out", help="Folder for the new build (must not exist).")],
    shard_mb: Annotated[
        float | None, typer.Option(help="Target shard size in MB (default: the source build's).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Apply a rule set to the QA stored in a build's samples and write the kept ones as a new, complete build
    (shards, index, patch table, catalog, report), without re-reading any product."""
    from hyper400k.quality import RuleSet
    from pipelines.refilter import filter_build

    result = filter_build(
        build_dir,
        RuleSet.from_yaml(rules),
        output,
        rules_file=rules,
        shard_bytes=None if shard_mb is None else int(shard_mb * 1e6),
        progress=progress and not as_json,
    )
    if as_json:
        emit_json(
            {
                "output": str(output),
                "source": result.provenance["source"],
                "source_generation": result.provenance["source_generation"],
                "rules_sha256": result.provenance["rules"]["sha256"],
                "kept": result.kept,
                "dropped_samples": result.dropped_samples,
                "dropped": dict(sorted(result.dropped.items())),
                "products": result.products,
                "report": str(result.report_path),
                "catalog": str(result.catalog_path),
            }
        )
        return
    typer.echo(
        f"{result.kept} samples kept, {result.dropped_samples} dropped ({_reasons(result.dropped)})"
        f" -> {output}; report: {result.report_path}"
    )


@app.command()
def demo(
    output: Annotated[Path, typer.Argument(help="Folder for the demo input (input/) and build (build/).")],
    lines: Annotated[int, typer.Option(help="Lines per product.")] = 512,
    samples: Annotated[int, typer.Option(help="Samples per product.")] = 512,
    flight_lines: Annotated[int, typer.Option(help="Flight lines per sensor (each with L1 and L2).")] = 2,
    tile_size: Annotated[
        int | None, typer.Option("--tile", help="Tile size (default: the preset's, 256).")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address, or 'synchronous'.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate the built-in demo input (every sensor, L1 and L2) and build it end to end."""
    from pipelines.demo import generate_demo_input

    err.print("[cyan]generating demo products[/cyan]")
    generate_demo_input(output / "input", lines=lines, samples=samples, flight_lines=flight_lines)
    build(
        output / "input",
        output / "build",
        workers=workers,
        scheduler=scheduler,
        tile_size=tile_size,
        shard_mb=200.0,
        as_json=as_json,
    )


def _register_archive() -> None:
    """``manifest`` and ``plan`` live in :mod:`pipelines.cli_archive`."""
    from pipelines import cli_archive

    app.command("manifest")(cli_archive.manifest_command)
    app.command("plan")(cli_archive.plan_command)


_register_archive()

if __name__ == "__main__":  # `python -m pipelines.cli`
    app()
