"""Move a model to another patch size k, as the published fine-tuning does (spec section 2, defaults k = 8).

Only the tensors whose shape depends on k change. The V generator's output layer of the HyperEmbedding produces
V_c (r x k^2): its rows, read as r maps of k x k, are resized bilinearly (``align_corners=False``) to the new k, which
is the same as resizing the generated V itself, since the layer is linear. The GSD that scales the positions is
multiplied by k / 8 (``position_gsd_scale``), as the published fine-tuning example does, so a token's position keeps
meaning "index x the pretraining patch's ground size". The content summary pools to a fixed 28 x 28 grid
(``content_grid``) and does not change.

The published fine-tuning keeps only the encoder. Our model object also carries the hyper-decoder, whose U generator
(k^2 x r per band) and bias generator (k^2 per band) outputs are per-pixel too: they are resized the same way (ours),
so the result is still a complete model; feature extraction, probing and fine-tuning do not use it.
"""

from __future__ import annotations

from dataclasses import replace

import torch.nn.functional as F
from torch import Tensor

from specaware.model.mae import SpecAwareMAE

MODES = ("bilinear", "nearest")


def resize_pixel_rows(tensor: Tensor, before: int, old: int, new: int, mode: str = "bilinear") -> Tensor:
    """Rows laid out as (before, old, old, after) -> (before, new, new, after), resized over the k x k grid.

    ``tensor`` is a Linear weight (rows, in) or bias (rows,); ``after`` is whatever the row count leaves.
    """
    rows = tensor.shape[0]
    after = rows // (before * old * old)
    if after * before * old * old != rows:
        raise ValueError(f"{rows} rows are not {before} x {old} x {old} x n")
    columns = tensor.shape[1:]
    grid = tensor.reshape(before, old, old, after, -1).permute(0, 3, 4, 1, 2)  # (before, after, in, old, old)
    flat = grid.reshape(-1, 1, old, old).float()
    options = {"align_corners": False} if mode == "bilinear" else {}
    resized = F.interpolate(flat, size=(new, new), mode=mode, **options).to(tensor.dtype)
    resized = resized.reshape(before, after, -1, new, new).permute(0, 3, 4, 1, 2)
    return resized.reshape(before * new * new * after, *columns)


def change_patch_size(model: SpecAwareMAE, k: int, mode: str = "bilinear") -> SpecAwareMAE:
    """A new model at patch size ``k`` holding ``model``'s weights, k-dependent ones resized (see module docstring)."""
    if mode not in MODES:
        raise ValueError(f"unknown resize mode {mode!r}; use {' or '.join(MODES)}")
    config = model.config
    old = config.patch_size
    if k < 1 or config.image_size % k:
        raise ValueError(f"patch size {k} does not divide the image size {config.image_size}")
    moved = replace(config, patch_size=k, position_gsd_scale=config.position_gsd_scale * k / old)
    text = model.encoder.meta.text
    target = SpecAwareMAE(moved, (text.sensor_vectors, text.level_vectors, text.kind))
    # (key, rows laid out (before, k, k, after)): before = r for V (r x k^2), 1 for the decoder's U (k^2 x r), b (k^2).
    resized = {
        "encoder.embed.v_gen.6": config.rank,
        "hyper_decoder.u_gen.6": 1,
        "hyper_decoder.b_gen.3": 1,
    }
    state = {}
    wanted = target.state_dict()
    for key, tensor in model.state_dict().items():
        module = key.rsplit(".", 1)[0]
        if module in resized and k != old:
            tensor = resize_pixel_rows(tensor, resized[module], old, k, mode)
        if isinstance(tensor, Tensor) and tensor.shape != wanted[key].shape:
            raise ValueError(
                f"{key} has shape {tuple(tensor.shape)} at k = {old}, {tuple(wanted[key].shape)} at k = {k}"
            )
        state[key] = tensor
    target.load_state_dict(state, strict=True)
    return target.train(model.training)
