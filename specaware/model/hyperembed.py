"""HyperEmbedding (spec section 2): channel-wise low-rank patch embedding generated from the band conditions z.

Token n of a sample: t_n = s * (sum_c U_c V_c p_{n,c} + b), with U_c (E x r) and V_c (r x k^2) generated per band
from z_c by MLPs, p_{n,c} the k x k pixels of band c in patch n, b generated from the band-mean of z.

Evaluation order (why it is cheap). The U generator ends in a Linear layer: U_c = reshape(A g_c + a) with g_c its
h-dim hidden features (h = the generator's 64-wide bottleneck), A its (E*r) x h weight (read as an E x (r*h) matrix) and a its bias (an E x r matrix). So

    sum_c U_c V_c p_{n,c} = A . vec( sum_c v_{n,c} outer g_c ) + a . sum_c v_{n,c},      v_{n,c} = V_c p_{n,c}

which we evaluate as batched matrix products:
  1. S = sum_c v_{n,c} g_c^T and s = sum_c v_{n,c}   (B, N, r, h), (B, N, r): ``contraction.band_contraction``,
     bands in chunks, nothing of size C * N kept for the backward;
  2. t = S A^T + s a^T                                (B, N, E): GEMMs against views of the generator's own weight
     and bias.
Neither U (B, C, E, r), nor the per-sample kernel U V (B, E, C, k^2), nor the upstream (B, N, C, E) tensor is ever
formed, nor anything of size C * N beyond one chunk of bands. Peak memory grows with B*N*r*h + B*N*E (+ one chunk).
At the paper's sizes (N = 784, C = 425, E = 768, r = k^2 = 64, h = 64) this needs fewer multiplies than building the
per-sample kernel U V and convolving (``benchmarks/model.py`` measures ours, the kernel and the upstream formulation).
The result is mathematically identical to the explicit form; :meth:`HyperEmbedding.factors` gives U, V, b for
reference computations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from specaware.model.contraction import band_contraction
from specaware.model.generators import bias_generator, factor_generator, zero_output_layer


def band_mean(z: Tensor, band_mask: Tensor) -> Tensor:
    """Mean of (B, C, d) over the real bands only -> (B, d)."""
    weight = band_mask.to(z.dtype)[..., None]
    return (z * weight).sum(1) / weight.sum(1)


class HyperEmbedding(nn.Module):
    """(image (B, C, H, W), z (B, C, d), band_mask (B, C)) -> tokens (B, N, E). See the module docstring."""

    def __init__(
        self,
        meta_dim: int,
        embed_dim: int,
        rank: int,
        patch_size: int,
        hidden: int,
        bottleneck: int,
        dropout: float,
        scale_init: float,
        band_chunk: int = 64,
    ) -> None:
        super().__init__()
        self.band_chunk = band_chunk
        self.embed_dim = embed_dim
        self.rank = rank
        self.patch_size = patch_size
        # The U generator's output layer (u_gen[-1]) is applied after the band contraction, see the module docstring.
        self.u_gen = factor_generator(meta_dim, hidden, bottleneck, embed_dim * rank, dropout)
        self.v_gen = factor_generator(meta_dim, hidden, bottleneck, rank * patch_size * patch_size, dropout)
        self.bias_gen = bias_generator(meta_dim, bottleneck, embed_dim)
        zero_output_layer(self.bias_gen)
        # Shape (1,), not a 0-d scalar: DeepSpeed broadcasts parameters as byte views, which 0-d tensors refuse.
        self.scale = nn.Parameter(torch.full((1,), float(scale_init)))

    def _v(self, z: Tensor, band_mask: Tensor) -> Tensor:
        """V (B, C, r, k^2), zero for padding bands so they contribute nothing."""
        b, c, _ = z.shape
        v = self.v_gen(z).view(b, c, self.rank, self.patch_size**2)
        return v * band_mask[..., None, None].to(v.dtype)

    def factors(self, z: Tensor, band_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The explicit U (B, C, E, r), V (B, C, r, k^2) and bias b (B, E): for tests and reference only."""
        b, c, _ = z.shape
        u = self.u_gen(z).view(b, c, self.embed_dim, self.rank)
        return u, self._v(z, band_mask), self.bias_gen(band_mean(z, band_mask))

    def forward(self, image: Tensor, z: Tensor, band_mask: Tensor) -> Tensor:
        b = z.shape[0]
        k = self.patch_size
        n = (image.shape[-2] // k) * (image.shape[-1] // k)
        hidden = self.u_gen[:-1](z)  # (B, C, h)
        v = self._v(z, band_mask).to(hidden.dtype)
        mixed, summed = band_contraction(image, v, hidden, k, self.band_chunk)
        # The output layer's weight is (E * r, h) row-major, i.e. already the (E, r * h) matrix A: a view, no copy.
        out = self.u_gen[-1]
        weight = out.weight
        width = self.rank * hidden.shape[-1]
        tokens = F.linear(mixed.view(b, n, width).to(weight.dtype), weight.view(self.embed_dim, width))
        tokens = tokens + F.linear(
            summed.view(b, n, self.rank).to(weight.dtype), out.bias.view(self.embed_dim, self.rank)
        )
        return self.scale * (tokens + self.bias_gen(band_mean(z, band_mask))[:, None, :])
