"""The hypernetwork generators of the HyperEmbedding and the hyper-decoder (spec section 2), in the published layout.

A factor generator maps a d-dim band condition to the flattened entries of one factor matrix:
LayerNorm -> Linear d->hidden -> GELU -> Dropout -> Linear hidden->bottleneck -> GELU -> Linear bottleneck->out.
A bias generator is shorter: LayerNorm -> Linear d->bottleneck -> GELU -> Linear bottleneck->out.
The Dropout layer is kept even at p = 0 so the layer indices (and so the state-dict names) never depend on the
configuration; :mod:`specaware.model.published` maps them one to one onto the published checkpoints.
"""

from __future__ import annotations

from torch import nn


def factor_generator(dim: int, hidden: int, bottleneck: int, out: int, dropout: float) -> nn.Sequential:
    """The U / V generator: indices 0 LN, 1 Linear, 4 Linear, 6 Linear (the output layer)."""
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, bottleneck),
        nn.GELU(),
        nn.Linear(bottleneck, out),
    )


def bias_generator(dim: int, bottleneck: int, out: int) -> nn.Sequential:
    """The bias generator: indices 0 LN, 1 Linear, 3 Linear (the output layer, zero at initialisation)."""
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, bottleneck), nn.GELU(), nn.Linear(bottleneck, out))


def zero_output_layer(generator: nn.Sequential) -> None:
    """Zero the last Linear of ``generator``: the published initialisation of both bias generators."""
    nn.init.zeros_(generator[-1].weight)
    nn.init.zeros_(generator[-1].bias)
