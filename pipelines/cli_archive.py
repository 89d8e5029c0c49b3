"""``hyper400k manifest`` and ``hyper400k plan``: from product identifiers to a download manifest and its cost.

The library is imported inside the commands (it pulls in numpy), so ``hyper400k --help`` stays fast. Errors go
to the command line's group, which prints them as one line.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hyper400k.console import JsonOpt, format_table

if TYPE_CHECKING:
    from hyper400k.archive.plan import BuildPlan

PRESETS = ("hyper400k",)


def manifest_command(
    output: Annotated[Path, typer.Argument(help="Manifest file to write (YAML).")],
    preset: Annotated[
        str, typer.Option(help="Published list to start from (ignored with --ids).")
    ] = "hyper400k",
    ids: Annotated[
        Path | None, typer.Option(help="Text file of product identifiers, one a line, instead of the preset.")
    ] = None,
    sensor: Annotated[
        list[str] | None,
        typer.Option(help="Keep this sensor (aviris-classic, aviris-ng, aviris-3); repeatable."),
    ] = None,
    level: Annotated[list[str] | None, typer.Option(help="Keep this level (L1, L2); repeatable.")] = None,
    mirror: Annotated[
        list[str] | None,
        typer.Option(help="FROM=TO: fetch URLs under prefix FROM from TO instead; repeatable."),
    ] = None,
    years: Annotated[
        str | None, typer.Option(help="Keep these acquisition years: 2019, 2019,2021, 2016-2018.")
    ] = None,
) -> None:
    """Turn product identifiers into a download manifest that `hyper400k build` takes."""
    from hyper400k.archive.manifests import make_manifest, parse_mirrors, write_manifest
    from hyper400k.archive.product_list import ProductListError, load_preset, parse_years, read_ids, select
    from hyper400k.sensors import sensor as sensor_spec

    if ids is None and preset not in PRESETS:
        raise ProductListError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    for name in sensor or ():
        sensor_spec(name)
    for name in level or ():
        if name not in ("L1", "L2"):
            raise ProductListError(f"level must be L1 or L2, not {name!r}")
    products = read_ids(ids) if ids is not None else load_preset()
    chosen = select(
        products, sensors=sensor or (), levels=level or (), years=parse_years(years) if years else ()
    )
    plan = make_manifest(chosen, parse_mirrors(mirror or ()))
    write_manifest(plan, output)
    eras = Counter(d.era for d in plan.downloads)
    missing = Counter(u.era for u in plan.unavailable)
    rows = [(era, eras[era], missing[era]) for era in sorted(eras.keys() | missing.keys())]
    typer.echo(format_table(("era", "downloads", "unavailable"), rows, f"{output}: {len(chosen)} products"))
    for reason, count in Counter(u.reason for u in plan.unavailable).items():
        typer.echo(f"unavailable ({count}): {reason}")


def plan_command(
    manifest: Annotated[Path, typer.Argument(help="Manifest written by `hyper400k manifest` (or by hand).")],
    as_json: JsonOpt = False,
    cores: Annotated[
        int | None, typer.Option(min=1, help="Cores the build runs on (default: this machine's).")
    ] = None,
    etl_mb_s: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="Per-core tiling throughput, MB/s (default: the README's benchmarks.etl --quick figure).",
        ),
    ] = None,
    window: Annotated[int, typer.Option(min=1, help="Products per packing task (the build's --window).")] = 8,
    keep_downloads: Annotated[
        bool, typer.Option("--keep-downloads", help="Plan for a build run with --keep-downloads.")
    ] = False,
) -> None:
    """Report what building a manifest will cost: products, download, patches, shard bytes, peak disk, time."""
    from hyper400k.archive.manifests import read_unavailable
    from hyper400k.archive.plan import ETL_MB_S_PER_CORE, plan_build
    from hyper400k.manifest import load_manifest

    entries = load_manifest(manifest)
    unavailable = len(read_unavailable(manifest))
    plan = plan_build(
        entries,
        unavailable=unavailable,
        cores=cores or os.cpu_count() or 1,
        etl_mb_s_per_core=etl_mb_s or ETL_MB_S_PER_CORE,
        window_products=window,
        keep_downloads=keep_downloads,
    )
    typer.echo(json.dumps(plan.to_dict(), allow_nan=False) if as_json else plan_text(plan, manifest))


def plan_text(plan: BuildPlan, manifest: Path) -> str:
    """The plan as a table and a few lines; ``~`` marks figures resting on typical shapes, not known sizes."""

    def row(name: str, g: Any) -> tuple[str, ...]:
        mark = "~" if g.download_estimated else ""
        return (
            name,
            str(g.products),
            f"{mark}{_size(g.download_bytes)}",
            f"~{g.patches:,.0f}",
            f"~{_size(g.shard_bytes)}",
        )

    rows = [row(name, g) for name, g in sorted(plan.groups.items())] + [row("total", plan.total)]
    lines = [
        format_table(("group", "products", "download", "patches", "shards"), rows, f"{manifest}: build plan"),
        f"peak disk: ~{_size(plan.peak_disk_bytes)} (packed shards + ~{_size(plan.in_flight_bytes)} in flight: "
        + (
            "every download and extracted member (--keep-downloads), and a window of spools per core)"
            if plan.keep_downloads
            else f"per core, one product's download and a window of {plan.window_products} spools)"
        ),
        f"build time: ~{plan.build_hours:.1f} h on {plan.cores} cores at {plan.etl_mb_s_per_core:g} MB/s per core "
        "(tiling, QA and shards; downloads not included)",
        f"products without a download (listed in the manifest): {plan.unavailable}",
        "~ estimate from per-era typical shapes (hyper400k.archive.plan.TYPICAL) where sizes are unknown",
    ]
    if plan.unidentified:
        lines.append(f"entries with no product identifier (not counted): {', '.join(plan.unidentified)}")
    return "\n".join(lines)


def _size(count: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count:.0f} B"
