"""The build report: counts per sensor × level, dropped-tile reasons, failures, QA histograms, quicklooks."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from hyper400k.figures import plt, save_figure

HISTOGRAM_FIELDS = (
    "valid_fraction",
    "invalid_value_fraction",
    "cloud_score",
    "water_fraction",
    "dark_fraction",
    "snr_median",
)
MAX_QUICKLOOKS = 12


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
) -> Path:
    """Write ``report/report.json``, ``report/report.md`` and the figures; return the Markdown path."""
    folder = output / "report"
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarise(records, failures, shard_index, ignored)
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
            "## QA histograms (kept tiles; dropped tiles for the fields computed before the drop)",
            "",
        ] + [f"![QA histograms]({f})" for f in figures]
    if quicklooks:
        lines += ["", "## Quicklooks (true colour from 640/550/460 nm)", ""] + [
            f"![{Path(q).stem}]({q})" for q in quicklooks
        ]
    return "\n".join(lines) + "\n"


def _histograms(folder: Path, records: list[dict[str, Any]]) -> str:
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for ax, name in zip(axes.flat, HISTOGRAM_FIELDS, strict=True):
        by_group: dict[str, list[float]] = {}
        for record in records:
            group = f"{record['meta']['sensor']}-{record['meta']['level']}"
            by_group.setdefault(group, []).extend(record["qa_values"].get(name, []))
        for group, values in sorted(by_group.items()):
            if values:
                ax.hist(values, bins=30, alpha=0.5, label=group)
        ax.set_title(name)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, folder / "qa_histograms.png", dpi=80)
    return "qa_histograms.png"


def _copy_quicklooks(folder: Path, output: Path, records: list[dict[str, Any]]) -> list[str]:
    target = folder / "quicklooks"
    target.mkdir(exist_ok=True)
    copied = []
    for record in sorted(records, key=lambda r: r["product_id"]):
        for name in record["quicklooks"][:1]:
            source = output / "work" / "products" / record["product_id"] / name
            if source.is_file() and len(copied) < MAX_QUICKLOOKS:
                shutil.copyfile(source, target / name)
                copied.append(f"quicklooks/{name}")
    return copied


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
