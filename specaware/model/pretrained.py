"""Optional initialisation of the encoder's ViT blocks from a local ImageNet MAE ViT checkpoint (spec section 3).

Reads a file the user already has (e.g. MAE's ``mae_pretrain_vit_base.pth``, a dict with the weights under
``model``, or a bare timm ``VisionTransformer`` state dict); nothing is downloaded. Only the Transformer blocks and
the final norm are copied: the patch embedding, cls token and positions of an RGB ViT do not apply to SpecAware.
"""

from __future__ import annotations

from pathlib import Path

import torch

from specaware.model.encoder import SpecAwareEncoder


def load_mae_blocks(encoder: SpecAwareEncoder, path: str | Path) -> int:
    """Copy ``blocks.*`` and ``norm.*`` tensors from the checkpoint at ``path``; returns how many were copied.

    Shapes must match (depth and width of the config); a mismatch or a missing tensor is an error rather than a
    partial load.
    """
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    state = payload.get("model", payload)
    wanted = {
        f"{prefix}.{name}": tensor
        for prefix, module in (("blocks", encoder.blocks), ("norm", encoder.norm))
        for name, tensor in module.state_dict().items()
    }
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise ValueError(f"{path}: no {missing[0]} (and {len(missing) - 1} more) for this encoder")
    mismatched = [key for key, tensor in wanted.items() if tuple(state[key].shape) != tuple(tensor.shape)]
    if mismatched:
        key = mismatched[0]
        raise ValueError(
            f"{path}: {key} has shape {tuple(state[key].shape)}, encoder expects {tuple(wanted[key].shape)}"
        )
    with torch.no_grad():
        for prefix, module in (("blocks", encoder.blocks), ("norm", encoder.norm)):
            module.load_state_dict(
                {key[len(prefix) + 1 :]: state[key] for key in wanted if key.startswith(prefix + ".")}
            )
    return len(wanted)
