"""The build report: counts per sensor × level, dropped-tile reasons, failures, QA histograms, quicklooks."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hyper400k.figures import plt, save_figure
from hyper400k.presets import PRESETS
from hyper400k.quality import Rule
from pipelines.product_task import QUICKLOOKS_DROPPED, QUICKLOOKS_KEPT

# QA field -> (x-axis label with units, fixed axis range or None for the data's range)
HISTOGRAM_FIELDS: dict[str, tuple[str, tuple[float, float] | None]] = {
    "valid_fraction": ("valid pixels / tile pixels", (0.0, 1.0)),
    "invalid_value_fraction": ("invalid values / tile values", (0.0, 1.0)),
    "cloud_score": ("cloud pixels / valid pixels", (0.0, 1.0)),
    "water_fraction": ("water pixels / valid pixels", (0.0, 1.0)),
    "dark_fraction": ("dark pixels / valid pixels", (0.0, 1.0)),
    "snr_median": ("median per-band SNR proxy (signal / noise, unitless)", None),
}
HISTOGRAM_BINS = 25


def summarise(
    records: list[dict[str, Any]],
    failures: list[dict[str, Any]],
    shard_index: dict[str, Any],
    ignored: list[dict[str, str]] = (),
) -> dict[str, Any]:
    groups: dict[str, dict[str, Any]] = {}
    for record in records:
        name = f"{record['meta']['sensor']}-{record['meta']['level']}"
        group = groups.setdefault(
            name, {"products": 0, "flight_lines": set(), "kept": 0, "dropped": Counter(), "input_bytes": 0}
        )
        group["products"] += 1
        group["flight_lines"].add(record["flight_line"])
        group["kept"] += record["kept"]
        group["dropped"].update(record["dropped"])
        group["input_bytes"] += record["input_bytes"]
    for group in groups.values():
        group["flight_lines"] = len(group["flight_lines"])
        group["dropped"] = dict(group["dropped"])
    splits = Counter()
    for record in records:
        splits[record["split"]] += record["kept"]
    return {
        "products_ok": len(records),
        "products_failed": len(failures),
        "samples": sum(r["kept"] for r in records),
        "tiles_dropped": sum(r["dropped_tiles"] for r in records),
        "samples_per_split": dict(splits),
        "groups": groups,
        "shards": len(shard_index.get("shards", [])),
        "shard_bytes": shard_index.get("total_bytes", 0),
        "failures": [{k: f.get(k) for k in ("product_id", "path", "reason")} for f in failures],
        "ignored": [dict(i) for i in ignored],
    }


def write_report(
    output: Path,
    records: list[dict[str, Any]],
    failures: list[dict[str, Any]],
    shard_index: dict[str, Any],
    ignored: list[dict[str, str]] = (),
    filtered: dict[str, Any] | None = None,
) -> Path:
    """Write ``report/report.json``, ``report/report.md`` and the figures; return the Markdown path.

    ``filtered`` is the provenance and per-product drops of a filtered build (:mod:`pipelines.refilter`),
    reported as its ``filter`` section."""
    folder = output / "report"
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarise(records, failures, shard_index, ignored)
    if filtered is not None:
        summary["filter"] = filtered
    figures = [_histograms(folder, records)] if records else []
    quicklooks = _copy_quicklooks(folder, output, records)
    _atomic_write(folder / "report.json", json.dumps(summary, indent=2, allow_nan=False))
    _atomic_write(folder / "report.md", _markdown(summary, figures, quicklooks))
    return folder / "report.md"


def _markdown(summary: dict[str, Any], figures: list[str], quicklooks: list[str]) -> str:
    lines = [
        "# hyper400k build report",
        "",
        f"- products: {summary['products_ok']} built, {summary['products_failed']} failed",
        f"- samples: {summary['samples']} kept, {summary['tiles_dropped']} tiles dropped",
        f"- samples per split: {summary['samples_per_split']}",
        f"- shards: {summary['shards']} ({summary['shard_bytes'] / 1e6:.1f} MB)",
        "",
        "## Per sensor × level",
        "",
        "| group | products | flight lines | samples kept | tiles dropped (reason: count) | input MB |",
        "|---|---|---|---|---|---|",
    ]
    for name, group in sorted(summary["groups"].items()):
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(group["dropped"].items())) or "none"
        lines.append(
            f"| {name} | {group['products']} | {group['flight_lines']} | {group['kept']} | {reasons} | {group['input_bytes'] / 1e6:.1f} |"
        )
    if "filter" in summary:
        lines += _filter_markdown(summary["filter"])
    if summary["failures"]:
        lines += ["", "## Failed products (re-run the build to retry them)", ""]
        lines += [
            f"- `{f['product_id']}` ({f['path']}): {f['reason'].splitlines()[0]}" for f in summary["failures"]
        ]
    if summary["ignored"]:
        lines += ["", "## Files under the input that are not products (ignored)", ""]
        lines += [f"- `{i['path']}`: {i['reason']}" for i in summary["ignored"]]
    if figures:
        lines += [
            "",
            "## QA histograms (kept tiles; dropped tiles for the fields computed before the drop; dashed: the rules)",
            "",
        ] + [f"![QA histograms]({f})" for f in figures]
    if quicklooks:
        lines += [
            "",
            "## Quicklooks",
            "",
            f"True colour from the bands nearest 640/550/460 nm, 2-98 % stretched; black: no data. A random sample of"
            f" up to {QUICKLOOKS_KEPT} kept and {QUICKLOOKS_DROPPED} dropped tiles per product.",
            *quicklooks,
        ]
    return "\n".join(lines) + "\n"


def _filter_markdown(section: dict[str, Any]) -> list[str]:
    """Where a filtered build came from, its rules, and what each rule dropped per product."""
    rules = section["rules"]
    bounds = "; ".join(
        f"{rule['field']} "
        + ", ".join(f"{k} {rule[k]}" for k in ("min", "max", "equals") if rule.get(k) is not None)
        for rule in rules["rules"]
    )
    lines = [
        "",
        f"## Filter: rule set {rules['name']}",
        "",
        f"- source: `{section['source']}`, generation {section['source_generation']}",
        f"- rules file: `{rules['file']}` (sha256 {rules['sha256']})"
        if rules.get("file")
        else "- rules: given in code",
        f"- rules: {bounds or 'none'}",
        f"- samples: {section['kept']} kept, {section['dropped_samples']} dropped ({_counts(section['dropped'])})",
        "",
        "| product | samples before | kept | dropped (rule: samples) |",
        "|---|---|---|---|",
    ]
    for product, counts in sorted(section["products"].items()):
        lines.append(
            f"| {product} | {counts['kept_before']} | {counts['kept']} | {_counts(counts['dropped'])} |"
        )
    return lines


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"


def _histograms(folder: Path, records: list[dict[str, Any]]) -> str:
    save_figure(qa_histogram_figure(records), folder / "qa_histograms.png", dpi=80)
    return "qa_histograms.png"


def qa_histogram_figure(records: list[dict[str, Any]]) -> Figure:
    """One panel per QA field: tiles per sensor × level stacked on shared bins, the preset's thresholds drawn."""
    rules = _rules_of(records)
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    for ax, (name, (label, span)) in zip(axes.flat, HISTOGRAM_FIELDS.items(), strict=True):
        by_group: dict[str, list[float]] = {}
        for record in records:
            group = f"{record['meta']['sensor']}-{record['meta']['level']}"
            by_group.setdefault(group, []).extend(record["qa_values"].get(name, []))
        by_group = {group: values for group, values in sorted(by_group.items()) if values}
        values = [v for vs in by_group.values() for v in vs]
        low, high = span or (min(values, default=0.0), max(values, default=1.0))
        bins = np.linspace(low, high if high > low else low + 1.0, HISTOGRAM_BINS + 1)
        if by_group:
            # One filled outline per group, not a bar per bin: the same stacked counts at a third of the drawing time.
            ax.hist(
                list(by_group.values()), bins=bins, stacked=True, histtype="stepfilled", label=list(by_group)
            )
        for rule in rules:
            for bound, word in ((rule.min, "min"), (rule.max, "max")):
                if rule.field == name and bound is not None:
                    ax.axvline(bound, color="black", linestyle="--", linewidth=1.2)
                    ax.annotate(
                        f"rule: {word} {bound:g}",
                        (bound, 1.0),
                        xycoords=("data", "axes fraction"),
                        xytext=(3, -12),
                        textcoords="offset points",
                        fontsize=8,
                    )
        ax.set_xlim(bins[0], bins[-1])
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(label, fontsize=9)
        ax.set_ylabel("tiles")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="lower center", ncol=max(1, len(labels)), fontsize=8, title="sensor-level"
    )
    preset = ", ".join(sorted({r.get("preset", "?") for r in records}))
    filters = ", ".join(sorted({f["name"] for r in records for f in r.get("filters", [])}))
    fig.suptitle(
        f"QA of every tile (kept and dropped); dashed: rules of preset {preset}"
        + (f" and of rule set {filters}" if filters else ""),
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.08, 1, 0.96))
    return fig


