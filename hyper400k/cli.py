"""The ``hyper400k`` command line: a thin layer over the library (no logic lives here)."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hyper400k.errors import ProductError
from hyper400k.product import open_product

app = typer.Typer(
    help="Airborne imaging-spectrometer products to a STAC-indexed WebDataset corpus.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress and warnings.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def fail(exc: Exception) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(code=2)


@app.command()
def inspect(
    product: Annotated[Path, typer.Argument(help="Data file or ENVI header of a product.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    sensor: Annotated[str | None, typer.Option(help="Override the sensor (needed only for 'other').")] = None,
    level: Annotated[str | None, typer.Option(help="Override the level: L1 or L2.")] = None,
    scale: Annotated[
        float | None, typer.Option(help="Multiply stored values by this to get physical units.")
    ] = None,
    when: Annotated[
        datetime | None, typer.Option("--datetime", help="Acquisition time (UTC) if the files lack it.")
    ] = None,
) -> None:
    """Print a product's scene metadata."""
    try:
        with open_product(product, sensor=sensor, level=level, scale=scale, when=when) as scene:
            meta = scene.meta
    except (ProductError, ValueError) as exc:
        raise fail(exc) from exc
    if as_json:
        typer.echo(meta.to_json())
        return
    table = Table(title=meta.product_id, show_header=False)
    record = meta.to_json_dict()
    wl = meta.wavelength_nm
    record["wavelength_nm"] = f"{len(wl)} bands, {wl.min():.2f}-{wl.max():.2f} nm"
    record["fwhm_nm"] = f"{meta.fwhm_nm.min():.3f}-{meta.fwhm_nm.max():.3f} nm ({meta.fwhm_source})"
    record["good_bands"] = f"{int(meta.good_bands.sum())} of {meta.bands}"
    record["footprint"] = "polygon" if meta.footprint else None
    for key in ("fwhm_source", "lines", "samples", "bands"):
        record.pop(key)
    for key, value in record.items():
        table.add_row(key, value if isinstance(value, str) else json.dumps(value))
    console.print(table)


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
    try:
        path = generate(sensor, level, lines, samples, output, seed=seed, speclib=speclib, fmt=fmt)
    except (ProductError, ValueError) as exc:
        raise fail(exc) from exc
    typer.echo(str(path))
