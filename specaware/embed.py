"""Encoder features for users' downstream work: per sample of a shard set, or per tile of a product.

Each item gets the cls token and the mean of its patch tokens (both E-dimensional) and, optionally, the
full patch-token grid. Results are written as one ``.npz`` (keys, cls, mean[, grid]) so any framework reads them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hyper400k.product import open_product
from hyper400k.sensors import sensor as sensor_spec
from hyper400k.tiling import TileGrid, iter_tiles
from specaware.data import LoaderConfig, ShardDataset, TransformConfig, open_shards
from specaware.model.mae import SpecAwareMAE


@torch.no_grad()
def embed_batches(
    model: SpecAwareMAE, batches: Iterator[dict[str, Any]], keep_grid: bool = False
) -> dict[str, Any]:
    """Features of every batch: ``keys``, ``cls`` (n, E), ``mean`` (n, E) and, with ``keep_grid``, ``grid``."""
    model.eval()
    keys, cls, mean, grids = [], [], [], []
    for batch in batches:
        out = model.encode(batch)
        tokens = out.tokens.float()
        keys += list(batch["key"])
        cls.append(tokens[:, 0].cpu().numpy())
        mean.append(tokens[:, 1:].mean(dim=1).cpu().numpy())
        if keep_grid:
            rows, cols = out.grid
            grids.append(tokens[:, 1:].reshape(len(tokens), rows, cols, -1).cpu().numpy())
    if not keys:
        raise ValueError("nothing to embed: the selection holds no sample")
    result: dict[str, Any] = {
        "keys": np.array(keys),
        "cls": np.concatenate(cls),
        "mean": np.concatenate(mean),
    }
    if keep_grid:
        result["grid"] = np.concatenate(grids)
    return result


def shard_batches(
    source: str | Path, batch_size: int, crop: int | None, **selection: Any
) -> Iterator[dict[str, Any]]:
    """One pass over a shard set (or a selection of it), no augmentation: full tiles, or centre crops of ``crop``."""
    dataset = ShardDataset(
        open_shards(source, **selection),
        LoaderConfig(batch_size=batch_size, resampled=False, shuffle=False),
        TransformConfig(crop=crop, random_crop=False, flips=False, rot90=False),
    )
    return iter(dataset)


def product_batches(path: str | Path, tile: int, batch_size: int) -> Iterator[dict[str, Any]]:
    """Tiles of one product (no quality filtering: invalid pixels are 0), batched for the encoder."""
    with open_product(path) as scene:
        meta = scene.meta
        ceiling = sensor_spec(meta.sensor).ceiling(meta.level)
        good = torch.as_tensor(meta.good_bands)
        pending: list[tuple[str, torch.Tensor]] = []
        for item in iter_tiles(scene, TileGrid(tile, tile, pad_edges=False)):
            data = torch.from_numpy(item.data)
            data[~((data >= 0) & (data <= ceiling))] = 0.0  # no-data, padding, negative and saturated values
            data[~good] = 0.0
            pending.append((f"{meta.product_id}_r{item.row}_c{item.col}", data))
            if len(pending) == batch_size:
                yield _tile_batch(pending, meta)
                pending = []
        if pending:
            yield _tile_batch(pending, meta)


def _tile_batch(items: list[tuple[str, torch.Tensor]], meta: Any) -> dict[str, Any]:
    n = len(items)
    return {
        "image": torch.stack([d for _, d in items]),
        "wavelength": torch.as_tensor(meta.wavelength_nm, dtype=torch.float32).expand(n, -1),
        "fwhm": torch.as_tensor(meta.fwhm_nm, dtype=torch.float32).expand(n, -1),
        "gsd": torch.full((n,), float(meta.gsd_m) if meta.gsd_m else float("nan")),
        "sensor": [meta.sensor] * n,
        "level": [meta.level] * n,
        "key": [k for k, _ in items],
    }


def save_features(path: Path, features: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **features)
    tmp.replace(path)
    return path