def _rules_of(records: list[dict[str, Any]]) -> list[Rule]:
    """The numeric rules of the presets the records were built with (unknown presets contribute none) and of
    the rule sets a filtered build applied (``filters``, see :mod:`pipelines.refilter`)."""
    rules: list[Rule] = []
    for name in sorted({record.get("preset") for record in records if record.get("preset") in PRESETS}):
        rules += [rule for rule in PRESETS[name].rules.rules if rule not in rules]
    for record in records:
        for applied in record.get("filters", []):
            rules += [rule for spec in applied["rules"] if (rule := Rule(**spec)) not in rules]
    return rules


def _copy_quicklooks(folder: Path, output: Path, records: list[dict[str, Any]]) -> list[str]:
    """Copy each product's sampled quicklooks (kept tiles, then dropped ones) and return Markdown for them:
    one table per product, a row per tile with its grid position and, for a dropped tile, its reasons."""
    target = folder / "quicklooks"
    target.mkdir(exist_ok=True)
    lines: list[str] = []
    for record in sorted(records, key=lambda r: r["product_id"]):
        looks = [(name, []) for name in record.get("quicklooks", [])]
        looks += [(d["name"], d["reasons"]) for d in record.get("dropped_quicklooks", [])]
        rows = []
        for name, reasons in looks:
            source = output / "work" / "products" / record["product_id"] / name
            if not source.is_file():
                continue
            _link_or_copy(source, target / name)
            position = name.removesuffix(".png").rsplit("_", 2)
            status = f"dropped: {', '.join(reasons)}" if reasons else "kept"
            rows.append(f"| {position[-2]} {position[-1]} | {status} | ![{name}](quicklooks/{name}) |")
        if rows:
            lines += [
                "",
                f"### {record['product_id']} ({record['kept']} kept, {record['dropped_tiles']} dropped)",
                "",
                "| tile (row, column of its top-left pixel) | fate | true colour |",
                "|---|---|---|",
                *rows,
            ]
    return lines


def _link_or_copy(source: Path, target: Path) -> None:
    """Make ``target`` the file ``source`` is: a hard link (no bytes copied; a re-run finds it already there),
    or a copy where links cannot be made. A product tiled again writes new quicklooks (new files), so a
    target that is no longer the source's file is replaced."""
    if target.exists():
        if os.path.samefile(source, target):
            return
        target.unlink()
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links, or the work folder on another one
        shutil.copyfile(source, target)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
