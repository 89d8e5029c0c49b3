"""The band contraction at the heart of the HyperEmbedding, with band-chunked forward and recomputing backward.

For each sample, with p_{n,c} the k x k pixels of band c in patch n, V_c (r x k^2) and g_c (h) per band:

    v_{n,c} = V_c p_{n,c}            (r)
    S_n     = sum_c v_{n,c} g_c^T    (r x h)
    s_n     = sum_c v_{n,c}          (r)

Autograd through the plain expressions would keep the patch copy and v, each as large as the input image
(B * C * N * k^2 and B * C * N * r values), alive from the forward to the backward, and create a third tensor of that
size for the gradient of v: per sample at 224 px and 425 bands, 170 MB kept, more than all of ViT-B's activations at
75 % masking. Here the bands are processed in chunks and nothing of size C * N is kept: the backward recomputes each
chunk's patches and v (~5 % of the HyperEmbedding's multiplies) and reads the image in place. Saved: the image (already alive as the
input), V and g. Peak extra memory: S and s, plus one chunk's temporaries.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from specaware.model.patches import patchify


def _chunk_projection(image: Tensor, v: Tensor, start: int, stop: int, k: int) -> tuple[Tensor, Tensor]:
    """Patches (B, c, N, k^2) and projections (B, c, N * r) of bands [start, stop), in ``v``'s dtype."""
    patches = patchify(image[:, start:stop], k).to(v.dtype)
    projected = torch.matmul(patches, v[:, start:stop].transpose(-1, -2))
    return patches, projected.flatten(2)


class _BandContraction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, image: Tensor, v: Tensor, hidden: Tensor, k: int, chunk: int
    ) -> tuple[Tensor, Tensor]:
        b, c, rank, _ = v.shape
        n = (image.shape[-2] // k) * (image.shape[-1] // k)
        accumulate = torch.promote_types(v.dtype, torch.float32)  # bf16 chunks are summed in float32
        with torch.autocast(image.device.type, enabled=False):
            mixed = torch.zeros(b, n * rank, hidden.shape[-1], dtype=accumulate, device=v.device)
            summed = torch.zeros(b, n * rank, dtype=accumulate, device=v.device)
            for start in range(0, c, chunk):
                stop = min(start + chunk, c)
                _, projected = _chunk_projection(image, v, start, stop, k)
                if mixed.dtype == hidden.dtype:  # accumulate inside the GEMM, no chunk-sized temporary
                    mixed.baddbmm_(projected.transpose(1, 2), hidden[:, start:stop])
                else:
                    mixed += torch.bmm(projected.transpose(1, 2), hidden[:, start:stop])
                summed += projected.sum(1)
        ctx.save_for_backward(image, v, hidden)
        ctx.k, ctx.chunk = k, chunk
        return mixed, summed

    @staticmethod
    def backward(ctx: Any, grad_mixed: Tensor, grad_summed: Tensor) -> tuple[Tensor | None, ...]:
        image, v, hidden = ctx.saved_tensors
        k, chunk = ctx.k, ctx.chunk
        c = v.shape[1]
        grad_mixed = grad_mixed.to(v.dtype)
        grad_summed = grad_summed.to(v.dtype)[:, None, :]
        grad_v = torch.empty_like(v)
        grad_hidden = torch.empty_like(hidden)
        for start in range(0, c, chunk):
            stop = min(start + chunk, c)
            patches, projected = _chunk_projection(image, v, start, stop, k)
            grad_hidden[:, start:stop] = torch.bmm(projected, grad_mixed)
            grad_projected = torch.baddbmm(grad_summed, hidden[:, start:stop], grad_mixed.transpose(1, 2))
            b, bands, _ = grad_projected.shape
            grad_projected = grad_projected.view(b, bands, -1, v.shape[2])
            grad_v[:, start:stop] = torch.matmul(grad_projected.transpose(-1, -2), patches)
        return None, grad_v, grad_hidden, None, None


def band_contraction(
    image: Tensor, v: Tensor, hidden: Tensor, k: int, chunk: int = 64
) -> tuple[Tensor, Tensor]:
    """(S (B, N * r, h), s (B, N * r)), index n * r + i, at least float32, from image (B, C, H, W), v (B, C, r, k^2) and
    hidden (B, C, h); the image gets no gradient. ``v`` and ``hidden`` must share a dtype (the compute dtype)."""
    if v.dtype != hidden.dtype:
        raise ValueError(f"v ({v.dtype}) and hidden ({hidden.dtype}) must share a dtype")
    return _BandContraction.apply(image, v, hidden, k, chunk)
