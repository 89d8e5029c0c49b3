"""Stream hyper400k shards into PyTorch training: on one GPU, or on many nodes under DeepSpeed / torchrun.

Open a shard set (a build folder, its ``catalog.json`` or ``patches.parquet``, a shards folder, a list of
tars, or a brace pattern), optionally narrowed by a query on the STAC patch index; wrap it in a
:class:`ShardDataset`, which yields ready batches homogeneous in band count; hand that to a ``DataLoader``
with ``batch_size=None``::

    from torch.utils.data import DataLoader

    from specaware.data import LoaderConfig, ShardDataset, TransformConfig, open_shards

    # Training samples of AVIRIS-NG and AVIRIS-3 (both levels) that are at least 90 % valid: a query on
    # the build's patch table (generations/<N>/patches.parquet) that picks the shard files and the keys inside them.
    shards = open_shards(
        "build", sensor=["aviris-ng", "aviris-3"], split="train", min_valid_fraction=0.9
    )
    # Or all shards: open_shards("build"), open_shards("build/shards"),
    # open_shards("build/shards/aviris-ng-L1/aviris-ng-L1-{000000..000123}.tar").
    # Any of these may be a URL, streamed through fsspec: open_shards("s3://bucket/build", split="train"),
    # open_shards("https://host/build/catalog.json").

    dataset = ShardDataset(
        shards,
        LoaderConfig(
            batch_size=16,            # per rank
            mode="bucket",            # every batch one sensor x level; "pad" mixes and pads bands
            weights="sensors",        # each sensor equally often, whatever its sample count
            batches_per_epoch=2000,   # per rank; identical on every rank (RANK / WORLD_SIZE from the env)
            seed=0,
        ),
        TransformConfig(
            crop=224,                     # random 224 x 224 crops of the 256 x 256 tiles
            flips=True, rot90=True,       # a random symmetry of the square per sample
            spectral_view_min_bands=64,   # a random contiguous window of >= 64 bands per batch
            bad_bands="zero",             # or "drop"
            normalize=True,               # per-band (x - mean) / std from the build's statistics
        ),
    )
    loader = DataLoader(dataset, batch_size=None, num_workers=8, pin_memory=True, persistent_workers=True)

    start_epoch, start_step = 0, 0            # from your checkpoint when resuming
    for epoch in range(start_epoch, 100):
        dataset.set_state(epoch, start_step if epoch == start_epoch else 0)
        for step, batch in enumerate(loader, start=start_step if epoch == start_epoch else 0):
            image = batch["image"].cuda(non_blocking=True)   # (B, C, 224, 224) float32
            wavelength = batch["wavelength"].cuda()          # (B, C) nm, per sample
            fwhm = batch["fwhm"].cuda()                      # (B, C) nm
            gsd = batch["gsd"].cuda()                        # (B,) m
            sensors, levels = batch["sensor"], batch["level"]  # B strings each
            ...  # model(image, wavelength, fwhm, gsd, sensors, levels), loss, step;
            # save (epoch, step + 1) with the checkpoint to resume from the next batch
    print(dataset.report())   # samples / shards skipped (schema violations are skipped and logged)

Every batch also carries ``valid`` (B, h, w) bool, ``good_bands`` and ``band_mask`` (B, C) bool and ``key``.
For evaluation use ``LoaderConfig(resampled=False, shuffle=False)`` (one pass over the shards) and
``TransformConfig(random_crop=False, flips=False, rot90=False)`` (centre crops).

Modules: :mod:`~specaware.data.source` (open a shard set), :mod:`~specaware.data.reader` (stream one shard),
:mod:`~specaware.data.plan` (the deterministic schedule), :mod:`~specaware.data.streams` (per-group
streams), :mod:`~specaware.data.transforms` (transforms and batch assembly), :mod:`~specaware.data.dataset`
(the ``IterableDataset``), :mod:`~specaware.data.report` (skip counts).
"""

from specaware.data.dataset import LoaderConfig, ShardDataset
from specaware.data.report import LoadReport
from specaware.data.source import Shard, ShardSet, open_shards
from specaware.data.transforms import TransformConfig

__all__ = [
    "LoadReport",
    "LoaderConfig",
    "Shard",
    "ShardDataset",
    "ShardSet",
    "TransformConfig",
    "open_shards",
]
